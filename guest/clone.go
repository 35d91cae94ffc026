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
	// Templates are this manager's).
	Host configs.Host
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

// Clone makes new VMs from the template called tmpl, a VM-made template
// (CreateTemplateFromVM): each has the template's spec under its own
// name, a qcow2 overlay on each of the template's base disks (nothing is
// copied) and a new identity: UUID, MAC addresses (derived from its
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
func (m *Manager) Clone(ctx context.Context, tmpl, name string, o CloneOptions) ([]string, error) {
	names, err := cloneNames(name, o)
	if err != nil {
		return nil, err
	}
	t, err := m.Template(tmpl)
	if err != nil {
		return nil, err
	}
	if t.Meta.Origin.Kind != store.OriginVM {
		return nil, fmt.Errorf("template %s was built (paddock template build), not made from a VM: it has no VM spec to clone; make VMs from it with a YAML file that says from: %s (paddock create -f FILE)", tmpl, tmpl)
	}
	data, err := os.ReadFile(t.Path(store.TemplateSpecFile))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", tmpl, err)
	}
	warm := t.Meta.Warm
	host := o.Host
	host.Templates = m.TemplateLookup()
	specs := make([]*configs.VM, len(names))
	for i, n := range names {
		if !store.ValidName(n) {
			return nil, fmt.Errorf("%q cannot name a VM: use 1 to %d letters, digits and '-', starting with a letter or digit", n, store.MaxNameLen)
		}
		if _, err := m.store.VM(n); err == nil {
			return nil, &ExistsError{Name: n}
		}
		vm, err := configs.Parse(data, t.Path(store.TemplateSpecFile))
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", tmpl, err)
		}
		vm.Name, vm.From = n, tmpl
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
	made := make([]bool, len(names))
	err = parallel(len(names), func(i int) error {
		if _, err := m.create(ctx, specs[i], "", fromOptions{known: known, warm: warm != nil}); err != nil {
			return err
		}
		made[i] = true
		return nil
	})
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
