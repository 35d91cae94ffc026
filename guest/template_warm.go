package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// Files a warm template adds to its directory.
const (
	warmStateFile  = "state"
	warmMemoryFile = "memory"
)

// warmSnapshot is the snapshot of a running VM that a warm template is
// made of while it is being made.
type warmSnapshot struct {
	m    *Manager
	v    *store.VM
	name string
	meta *SnapshotInfo
}

// takeWarmSnapshot takes a snapshot of the running or paused VM v, under
// a name of its own, for a warm template: machine, memory and an
// internal snapshot of each writable disk, all of one instant. The VM
// runs on (a paused one stays paused). Precondition: v's lock is held.
func (m *Manager) takeWarmSnapshot(ctx context.Context, v *store.VM) (*warmSnapshot, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := "paddock-template-" + hex.EncodeToString(b[:])
	info, err := m.backend(v).CreateSnapshot(ctx, v, name, false)
	if err != nil {
		return nil, err
	}
	return &warmSnapshot{m: m, v: v, name: name, meta: info}, nil
}

// move makes the snapshot's machine the stage's: the template's state
// file is the snapshot's without its internal disk snapshots
// (vmm.WriteWarmState), and the memory file moves over as it is (one
// rename: the same file system). It returns what template.json records
// of them.
func (w *warmSnapshot) move(st *store.TemplateStage) (*store.TemplateWarm, error) {
	// The snapshot's files are its VMM's, which may run jailed: they are
	// reached and taken over as the store says (store.TakeSnapshotFile).
	src, err := w.v.OpenSnapshotFile(w.name, store.SnapshotStateFile)
	if err != nil {
		return nil, fmt.Errorf("the state of VM %s's snapshot: %w", w.v.Name, err)
	}
	defer src.Close()
	saved, err := vmm.WriteWarmState(src, st.Path(warmStateFile), st.Name())
	if err != nil {
		return nil, fmt.Errorf("the state of VM %s's snapshot: %w", w.v.Name, err)
	}
	if err := w.v.TakeSnapshotFile(w.name, store.SnapshotMemoryFile, st.Path(warmMemoryFile)); err != nil {
		return nil, fmt.Errorf("move VM %s's memory file into the template: %w", w.v.Name, err)
	}
	tw := &store.TemplateWarm{
		State:  store.TemplateFile{File: warmStateFile},
		Memory: store.TemplateFile{File: warmMemoryFile},
		CPUs:   saved.CPUs, MemorySize: saved.Memory, VMState: w.meta.VMState,
	}
	for _, f := range saved.Virtio {
		if f.Net != nil {
			tw.MACs = append(tw.MACs, f.Net.MAC.String())
		}
	}
	return tw, nil
}

// remove deletes the snapshot from the VM: its internal disk snapshots
// (through the VMM, which holds the disks) and its directory.
func (w *warmSnapshot) remove(ctx context.Context) error {
	err := w.m.backend(w.v).RemoveSnapshot(context.WithoutCancel(ctx), w.v, w.name)
	var ns *NoSnapshotError
	if err != nil && !errors.As(err, &ns) {
		return fmt.Errorf("VM %s: remove the snapshot %s taken for the template: %w", w.v.Name, w.name, err)
	}
	return nil
}

// startFrom spawns the VM's VMM: a warm clone that has not run yet
// (from.json's warm) restores its template's memory snapshot (vmm
// --warm), every other VM boots. The mark is cleared before the VMM
// starts and put back if it fails to: once the guest ran, its disks
// moved on from the snapshot's instant, and restoring the snapshot over
// them again would lose data, so a second start boots.
func (n *native) startFrom(ctx context.Context, v *store.VM, vm *configs.VM, prev store.Record) error {
	from, err := v.ReadFrom()
	if err != nil {
		return err
	}
	if from == nil || !from.Warm {
		return n.spawn(ctx, v, vm, prev)
	}
	from.Warm = false
	if err := v.WriteFrom(*from); err != nil {
		return err
	}
	err = n.spawn(ctx, v, vm, prev, "--warm")
	if err != nil {
		from.Warm = true
		err = errors.Join(err, v.WriteFrom(*from))
	}
	return err
}
