package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// overlayName is the file name, in the VM's disks directory, of its
// overlay on the template's base disk i: root.qcow2 for the root disk.
func overlayName(i int) string {
	if i == 0 {
		return "root.qcow2"
	}
	return "disk" + strconv.Itoa(i) + ".qcow2"
}

// fromTemplate is what making a VM from a template adds to Create: the
// resolved spec (the template's kernel, initrd and command line, the
// overlays first among the disks), the from.json record, and the overlays
// to make in the VM's directory; the template's lock is held until the
// VM exists, so that no template rm removes it meanwhile.
type fromTemplate struct {
	spec *configs.VM
	opts store.CreateOptions
	lock *store.TemplateLock
}

// fromOptions say more about making a VM from a template.
type fromOptions struct {
	// known are stamps of the template's files verified already: a
	// clone of many verifies once.
	known []store.FileStamp
	// warm makes a warm clone: its first start restores the template's
	// memory snapshot.
	warm bool
	// admitted: the caller holds the VM's tenant's lock and checked
	// that the VM fits in its quotas (Clone admits all its clones at
	// once); create does not check again.
	admitted bool
}

// planFrom prepares making vm from its template (vm.From): the template
// must exist, be free to use, and have the files its metadata records
// (every checksum is verified, except those of files whose stamps in
// fo.known are unchanged), and each base
// disk must open read-only as its format with no backing file outside
// the template. Precondition: vm validated.
func (m *Manager) planFrom(vm *configs.VM, fo fromOptions) (*fromTemplate, error) {
	t, err := m.Template(vm.From)
	if err != nil {
		return nil, fmt.Errorf("VM %s: from: %w", vm.Name, err)
	}
	lock, err := t.Lock(false)
	if err != nil {
		return nil, fmt.Errorf("VM %s: from: %w", vm.Name, m.templateError(t.Name, err))
	}
	ok := false
	defer func() {
		if !ok {
			lock.Unlock()
		}
	}()
	stamps, err := t.Verify(fo.known)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	if fo.warm && t.Meta.Warm == nil {
		return nil, fmt.Errorf("VM %s: template %s is not a warm template: it has no memory snapshot to restore", vm.Name, t.Name)
	}
	if fo.warm && vm.Backend == configs.BackendLibvirt {
		return nil, fmt.Errorf("VM %s: template %s is a warm template: its memory snapshot restores into paddock's VMM only; a libvirt VM cannot be its clone (leave out backend: libvirt)", vm.Name, t.Name)
	}
	vmDir := m.store.VMDir(vm.Name)
	rec := &store.FromRecord{Template: t.Name, ID: t.Meta.ID, Verified: stamps, Warm: fo.warm}
	var overlays []configs.Disk
	for i, d := range t.Meta.Disks {
		base := t.Path(d.File)
		o := store.Overlay{Index: i, Path: filepath.Join(vmDir, store.DisksDir, overlayName(i)), Base: base}
		if err := checkBase(o, d); err != nil {
			return nil, fmt.Errorf("VM %s: template %s: %w", vm.Name, t.Name, err)
		}
		size := d.VirtualSize
		if i == 0 && int64(vm.RootSize) > size {
			size = int64(vm.RootSize)
		}
		if i == 0 && vm.RootSize != 0 && int64(vm.RootSize) < d.VirtualSize {
			return nil, fmt.Errorf("VM %s: root_size %s is smaller than the root disk of template %s (%s)", vm.Name, vm.RootSize, t.Name, configs.ByteSize(d.VirtualSize))
		}
		o.Size = size
		rec.Overlays = append(rec.Overlays, o)
		overlays = append(overlays, configs.Disk{Path: o.Path, Format: configs.FormatQcow2, Cache: configs.CacheWriteback})
	}
	spec := *vm
	spec.From, spec.RootSize = "", 0
	spec.Kernel = t.Path(t.Meta.Kernel.File)
	spec.Initrd = ""
	if t.Meta.Initrd != nil {
		spec.Initrd = t.Path(t.Meta.Initrd.File)
	}
	spec.Cmdline = t.Meta.Cmdline
	if vm.Cmdline != "" {
		spec.Cmdline += " " + vm.Cmdline
	}
	spec.Disks = append(overlays, vm.Disks...)
	prepare := func(dir, final string) error {
		if vm.Backend == configs.BackendLibvirt {
			// Its overlays are volumes its host makes (libvirtBackend).
			return nil
		}
		if err := os.Mkdir(filepath.Join(dir, store.DisksDir), 0o700); err != nil {
			return fmt.Errorf("VM %s: %w", vm.Name, err)
		}
		for i, o := range rec.Overlays {
			path := filepath.Join(dir, store.DisksDir, filepath.Base(o.Path))
			if err := makeOverlay(path, o, t.Meta.Disks[i].Format, o.Size); err != nil {
				return fmt.Errorf("VM %s: %w", vm.Name, err)
			}
		}
		return nil
	}
	ok = true
	return &fromTemplate{spec: &spec, opts: store.CreateOptions{From: rec, Prepare: prepare}, lock: lock}, nil
}

