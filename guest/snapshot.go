package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// snapshotTimeout bounds a snapshot's creation: the guest's touched
// memory is written and synced meanwhile.
const snapshotTimeout = 30 * time.Minute

// SnapshotExistsError: the VM has a snapshot of that name already.
type SnapshotExistsError struct{ VM, Name string }

func (e *SnapshotExistsError) Error() string {
	return fmt.Sprintf("VM '%s' has a snapshot called '%s' already: remove it (paddock snapshot rm %s %s) or pick another name", e.VM, e.Name, e.VM, e.Name)
}

// NoSnapshotError: the VM has no snapshot of that name.
type NoSnapshotError struct{ VM, Name string }

func (e *NoSnapshotError) Error() string {
	return fmt.Sprintf("VM '%s' has no snapshot called '%s' (paddock snapshot ls %s lists them)", e.VM, e.Name, e.VM)
}

// SnapshotInfo describes one snapshot of a VM.
type SnapshotInfo struct {
	Name    string    `json:"name"`
	VM      string    `json:"vm"`
	Created time.Time `json:"created"`
	// VMState is running or paused: what the VM was doing at the
	// snapshot.
	VMState string `json:"vm_state"`
	// Disks are the disks with their contents in an internal qcow2
	// snapshot ("disks[0]").
	Disks []string `json:"disks"`
	// Memory is the guest's RAM; MemoryWritten the bytes of it the
	// memory file holds (the rest are holes); MemoryOnDisk what the
	// memory file takes on the host's disk.
	Memory        uint64 `json:"memory"`
	MemoryWritten int64  `json:"memory_written"`
	MemoryOnDisk  int64  `json:"memory_on_disk"`
	Paddock       string `json:"paddock"`
	// Paused is how long the guest was held while the snapshot was
	// taken, in seconds (set by CreateSnapshot only).
	Paused float64 `json:"paused_seconds,omitempty"`
	// Backend is "libvirt" for a libvirt VM's snapshot: libvirt's
	// internal snapshot, its memory inside the VM's first qcow2 disk
	// (MemoryWritten and MemoryOnDisk unknown), restored in full, not
	// lazily. Empty for the native backend's.
	Backend string `json:"backend,omitempty"`
}

// lockVM returns the VM called name with its mutation lock held.
func (m *Manager) lockVM(name string) (*store.VM, *store.Lock, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, nil, err
	}
	l, err := m.lock(v)
	if err != nil {
		return nil, nil, err
	}
	return v, l, nil
}

// snapshotName returns a default snapshot name: the time, to the second.
func snapshotName(t time.Time) string {
	return t.UTC().Format("snap-20060102-150405")
}

// CreateSnapshot takes a snapshot of the running or paused VM name: its
// vCPUs, devices, memory and an internal qcow2 snapshot of each writable
// disk, all of one instant. An empty snap names it after the time. The
// VM runs on afterwards (a paused one stays paused), or stops with stop.
// A VM that does not run is refused: there is no machine to save (its
// disks alone can be snapshotted with paddock image snapshot). A libvirt
// VM's snapshot is libvirt's internal snapshot (docs/libvirt.md).
func (m *Manager) CreateSnapshot(ctx context.Context, name, snap string, stop bool) (*SnapshotInfo, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	if snap == "" {
		snap = snapshotName(time.Now())
	}
	if !store.ValidSnapshotName(snap) {
		return nil, fmt.Errorf("%q cannot name a snapshot: use 1 to %d letters, digits, '.', '_' and '-', starting with a letter or digit", snap, store.MaxNameLen)
	}
	l, err := m.lock(v)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	return m.backend(v).CreateSnapshot(ctx, v, snap, stop)
}

// notRunningHint is what a StateError of a snapshot of a VM that does
// not run adds.
const notRunningHint = "a snapshot saves a running or paused VM: start it first (paddock image snapshot takes a disk alone)"

