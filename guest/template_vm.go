package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// TemplateFromVMOptions say how CreateTemplateFromVM freezes a VM.
type TemplateFromVMOptions struct {
	// Memory asks for a warm template: the running VM's memory and
	// devices with its disks at the same instant.
	Memory bool
	// Progress, if set, is called with the bytes copied and the total
	// of the disk being copied (index i).
	Progress func(i int, done, total int64)
}

// noMemoryStoppedHint is what refusing --memory on a VM that does not
// run says.
func noMemoryStoppedHint(vm string) string {
	return "--memory saves a running VM's memory: start it first (paddock start " + vm + "), or leave out --memory for a cold template of its disks"
}

// CreateTemplateFromVM makes the template called name from the VM
// called vmName (docs/cli.md, "template create"): each writable disk of
// the stopped VM is copied, its backing chain flattened, into a
// read-only base disk of the template, in order; the VM's kernel and
// initrd are copied too, its command line becomes the template's; and
// spec.yaml is the VM's spec without its identity (templateSpec). The VM
// itself is left as it was and runs on its own disks: a template never
// takes a user's files away. Nothing of the template exists unless all
// of it does.
//
// With o.Memory the VM must run (or be paused) instead, and the template
// is warm: a snapshot of the VM is taken (its machine, memory and disks
// at one instant), each disk is copied as it was at that instant, the
// snapshot's state and memory file become the template's, and the
// snapshot is removed from the VM, which runs on (warm.go).
func (m *Manager) CreateTemplateFromVM(ctx context.Context, name, vmName string, o TemplateFromVMOptions) (_ *store.Template, err error) {
	v, l, err := m.lockVM(vmName)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	rec, h, err := facts(v)
	if !usable(err) {
		return nil, err
	}
	state := store.Derive(rec, h)
	switch {
	case o.Memory && !h.Alive:
		return nil, &StateError{Name: vmName, Op: "make a warm template of", State: state, Hint: noMemoryStoppedHint(vmName)}
	case !o.Memory && h.Alive:
		return nil, &StateError{Name: vmName, Op: "make a template of", State: state,
			Hint: "its disks change while it runs: stop it first (paddock stop " + vmName + "), or add --memory for a warm template of the running VM"}
	}
	vm, err := loadSpec(v)
	if err != nil {
		return nil, err
	}
	if vm.Backend != configs.BackendNative {
		return nil, fmt.Errorf("VM %s: backend %q: templates are made from VMs on the native backend", vmName, vm.Backend)
	}
	// A VM on a template is copied only from an unchanged template.
	if err := m.checkFrom(v); err != nil {
		return nil, err
	}
	src, err := m.templateSources(v, vm, o.Memory)
	if err != nil {
		return nil, err
	}
	st, err := m.NewTemplate(name)
	if err != nil {
		return nil, err
	}
	defer st.Abort()
	start := time.Now()
	meta := store.TemplateMeta{
		Origin:  store.TemplateOrigin{Kind: store.OriginVM, VM: vmName},
		Kernel:  store.TemplateKernel{TemplateFile: store.TemplateFile{File: "vmlinuz"}},
		Cmdline: vm.Cmdline,
	}
	if err := copyFile(vm.Kernel, st.Path(meta.Kernel.File)); err != nil {
		return nil, fmt.Errorf("template %s: VM %s's kernel: %w", name, vmName, err)
	}
	if vm.Initrd != "" {
		meta.Initrd = &store.TemplateFile{File: "initrd.img"}
		if err := copyFile(vm.Initrd, st.Path(meta.Initrd.File)); err != nil {
			return nil, fmt.Errorf("template %s: VM %s's initrd: %w", name, vmName, err)
		}
	}
	if src.parent != nil {
		meta.OS = src.parent.Meta.OS
		meta.Kernel.Release, meta.Kernel.Package = src.parent.Meta.Kernel.Release, src.parent.Meta.Kernel.Package
	}
	if err := os.Mkdir(st.Path(store.DisksDir), 0o700); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var warm *warmSnapshot
	if o.Memory {
		if warm, err = m.takeWarmSnapshot(ctx, v); err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		// The VM's snapshot goes whatever happens: its files are the
		// template's now, or nobody's.
		defer func() { err = errors.Join(err, warm.remove(ctx)) }()
	}
	for i, d := range src.disks {
		file := filepath.Join(store.DisksDir, overlayName(i))
		co := disk.ConvertOptions{SrcFormat: d.format, DstFormat: disk.FormatQcow2, Backing: d.backing}
		if warm != nil {
			// The disk as it was at the snapshot's instant, read while
			// the VM writes on (it never writes the snapshot's clusters).
			co.Snapshot, co.ForceShare = warm.name, true
		}
		if o.Progress != nil {
			co.Progress = func(done, total int64) { o.Progress(i, done, total) }
		}
		if err := disk.Convert(ctx, d.path, st.Path(file), co); err != nil {
			return nil, fmt.Errorf("template %s: copy disks[%d] of VM %s: %w", name, d.index, vmName, err)
		}
		meta.Disks = append(meta.Disks, store.TemplateDisk{TemplateFile: store.TemplateFile{File: file}, Format: disk.FormatQcow2, VirtualSize: d.size})
	}
	if warm != nil {
		if meta.Warm, err = warm.move(st); err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
	}
	spec, err := templateSpec(vm, name)
	if err != nil {
		return nil, err
	}
	if !vm.CloudInit {
		// A clone has cloud_init by default (it has from:); a VM without
		// it keeps it off in its clones: its guest may not run
		// cloud-init, and a warm clone restores the VM's machine, so it
		// must have the same disks (no seed volume where the VM had
		// none).
		spec = append(spec, "cloud_init: false\n"...)
	}
	meta.Origin.Seconds = time.Since(start).Round(time.Millisecond).Seconds()
	return m.CommitTemplate(st, meta, spec)
}

