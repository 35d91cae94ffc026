package guest

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
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
	d.Memory = tenant.AddSizes(d.Memory, vm.Memory)
	for path, size := range sizes {
		if !d.disks[path] {
			d.disks[path] = true
			d.Disk = tenant.AddSizes(d.Disk, configs.ByteSize(size))
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
			u.Disk = tenant.AddSizes(u.Disk, configs.ByteSize(size))
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
		sizes, _ := diskSizes(vm) // a disk it cannot read counts 0
		d.add(vm, sizes)
	}
	return d, nil
}

// diskSizes are the virtual sizes of vm's writable disks, by path. A
// disk that cannot be read, or whose header does not hold, counts 0 and
// is the error returned (the first such): what the tenant's VMs use
// counts it so (the VM cannot start with it), and a VM asking to be made
// or started is refused with it.
func diskSizes(vm *configs.VM) (map[string]int64, error) {
	sizes := map[string]int64{}
	var first error
	for _, d := range vm.Disks {
		if d.ReadOnly {
			continue
		}
		size, err := virtualSize(d.Path, d.Format)
		if err != nil {
			size = 0
			if first == nil {
				first = fmt.Errorf("VM %s: disk %s: %w", vm.Name, d.Path, err)
			}
		}
		sizes[d.Path] = size
	}
	return sizes, first
}

// maxHeadRead is how much of a qcow2 image virtualSize reads for its
// header: every writer makes headers of a few hundred bytes, and a
// header longer than this is refused.
const maxHeadRead = 64 << 10

// virtualSize is the size of the disk the guest sees in the image at
// path: a qcow2 image's virtual size from its header, validated as
// opening the image would (a hostile header cannot give a size no qcow2
// image can have, which would wrap the tenant's sums), or a raw image's
// file (or block device) size. format is the spec's, or empty to detect
// it.
func virtualSize(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, maxHeadRead)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	head = head[:n]
	if format == disk.FormatQcow2 || format == "" && disk.DetectHeader(head) == disk.FormatQcow2 {
		h, err := qcow2.ParseHeader(head)
		if err != nil {
			return 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if err := h.ValidateLayout(fi.Size()); err != nil {
			return 0, err
		}
		if h.Size > math.MaxInt64 {
			return 0, fmt.Errorf("virtual size %d is too large", h.Size)
		}
		return int64(h.Size), nil
	}
	return f.Seek(0, io.SeekEnd)
}

// fromSizes are the writable disks a VM made from its template (vm.From)
// will have: an overlay the size of each base disk (the root disk grown
// to root_size), at its path in the VM's directory, and vm's own disks.
func (m *Manager) fromSizes(vm *configs.VM) (map[string]int64, error) {
	sizes, err := diskSizes(vm)
	if err != nil {
		return nil, err
	}
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
	sizes, err := diskSizes(vm)
	if err != nil {
		return fmt.Errorf("cannot start VM %s: %w", vm.Name, err)
	}
	if err := t.Fits(d.Usage, d.fresh(vm, sizes)); err != nil {
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