// checkBase opens a template's base disk as a VM will, read-only, under
// the overlay's backing policy (it is the overlay's backing file): it
// must be an image of its recorded format and size whose own backing
// chain, if any, stays in the template. Others may read it meanwhile
// (ForceShare): only a writer would be wrong, and the checksums were
// just verified.
func checkBase(o store.Overlay, d store.TemplateDisk) error {
	img, err := disk.Open(o.Base, disk.Options{Format: d.Format, ReadOnly: true, ForceShare: true, Backing: vmm.ConfinedOverlay(o)})
	if err != nil {
		return err
	}
	defer img.Close()
	if img.Size() != d.VirtualSize {
		return fmt.Errorf("base disk %s is %d bytes, its metadata says %d", o.Base, img.Size(), d.VirtualSize)
	}
	return nil
}

// makeOverlay makes a qcow2 overlay at path on the base disk o.Base (its
// absolute path in the header, its format recorded), size bytes large.
// The base is opened only to check it, under the overlay's policy.
func makeOverlay(path string, o store.Overlay, format string, size int64) error {
	img, err := disk.Create(path, disk.CreateOptions{
		Format: disk.FormatQcow2, Size: size,
		Qcow2: qcow2.CreateOptions{BackingFile: o.Base, BackingFormat: format, Backing: vmm.ConfinedOverlay(o)},
	})
	if err != nil {
		return err
	}
	if err := img.Flush(); err != nil {
		img.Close()
		return err
	}
	if err := img.Close(); err != nil {
		return err
	}
	// The state tree is private (store): the overlay holds the VM's data.
	return os.Chmod(path, 0o600)
}

// checkFrom checks, before a VM made from a template starts, that its
// template is still the one it was made from and that the template's
// files have not changed since their checksums were last verified (a file
// whose stamp changed is verified again, and the new stamps recorded).
// Precondition: the VM's lock is held.
func (m *Manager) checkFrom(v *store.VM) error {
	from, err := v.ReadFrom()
	if err != nil || from == nil {
		return err
	}
	t, err := m.store.Template(from.Template)
	if errors.Is(err, store.ErrTemplateNotFound) {
		return fmt.Errorf("VM %s was made from template %s, which is gone: its disks are overlays on the template's, so it cannot start; remove it (paddock rm %s)", v.Name, from.Template, v.Name)
	}
	if err != nil {
		return fmt.Errorf("VM %s: %w", v.Name, err)
	}
	if t.Meta.ID != from.ID {
		return fmt.Errorf("VM %s was made from another template called %s (id %s; this one is %s, made %s): its disks are overlays on the old one's, so it cannot start; remove it (paddock rm %s)", v.Name, from.Template, from.ID, t.Meta.ID, t.Meta.Created.Format("2006-01-02 15:04"), v.Name)
	}
	stamps, err := t.Verify(from.Verified)
	if err != nil {
		return fmt.Errorf("VM %s: %w", v.Name, err)
	}
	if !slices.Equal(stamps, from.Verified) {
		from.Verified = stamps
		return v.WriteFrom(*from)
	}
	return nil
}
