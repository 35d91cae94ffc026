package guest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// Snapshots of libvirt VMs are libvirt's internal snapshots: QEMU saves
// the guest's memory and devices and snapshots each qcow2 disk, inside
// the disks, all of one instant, and reverting puts memory and disks back
// together. libvirt keeps their list (the domain's snapshot metadata);
// paddock keeps nothing of its own, and rm takes them with the domain.
// Unlike the native backend's snapshots, a restore is not lazy: QEMU
// reads the whole saved memory before the guest goes on.

// snapshotDisks checks that the VM's disks can hold an internal snapshot:
// at least one, and every writable one qcow2 (QEMU keeps the snapshot
// inside them, and the saved memory in the first).
func snapshotDisks(v *store.VM) error {
	vm, err := loadSpec(v)
	if err != nil {
		return err
	}
	pins, err := vmm.PinFormats(v, vm)
	if err != nil {
		return err
	}
	qcow2 := 0
	for i, d := range vm.Disks {
		format := d.Format
		if format == "" {
			format = pins[i]
		}
		switch {
		case format == disk.FormatQcow2:
			qcow2++
		case !d.ReadOnly:
			return fmt.Errorf("VM %s: a libvirt snapshot lives inside the VM's disks, which must all be qcow2: disks[%d] (%s) is %s", v.Name, i, d.Path, format)
		}
	}
	if qcow2 == 0 {
		return fmt.Errorf("VM %s: a libvirt snapshot lives inside the VM's qcow2 disks, and it has none: give it one (disks: [{path: state.qcow2}])", v.Name)
	}
	return nil
}

// snapshotInfo describes a libvirt snapshot as ls shows every backend's:
// its disks as the spec numbers them (vda is disks[0]), its memory the
// VM's (kept inside the first qcow2 disk, how much of it unknown).
func libvirtSnapshotInfo(v *store.VM, s lv.Snapshot) *SnapshotInfo {
	in := &SnapshotInfo{Name: s.Name, VM: v.Name, Created: s.Created, VMState: s.State, Disks: []string{}, Backend: string(configs.BackendLibvirt)}
	for _, dev := range s.Disks {
		if i := lv.DiskIndex(dev); i >= 0 {
			in.Disks = append(in.Disks, fmt.Sprintf("disks[%d]", i))
		}
	}
	if vm, err := loadSpec(v); err == nil && s.Memory {
		in.Memory = uint64(vm.Memory)
	}
	return in
}

// CreateSnapshot implements Backend: libvirt's internal snapshot of the
// running or paused domain; with stop the domain is destroyed after it.
func (b *libvirtBackend) CreateSnapshot(ctx context.Context, v *store.VM, snap string, stop bool) (*SnapshotInfo, error) {
	if err := snapshotDisks(v); err != nil {
		return nil, err
	}
	_, c, d, _, err := b.open(v, "snapshot", lv.State.Active)
	if err != nil {
		var se *StateError
		if errors.As(err, &se) {
			se.Hint = notRunningHint
		}
		return nil, err
	}
	defer c.Close()
	start := time.Now()
	s, err := d.CreateSnapshot(snap)
	if errors.Is(err, lv.ErrSnapshotExists) {
		return nil, &SnapshotExistsError{VM: v.Name, Name: snap}
	}
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	// libvirt holds the guest for the whole snapshot.
	held := time.Since(start)
	if stop {
		if err := d.Destroy(); err != nil {
			return nil, fmt.Errorf("VM %s: snapshot %s taken, but the VM did not stop: %w", v.Name, snap, err)
		}
		b.recordEnd(v, &store.Exit{Reason: exit.Stop, Detail: "stopped after snapshot " + snap, At: time.Now()})
	}
	in := libvirtSnapshotInfo(v, s)
	in.Paused = held.Seconds()
	return in, nil
}

// Snapshots implements Backend: the domain's snapshots, oldest first.
func (b *libvirtBackend) Snapshots(v *store.VM) ([]*SnapshotInfo, error) {
	_, c, d, err := b.domain(v)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	snaps, err := d.Snapshots()
	if err != nil {
		return nil, err
	}
	out := []*SnapshotInfo{}
	for _, s := range snaps {
		out = append(out, libvirtSnapshotInfo(v, s))
	}
	return out, nil
}

// RestoreSnapshot implements Backend: libvirt reverts the domain, in its
// QEMU, to the snapshot's memory, devices and disks, running (or paused)
// as it was then. A VM that runs is refused unless force: what it did
// since is lost.
func (b *libvirtBackend) RestoreSnapshot(ctx context.Context, v *store.VM, snap string, force bool) error {
	_, c, d, err := b.domain(v)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := d.State()
	if err != nil {
		return err
	}
	if st.Active() && !force {
		return stateError(v, "restore a snapshot of", st, restoreRunningHint(v.Name))
	}
	if err := d.RevertSnapshot(snap); err != nil {
		if errors.Is(err, lv.ErrNoSnapshot) {
			return &NoSnapshotError{VM: v.Name, Name: snap}
		}
		return fmt.Errorf("VM %s: %w", v.Name, err)
	}
	rec, err := v.ReadRecord()
	if err != nil && !usable(err) {
		return err
	}
	if st, err = d.State(); err == nil && st.Active() {
		now := time.Now()
		rec.Phase, rec.StartError = store.PhaseRunning, ""
		rec.StartedAt, rec.BootedAt, rec.Boots = now, now, 1
	}
	return v.WriteRecord(rec)
}

// RemoveSnapshot implements Backend: libvirt deletes the snapshot, from
// its metadata and the disks.
func (b *libvirtBackend) RemoveSnapshot(ctx context.Context, v *store.VM, snap string) error {
	_, c, d, err := b.domain(v)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := d.DeleteSnapshot(snap); err != nil {
		if errors.Is(err, lv.ErrNoSnapshot) {
			return &NoSnapshotError{VM: v.Name, Name: snap}
		}
		return fmt.Errorf("VM %s: %w", v.Name, err)
	}
	return nil
}
