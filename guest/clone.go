package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// MaxClones bounds how many clones one Clone makes.
const MaxClones = 1000

// cloneWorkers is how many clones Clone makes (or starts) at once: each
// is mostly small synced writes and a VMM exec, so a few overlap well
// on a small host.
const cloneWorkers = 8

// CloneOptions say how many clones Clone makes and what it does with
// them.
type CloneOptions struct {
	// Numbered makes Count clones named NAME-1 .. NAME-Count; otherwise
	// one clone is made, called NAME.
	Numbered bool
	Count    int
	// Start boots each clone once all are made.
	Start bool
	// CheckStart, with Start, is asked about each clone's spec (its
	// kernel the template's) before anything is made; an error refuses
	// the clones (the CLI's refusal of a Linux kernel on an emulating
	// KVM, say).
	CheckStart func(*configs.VM) error
	// Host is what Validate checks each clone's spec against (its
	// Templates and Tenants are this manager's).
	Host configs.Host
	// LibvirtHost, if set, makes the clones libvirt VMs on that libvirt
	// host (a name paddock host ls lists, or auto) instead of VMs of
	// paddock's VMM here: their disks are overlays, made by the host, on
	// the template's base disks uploaded into its storage pool.
	LibvirtHost string
	// Tenant puts the clones in this tenant; empty keeps the tenant of
	// the template's spec (the VM's it was made from).
	Tenant string
}

// cloneNames returns the names of the clones of name o asks for.
func cloneNames(name string, o CloneOptions) ([]string, error) {
	if !o.Numbered {
		return []string{name}, nil
	}
	if o.Count < 1 || o.Count > MaxClones {
		return nil, fmt.Errorf("-n %d: the number of clones must be 1 to %d", o.Count, MaxClones)
	}
	names := make([]string, o.Count)
	for i := range names {
		names[i] = name + "-" + strconv.Itoa(i+1)
	}
	return names, nil
}

// Clone makes new VMs from the template called tmpl. Each has the
// template's spec under its own name (a VM-made template's, from
// CreateTemplateFromVM; a built template's is builtCloneSpec), a qcow2
// overlay on each of the template's base disks (nothing is copied) and
// a new identity: UUID, MAC addresses (derived from its
// name), DHCP leases and cloud-init instance-id and hostname. All are
// made, in parallel, or none: a failure removes the clones made
// (started ones are killed first). It returns the clones' names.
//
// A warm template's clones are warm: the first start of each restores
// the template's memory snapshot instead of booting (the guest continues
// from the snapshot's instant with a new VM generation ID; every clone
// maps the template's one memory file). Their NICs have MAC addresses
// and leases of their own, as a cold clone's: the restored NICs present
// them, and a guest that re-probes its NICs on the generation change
// takes them (docs/cli.md, "Warm clones and networks"). A warm template
// whose saved CPU this host does not have is refused before any clone
// is made.
//
// With o.LibvirtHost the clones are libvirt VMs on that host (a cold
// template only: libvirt cannot restore a warm one's memory); with host
// auto, all on the host auto placement picks for the first. All the
// clones enter the store at once, under their tenant's lock; then the
// first is set up on its host alone, uploading what the host lacks of
// the template, and the others follow in parallel.
func (m *Manager) Clone(ctx context.Context, tmpl, name string, o CloneOptions) ([]string, error) {
	names, err := cloneNames(name, o)
	if err != nil {
		return nil, err
	}
	t, err := m.Template(tmpl)
	if err != nil {
		return nil, err
	}
	data, specPath := builtCloneSpec(tmpl), "clone of built template "+tmpl
	if t.Meta.Origin.Kind == store.OriginVM {
		specPath = t.Path(store.TemplateSpecFile)
		if data, err = os.ReadFile(specPath); err != nil {
			return nil, fmt.Errorf("template %s: %w", tmpl, err)
		}
	}
	warm := t.Meta.Warm
	if warm != nil && o.LibvirtHost != "" {
		return nil, fmt.Errorf("template %s is warm (template create --memory): its clones resume from its memory snapshot, which only paddock's VMM restores (lazily, every clone mapping the template's one memory file); libvirt cannot load it, and would boot the clones cold from disks the guest left mid-run: clone it here without --host, or make a cold template of the VM for libvirt hosts (paddock template create without --memory)", tmpl)
	}
	host := o.Host
	host.Templates = m.TemplateLookup()
	host.Tenants = m.TenantLookup()
	specs := make([]*configs.VM, len(names))
	for i, n := range names {
		if !store.ValidName(n) {
			return nil, fmt.Errorf("%q cannot name a VM: use 1 to %d letters, digits and '-', starting with a letter or digit", n, store.MaxNameLen)
		}
		if _, err := m.store.VM(n); err == nil {
			return nil, &ExistsError{Name: n}
		}
		vm, err := configs.Parse(data, specPath)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", tmpl, err)
		}
		vm.Name, vm.From = n, tmpl
		if o.LibvirtHost != "" {
			vm.Backend, vm.Libvirt = configs.BackendLibvirt, configs.Libvirt{Host: o.LibvirtHost}
		}
		if o.Tenant != "" {
			vm.Tenant = o.Tenant
		}
		if warm != nil {
			if err := checkWarmNICs(vm, tmpl, warm); err != nil {
				return nil, err
			}
		}
		vm.FillDefaults()
		if err := vm.Validate(host); err != nil {
			return nil, fmt.Errorf("clone %s of template %s: %w", n, tmpl, err)
		}
		if o.Start && o.CheckStart != nil {
			booted := *vm
			booted.Kernel = t.Path(t.Meta.Kernel.File)
			if err := o.CheckStart(&booted); err != nil {
				return nil, fmt.Errorf("clone %s of template %s: %w", n, tmpl, err)
			}
		}
		specs[i] = vm
	}
	if warm != nil {
		if err := vmm.CheckWarm(t, ""); err != nil {
			return nil, err
		}
	}
	// The checksums are verified once for all the clones.
	known, err := t.Verify(nil)
	if err != nil {
		return nil, err
	}
	if o.LibvirtHost == configs.LibvirtAutoHost {
		// One host for all, the one auto placement picks for the first:
		// the first clone puts the template's files into its pool, and
		// the others find them there.
		if err := m.placeTogether(specs); err != nil {
			return nil, fmt.Errorf("clone %s: %w", tmpl, err)
		}
	}
	// All the clones fit in their tenant's quotas, or none is made; its
	// lock is held until they are all in the store, not while their
	// backends set them up (a libvirt host's uploads take minutes).
	lk, err := m.admit(specs)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", tmpl, err)
	}
	entries := make([]*entered, len(names))
	made := make([]bool, len(names))
	fo := fromOptions{known: known, warm: warm != nil, admitted: true}
	err = parallel(len(names), func(i int) error {
		e, err := m.enter(specs[i], "", fo)
		if err != nil {
			return err
		}
		entries[i], made[i] = e, true
		return nil
	})
	lk.Unlock()
	setUp := func(i int) error {
		if testHookCloneSetUp != nil {
			testHookCloneSetUp(names[i])
		}
		if err := m.setUp(ctx, entries[i].v, entries[i].spec); err != nil {
			made[i] = false // setUp took it out of the store
			return err
		}
		return nil
	}
	switch {
	case err != nil:
	case o.LibvirtHost != "":
		// The first clone puts the template's files into the host's pool;
		// the others, set up after it, find them there. Set up at once,
		// they would all upload the same volumes.
		err = setUp(0)
		if err == nil {
			err = parallel(len(names)-1, func(i int) error { return setUp(i + 1) })
		}
	default:
		err = parallel(len(names), setUp)
	}
	for _, e := range entries {
		if e != nil {
			e.release()
		}
	}
	if err == nil && o.Start {
		err = parallel(len(names), func(i int) error {
			_, err := m.Start(ctx, names[i])
			return err
		})
	}
	if err != nil {
		return nil, errors.Join(err, m.removeClones(names, made))
	}
	return names, nil
}