// CreateSnapshot implements Backend: the VMM saves the machine.
func (n *native) CreateSnapshot(ctx context.Context, v *store.VM, snap string, stop bool) (*SnapshotInfo, error) {
	if _, err := v.ReadSnapshot(snap); err == nil {
		return nil, &SnapshotExistsError{VM: v.Name, Name: snap}
	}
	c, _, err := n.client(v, "snapshot")
	if err != nil {
		var se *StateError
		if errors.As(err, &se) && se.Hint == "" && !se.State.Active() {
			se.Hint = notRunningHint
		}
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	res, err := c.Snapshot(cctx, api.SnapshotRequest{Name: snap, Stop: stop})
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeExists {
			return nil, &SnapshotExistsError{VM: v.Name, Name: snap}
		}
		return nil, apiError(v.Name, "snapshot", err)
	}
	if stop {
		if err := v.WaitRunUnlocked(exitGrace); err != nil {
			return nil, fmt.Errorf("VM %s: snapshot %s taken, but the VMM did not exit: %w", v.Name, snap, err)
		}
	}
	info, err := snapshotInfo(v, snap)
	if err != nil {
		return nil, err
	}
	info.Paused = res.Paused
	return info, nil
}

// snapshotInfo reads what ls shows of one snapshot.
func snapshotInfo(v *store.VM, snap string) (*SnapshotInfo, error) {
	meta, err := v.ReadSnapshot(snap)
	if errors.Is(err, store.ErrNoSnapshot) {
		return nil, &NoSnapshotError{VM: v.Name, Name: snap}
	}
	if err != nil {
		return nil, err
	}
	in := &SnapshotInfo{
		Name: meta.Name, VM: meta.VM, Created: meta.Created, VMState: meta.VMState,
		Memory: meta.Memory, MemoryWritten: meta.MemoryWritten, Paddock: meta.Paddock, Disks: []string{},
	}
	for _, d := range meta.Disks {
		if d.Snapshot != "" {
			in.Disks = append(in.Disks, fmt.Sprintf("disks[%d]", d.Index))
		}
	}
	if f, err := v.OpenSnapshotFile(snap, store.SnapshotMemoryFile); err == nil {
		if fi, err := f.Stat(); err == nil {
			in.MemoryOnDisk = fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		f.Close()
	}
	return in, nil
}

// Snapshots lists the VM's snapshots, oldest first.
func (m *Manager) Snapshots(name string) ([]*SnapshotInfo, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	return m.backend(v).Snapshots(v)
}

// Snapshots implements Backend: the VM's snapshots directory.
func (n *native) Snapshots(v *store.VM) ([]*SnapshotInfo, error) {
	names, err := v.SnapshotNames()
	if err != nil {
		return nil, err
	}
	out := []*SnapshotInfo{}
	for _, n := range names {
		in, err := snapshotInfo(v, n)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	for i := 1; i < len(out); i++ { // by creation time
		for j := i; j > 0 && out[j].Created.Before(out[j-1].Created); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// RestoreSnapshot starts the VM from its snapshot snap, in a new VMM:
// the guest continues from the snapshot's instant, its writable disks
// reverted to their internal snapshots, so disk and memory go back
// together. A running VM is refused unless force, which kills it first
// (what it did since the snapshot is lost). The snapshot is checked
// (format version, integrity) before anything happens to the VM. A
// libvirt VM is reverted by libvirt, in its QEMU.
func (m *Manager) RestoreSnapshot(ctx context.Context, name, snap string, force bool) (*Info, error) {
	v, l, err := m.lockVM(name)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	// A restore is a start: the same template and tenant checks.
	if err := m.checkStart(v); err != nil {
		return nil, err
	}
	if err := m.backend(v).RestoreSnapshot(ctx, v, snap, force); err != nil {
		return nil, err
	}
	return m.info(v, false)
}

// restoreRunningHint is what a StateError of a restore of a running VM
// adds.
func restoreRunningHint(name string) string {
	return "stop it first (paddock stop " + name + "), or use --force to discard what it did since"
}

// RestoreSnapshot implements Backend: a new VMM starts from the snapshot.
func (n *native) RestoreSnapshot(ctx context.Context, v *store.VM, snap string, force bool) error {
	// The machine state is decoded, and checked, by the VMM that
	// restores it (vmm.CheckSnapshot), before it changes anything: not
	// here as well, which cost every restore a second decoding.
	err := vmm.CheckSnapshot(v, snap, false)
	if errors.Is(err, store.ErrNoSnapshot) || errors.Is(err, store.ErrBadSnapshotName) {
		return &NoSnapshotError{VM: v.Name, Name: snap}
	}
	if err != nil {
		return err
	}
	rec, h, err := facts(v)
	if !usable(err) {
		return err
	}
	if h.Alive {
		if !force {
			return &StateError{Name: v.Name, Op: "restore a snapshot of", State: store.Derive(rec, h), Hint: restoreRunningHint(v.Name)}
		}
		// Killing the VM cannot be undone: a state file the VMM would
		// refuse is refused first.
		if err := vmm.CheckSnapshot(v, snap, true); err != nil {
			return err
		}
		if _, err := n.Kill(ctx, v); err != nil {
			var se *StateError
			if !errors.As(err, &se) {
				return err
			}
		}
		if err := v.WaitRunUnlocked(exitGrace); err != nil {
			return err
		}
	}
	if rec, h, err = facts(v); !usable(err) {
		return err
	}
	if rec, err = reapStale(v, rec, h); err != nil {
		return err
	}
	vm, err := loadSpec(v)
	if err != nil {
		return err
	}
	if vm.Backend != configs.BackendNative {
		return fmt.Errorf("VM %s: backend %q: snapshots are of VMs on the native backend", v.Name, vm.Backend)
	}
	// The seed volume is one of the machine's disks, as at a start.
	if err := writeSeed(v, vm); err != nil {
		return err
	}
	return n.spawn(ctx, v, vm, rec, "--restore", snap)
}

// RemoveSnapshot deletes the VM's snapshot snap: the internal qcow2
// snapshots it left in the disks (through the VMM, which holds the
// disks, if the VM runs) and its directory; for a libvirt VM, libvirt's
// snapshot.
func (m *Manager) RemoveSnapshot(ctx context.Context, name, snap string) error {
	v, l, err := m.lockVM(name)
	if err != nil {
		return err
	}
	defer l.Unlock()
	return m.backend(v).RemoveSnapshot(ctx, v, snap)
}

// RemoveSnapshot implements Backend.
func (n *native) RemoveSnapshot(ctx context.Context, v *store.VM, snap string) error {
	meta, err := v.ReadSnapshot(snap)
	if errors.Is(err, store.ErrNoSnapshot) || errors.Is(err, store.ErrBadSnapshotName) {
		return &NoSnapshotError{VM: v.Name, Name: snap}
	}
	if err != nil {
		return err
	}
	_, h, err := facts(v)
	if !usable(err) {
		return err
	}
	if h.Alive {
		c, _, err := n.client(v, "remove a snapshot of")
		if err != nil {
			return err
		}
		defer c.Close()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := c.DeleteSnapshot(cctx, snap); err != nil {
			return apiError(v.Name, "remove a snapshot of", err)
		}
	} else {
		vm, err := loadSpec(v)
		if err != nil {
			return err
		}
		// A VMM killed a moment ago may hold the disks a little longer
		// than its run lock (store.VM.WaitLastHolderExited).
		if err := v.WaitLastHolderExited(exitGrace); err != nil {
			return err
		}
		if err := deleteDiskSnapshots(meta, vm); err != nil {
			return err
		}
	}
	return v.RemoveSnapshotDir(snap)
}

// deleteDiskSnapshots deletes a snapshot's internal qcow2 snapshots from
// the disks of a VM that does not run (each opened, and locked, in
// turn). A disk without it (deleted by hand, or gone) is left alone.
// snapshot.json was written by the VM's VMM, which may run jailed and
// could have written anything there: only a disk that is the VM's own
// and writable in its spec vm (at the same index, by the same path) is
// opened; any other disk it names is left alone.
func deleteDiskSnapshots(meta store.SnapshotMeta, vm *configs.VM) error {
	for _, d := range meta.Disks {
		if d.Snapshot == "" || d.Index < 0 || d.Index >= len(vm.Disks) {
			continue
		}
		if own := vm.Disks[d.Index]; own.ReadOnly || own.Path != d.Path {
			continue
		}
		if _, err := os.Stat(d.Path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		img, err := qcow2.Open(d.Path, qcow2.Options{NoBacking: true})
		if err != nil {
			return fmt.Errorf("snapshot %s: disks[%d]: %w", meta.Name, d.Index, err)
		}
		err = img.DeleteSnapshot(d.Snapshot)
		cerr := img.Close()
		if err != nil && !errors.Is(err, qcow2.ErrNoSnapshot) {
			return fmt.Errorf("snapshot %s: disks[%d]: %w", meta.Name, d.Index, err)
		}
		if cerr != nil {
			return fmt.Errorf("snapshot %s: disks[%d]: %w", meta.Name, d.Index, cerr)
		}
	}
	return nil
}