// templateSource is one writable disk of a VM that a template copies.
type templateSource struct {
	index   int // in the VM's spec
	path    string
	format  string
	size    int64
	backing *disk.BackingPolicy
}

// templateSources are what a template made from a VM copies: its
// writable disks, with the formats and backing policies its VMM would
// open them with, and the template the VM was made from, if any.
type templateSources struct {
	disks  []templateSource
	parent *store.Template
}

// templateSources lists the VM's writable disks, each opened once, as
// its VMM would, to check it and learn its size. The template's disks
// come first in its clones' specs, so a read-only disk before a writable
// one is refused: the clones' disk order would differ from the VM's.
// With running, the VM runs and holds its disks: they are opened without
// a lock (qemu-img -U).
func (m *Manager) templateSources(v *store.VM, vm *configs.VM, running bool) (*templateSources, error) {
	pins, err := vmm.PinFormats(v, vm)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	policies, err := vmm.OverlayBacking(v)
	if err != nil {
		return nil, err
	}
	out := &templateSources{}
	if from, err := v.ReadFrom(); err != nil {
		return nil, err
	} else if from != nil {
		if out.parent, err = m.Template(from.Template); err != nil {
			return nil, err
		}
	}
	readOnly := -1
	for i, d := range vm.Disks {
		if d.ReadOnly {
			if readOnly < 0 {
				readOnly = i
			}
			continue
		}
		if readOnly >= 0 {
			return nil, fmt.Errorf("VM %s: disks[%d] is read-only and comes before the writable disks[%d]: a template's disks come first in its clones, so their disks would be in another order; put the read-only disks last", v.Name, readOnly, i)
		}
		s := templateSource{index: i, path: d.Path, format: d.Format}
		if s.format == "" && i < len(pins) {
			s.format = pins[i]
		}
		if i < len(policies) && policies[i] != nil {
			s.backing = policies[i]
		} else if d.Untrusted {
			s.backing = disk.ConfinedToImage(d.Path)
		}
		img, err := disk.Open(d.Path, disk.Options{Format: s.format, ReadOnly: true, ForceShare: running, Backing: s.backing})
		if err != nil {
			return nil, fmt.Errorf("VM %s: disks[%d]: %w", v.Name, i, err)
		}
		s.size = img.Size()
		img.Close()
		out.disks = append(out.disks, s)
	}
	if len(out.disks) == 0 {
		return nil, fmt.Errorf("VM %s has no writable disk: a template is made of a VM's writable disks", v.Name)
	}
	return out, nil
}

// templateSpec is spec.yaml of a template made from vm: the VM's spec
// without what makes it itself or what the template holds: no name
// (each clone has its own), no kernel, initrd, command line or writable
// disks (the template's own files), no NIC MAC addresses (a clone's are
// derived from its name) and no port forwards or console log path (a
// host port and a file are one VM's each). Its read-only disks stay,
// shared by every clone.
func templateSpec(vm *configs.VM, name string) ([]byte, error) {
	spec := *vm
	spec.Name, spec.From, spec.RootSize = "", "", 0
	spec.Kernel, spec.Initrd, spec.Cmdline = "", "", ""
	spec.Disks = nil
	for _, d := range vm.Disks {
		if d.ReadOnly {
			spec.Disks = append(spec.Disks, d)
		}
	}
	spec.NICs = nil
	for _, n := range vm.NICs {
		n.MAC = ""
		spec.NICs = append(spec.NICs, n)
	}
	spec.Ports = nil
	spec.Console.Log = ""
	data, err := yaml.Marshal(&spec)
	if err != nil {
		return nil, fmt.Errorf("guest: encode the spec of template %s: %w", name, err)
	}
	header := fmt.Sprintf("# The spec of the clones of template %s (paddock clone), made from VM %s without its identity.\n", name, vm.Name)
	return append([]byte(header), data...), nil
}

// copyFile copies the regular file src to a new file dst (mode 0600) and
// syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
