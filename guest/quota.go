package guest

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/tenant"
)

// demand is what VMs use of their tenant's quotas: the totals, and the
// writable disks counted in them by path (a disk counts once).
type demand struct {
	tenant.Usage
	disks map[string]bool
	// VMNames are the VMs counted, sorted.
	VMNames []string
}

// add counts vm, whose writable disks have the given virtual sizes by
// path, in d: its disks that d counts already are not counted again.
func (d *demand) add(vm *configs.VM, sizes map[string]int64) {
	if d.disks == nil {
		d.disks = map[string]bool{}
	}
	d.VMs++
	d.CPUs += vm.CPUs
	d.Memory += vm.Memory
	for path, size := range sizes {
		if !d.disks[path] {
			d.disks[path] = true
			d.Disk += configs.ByteSize(size)
		}
	}
	d.VMNames = append(d.VMNames, vm.Name)
}

// fresh is what vm, whose writable disks are sizes, adds to d: the disks
// d counts already add nothing.
func (d *demand) fresh(vm *configs.VM, sizes map[string]int64) tenant.Usage {
	u := tenant.Usage{VMs: 1, CPUs: vm.CPUs, Memory: vm.Memory}
	for path, size := range sizes {
		if !d.disks[path] {
			u.Disk += configs.ByteSize(size)
		}
	}
	return u
}

// tenantDemand is what the VMs of tenant name that are in the store use,
// leaving out the VM called except (a VM that starts counts as asking).
// A VM whose spec cannot be read is not counted (ls shows its problem).
func (m *Manager) tenantDemand(name, except string) (*demand, error) {
	names, err := m.store.Names()
	if err != nil {
		return nil, err
	}
	d := &demand{disks: map[string]bool{}}
	for _, n := range names {
		if n == except {
			continue
		}
		v, err := m.store.VM(n)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		vm, err := loadSpec(v)
		if err != nil || vm.Tenant != name {
			continue
		}
		d.add(vm, diskSizes(vm))
	}
	return d, nil
}

// diskSizes are the virtual sizes of vm's writable disks, by path; a
// disk that cannot be read counts 0 (the VM cannot start with it).
func diskSizes(vm *configs.VM) map[string]int64 {
	sizes := map[string]int64{}
	for _, d := range vm.Disks {
		if d.ReadOnly {
			continue
		}
		size, err := virtualSize(d.Path, d.Format)
		if err != nil {
			size = 0
		}
		sizes[d.Path] = size
	}
	return sizes
}

// virtualSize is the size of the disk the guest sees in the image at
// path: a qcow2 image's virtual size from its header, a raw image's file
// (or block device) size. format is the spec's, or empty to detect it.
func virtualSize(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, 32)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if format == disk.FormatQcow2 || format == "" && disk.DetectHeader(head[:n]) == disk.FormatQcow2 {
		if n < 32 {
			return 0, fmt.Errorf("%s: qcow2 header truncated", path)
		}
		return int64(binary.BigEndian.Uint64(head[24:32])), nil // header.size
	}
	return f.Seek(0, io.SeekEnd)
}

// fromSizes are the writable disks a VM made from its template (vm.From)
// will have: an overlay the size of each base disk (the root disk grown
// to root_size), at its path in the VM's directory, and vm's own disks.
func (m *Manager) fromSizes(vm *configs.VM) (map[string]int64, error) {
	sizes := diskSizes(vm)
	if vm.From == "" {
		return sizes, nil
	}
	t, err := m.Template(vm.From)
	if err != nil {
		return nil, fmt.Errorf("VM %s: from: %w", vm.Name, err)
	}
	for i, d := range t.Meta.Disks {
		size := d.VirtualSize
		if i == 0 && int64(vm.RootSize) > size {
			size = int64(vm.RootSize)
		}
		sizes[filepath.Join(m.store.VMDir(vm.Name), store.DisksDir, overlayName(i))] = size
	}
	return sizes, nil
}

// admit checks that the VMs vms (specs validated, not yet in the store)
// fit in their tenant's limits with what its VMs use, and returns the
// tenant's lock, held: the caller adds the VMs to the store and then
// unlocks, so that no other command's check sees the tenant between the
// check and the VMs' arrival. All of vms are of one tenant. A tenant
// that does not exist (any more) is an error naming it, as is a request
// that does not fit (a *tenant.QuotaError, for all the VMs together).
func (m *Manager) admit(vms []*configs.VM) (*tenant.Lock, error) {
	name := cmp.Or(vms[0].Tenant, tenant.Default) // (a spec built in Go may leave it out)
	ts, err := tenant.Open(m.Home())
	if err != nil {
		return nil, err
	}
	lk, t, err := m.lockTenant(ts, name) // its limits now, and that it exists
	if err != nil {
		return nil, err
	}
	if t.Limits == (tenant.Limits{}) {
		return lk, nil // nothing to count
	}
	d, err := m.tenantDemand(name, "")
	if err != nil {
		lk.Unlock()
		return nil, err
	}
	used := d.Usage
	var req tenant.Usage
	for _, vm := range vms {
		sizes, err := m.fromSizes(vm)
		if err != nil {
			lk.Unlock()
			return nil, err
		}
		req = req.Add(d.fresh(vm, sizes))
		d.add(vm, sizes) // a disk two of vms name counts once
	}
	if err := t.Fits(used, req); err != nil {
		lk.Unlock()
		return nil, err
	}
	return lk, nil
}

// checkQuota checks, as a VM starts, that it still fits in its tenant's
// limits with the tenant's other VMs: it may not if the limits were
// lowered since it was made (paddock tenant set). It takes no lock:
// starting adds nothing to what the tenant uses.
func (m *Manager) checkQuota(vm *configs.VM) error {
	ts, err := tenant.Open(m.Home())
	if err != nil {
		return err
	}
	name := cmp.Or(vm.Tenant, tenant.Default)
	t, err := ts.Get(name)
	if err != nil {
		return fmt.Errorf("VM %s: %w", vm.Name, m.tenantError(ts, name, err))
	}
	if t.Limits == (tenant.Limits{}) {
		return nil
	}
	d, err := m.tenantDemand(name, vm.Name)
	if err != nil {
		return err
	}
	if err := t.Fits(d.Usage, d.fresh(vm, diskSizes(vm))); err != nil {
		return fmt.Errorf("cannot start VM %s: %w", vm.Name, err)
	}
	return nil
}

// checkStart checks what must hold for the VM v to start (or restore):
// a VM made from a template starts only on that template, unchanged
// (checkFrom), and the VM still fits in its tenant's limits
// (checkQuota; a spec that does not load is the backend's to report).
// Precondition: the VM's lock is held.
func (m *Manager) checkStart(v *store.VM) error {
	if err := m.checkFrom(v); err != nil {
		return err
	}
	vm, err := loadSpec(v)
	if err != nil {
		return nil
	}
	return m.checkQuota(vm)
}
