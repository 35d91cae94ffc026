package guest

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// validSnapshotName reports whether s can name a snapshot: 1 to
// store.MaxNameLen letters, digits, '.', '_' and '-', starting with a
// letter or digit.
func validSnapshotName(s string) bool {
	if s == "" || len(s) > store.MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

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

// CreateSnapshot takes the snapshot snap of a running or paused libvirt
// VM (a name of the time when empty); with stop the VM is destroyed
// after it. Precondition: the VM's lock is held.
func (b *libvirtBackend) CreateSnapshot(ctx context.Context, v *store.VM, snap string, stop bool) (lv.Snapshot, error) {
	if snap == "" {
		snap = time.Now().UTC().Format("snap-20060102-150405")
	}
	if !validSnapshotName(snap) {
		return lv.Snapshot{}, fmt.Errorf("%q cannot name a snapshot: use 1 to %d letters, digits, '.', '_' and '-', starting with a letter or digit", snap, store.MaxNameLen)
	}
	if err := snapshotDisks(v); err != nil {
		return lv.Snapshot{}, err
	}
	_, c, d, _, err := b.open(v, "snapshot", lv.State.Active)
	if err != nil {
		var se *StateError
		if errors.As(err, &se) {
			se.Hint = "a snapshot saves a running or paused VM: start it first"
		}
		return lv.Snapshot{}, err
	}
	defer c.Close()
	s, err := d.CreateSnapshot(snap)
	if err != nil {
		return lv.Snapshot{}, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	if stop {
		if err := d.Destroy(); err != nil {
			return s, fmt.Errorf("VM %s: snapshot %s taken, but the VM did not stop: %w", v.Name, snap, err)
		}
		b.recordEnd(v, &store.Exit{Reason: exit.Kill, Detail: "stopped after snapshot " + snap, At: time.Now()})
	}
	return s, nil
}

// Snapshots lists a libvirt VM's snapshots, oldest first.
func (b *libvirtBackend) Snapshots(v *store.VM) ([]lv.Snapshot, error) {
	_, c, d, err := b.domain(v)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return d.Snapshots()
}

// RestoreSnapshot puts a libvirt VM back to its snapshot snap: memory,
// devices and disks of that instant, running (or paused) as it was then.
// A VM that runs is refused unless force: what it did since is lost.
// Precondition: the VM's lock is held.
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
		return stateError(v, "restore", st, "what it did since the snapshot would be lost: stop it first, or use --force")
	}
	if err := d.RevertSnapshot(snap); err != nil {
		if errors.Is(err, lv.ErrNoSnapshot) {
			return fmt.Errorf("VM '%s' has no snapshot called '%s' (paddock snapshot ls %s lists them)", v.Name, snap, v.Name)
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

// RemoveSnapshot deletes a libvirt VM's snapshot snap.
func (b *libvirtBackend) RemoveSnapshot(ctx context.Context, v *store.VM, snap string) error {
	_, c, d, err := b.domain(v)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := d.DeleteSnapshot(snap); err != nil {
		if errors.Is(err, lv.ErrNoSnapshot) {
			return fmt.Errorf("VM '%s' has no snapshot called '%s' (paddock snapshot ls %s lists them)", v.Name, snap, v.Name)
		}
		return fmt.Errorf("VM %s: %w", v.Name, err)
	}
	return nil
}