// builtCloneSpec is the spec of a clone of the built template tmpl
// (paddock template build), which has no VM's spec to copy: the
// template's kernel and root disk with paddock's defaults (cpus, memory,
// cloud-init) and one NIC on its tenant's managed network default, so
// that the clone is reachable (paddock ssh) as a VM made from a
// two-line YAML file would be.
func builtCloneSpec(tmpl string) []byte {
	return []byte("from: " + tmpl + "\nnics:\n  - network: default\n")
}

// testHookCloneSetUp, set by a test, runs before a clone's backend sets
// it up.
var testHookCloneSetUp func(name string)

// placeTogether puts the libvirt VMs specs, whose libvirt.host is auto,
// on one host: the one auto placement picks for the first.
func (m *Manager) placeTogether(specs []*configs.VM) error {
	c, err := m.libvirt.pickHost(specs[0])
	if err != nil {
		return err
	}
	h := c.Host
	c.Close()
	for _, vm := range specs {
		if h.Name != "" {
			vm.Libvirt.Host = h.Name
		} else {
			vm.Libvirt.Host, vm.Libvirt.URI = "", h.URI
		}
	}
	return nil
}

// removeClones removes the clones Clone made (made[i]) after a failure,
// killing those that run.
func (m *Manager) removeClones(names []string, made []bool) error {
	var errs []error
	for i, n := range names {
		if made[i] {
			if err := m.Remove(context.Background(), n, true); err != nil {
				errs = append(errs, fmt.Errorf("remove clone %s: %w", n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// parallel runs f(0) .. f(n-1), cloneWorkers at a time, and returns the
// error of the lowest index that failed. Once one fails, those not begun
// are skipped.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed bool
	)
	sem := make(chan struct{}, cloneWorkers)
	for i := range n {
		sem <- struct{}{}
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				errs[i] = err
				mu.Lock()
				failed = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkWarmNICs checks that a warm clone has the NICs of the warm
// template's saved machine, one for each: the restore gives each saved
// NIC the clone's own MAC address (derived from the clone's name, as any
// clone's), in order.
func checkWarmNICs(vm *configs.VM, tmpl string, w *store.TemplateWarm) error {
	if len(vm.NICs) != len(w.MACs) {
		return fmt.Errorf("template %s: its spec has %d NICs, its memory snapshot %d: the template is damaged", tmpl, len(vm.NICs), len(w.MACs))
	}
	return nil
}
