package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
	"github.com/paddock-vm/paddock/netdev"
)

// RestoreFrom is a snapshot a session's first machine is restored from
// instead of booted.
type RestoreFrom struct {
	// Name names the snapshot in messages.
	Name string
	// State is the machine's saved state and Memory the memory file;
	// the session's first machine takes Memory over.
	State  *machine.State
	Memory *os.File
	// NewMACs gives the restored NICs the machine's MAC addresses in
	// place of the saved ones: a warm clone's NICs have addresses of
	// their own, which the virtio-net devices present to the guest from
	// the restore on (the guest's driver reads them when it probes the
	// device again). A snapshot of the VM itself keeps its MACs.
	NewMACs bool
}

// nicMACs replaces the saved NICs' MAC addresses in r's state with
// macs, the machine's, in order; a count that differs changes nothing.
func (r *RestoreFrom) nicMACs(macs []netdev.MAC) error {
	var nets []int // indices in r.State.Virtio
	for i, v := range r.State.Virtio {
		if v.Net != nil {
			nets = append(nets, i)
		}
	}
	if len(nets) != len(macs) {
		return fmt.Errorf("the snapshot has %d NICs, the machine %d", len(nets), len(macs))
	}
	for k, i := range nets {
		r.State.Virtio[i].Net.MAC = macs[k]
	}
	return nil
}

// OpenSnapshot reads the snapshot called name of VM v for a restore: its
// state file, decoded, and its memory file, open. Every problem is one
// error naming the snapshot: no such snapshot, a state file of another
// format version, a corrupted one, a missing memory file.
func OpenSnapshot(v *store.VM, name string) (*RestoreFrom, error) {
	return openSnapshot(v, name, true)
}

// CheckSnapshot checks the snapshot called name of VM v as a restore
// must before it starts a VMM: the snapshot exists, its state file is
// of this format version, whole and uncorrupted (the header and every
// section's checksum), and its memory file is there; the errors are
// OpenSnapshot's. decode decodes the machine state too, as
// OpenSnapshot does. Without it the VMM that restores the snapshot
// decodes it, and refuses it before it changes anything of the VM: a
// caller that is about to do what a refusal cannot undo, such as
// killing the VM that runs, decodes it first.
func CheckSnapshot(v *store.VM, name string, decode bool) error {
	r, err := openSnapshot(v, name, decode)
	if err != nil {
		return err
	}
	return r.Memory.Close()
}

// openSnapshot is OpenSnapshot; without decode, the State it returns
// is nil.
func openSnapshot(v *store.VM, name string, decode bool) (*RestoreFrom, error) {
	if _, err := v.ReadSnapshot(name); err != nil {
		return nil, err
	}
	f, err := readSnapshotState(v, name)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s of VM %s: %w", name, v.Name, err)
	}
	r := &RestoreFrom{Name: name}
	if decode {
		if r.State, err = machine.DecodeState(f); err != nil {
			return nil, fmt.Errorf("snapshot %s of VM %s: %w", name, v.Name, err)
		}
	}
	if r.Memory, err = v.OpenSnapshotFile(name, store.SnapshotMemoryFile); err != nil {
		return nil, fmt.Errorf("snapshot %s of VM %s: its memory file: %w", name, v.Name, err)
	}
	return r, nil
}

// readSnapshotState reads and decodes the state file of v's snapshot
// name, opened as the store opens a snapshot's files (no link followed).
func readSnapshotState(v *store.VM, name string) (*snapshot.File, error) {
	fh, err := v.OpenSnapshotFile(name, store.SnapshotStateFile)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return snapshot.ReadFrom(fh)
}

// held runs fn on the current machine with its vCPUs stopped: a running
// machine is paused for it and resumed afterwards unless keep says
// otherwise; a paused one stays paused. fn learns whether the VM was
// paused. It refuses, naming op, a VM that is neither running nor
// paused, and returns how long the guest was held.
func (s *Session) held(op string, fn func(m *machine.Machine, paused bool) (keep bool, err error)) (time.Duration, error) {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	m, phase := s.m, s.phase
	switch {
	case phase != store.PhaseRunning && phase != store.PhasePaused:
		defer s.mu.Unlock()
		return 0, s.wrongState(op)
	case m == nil:
		s.mu.Unlock()
		return 0, api.Errorf(api.CodeWrongState, "cannot %s VM '%s': its guest just ended", op, s.vm.Name)
	}
	s.mu.Unlock()
	start := time.Now()
	paused := phase == store.PhasePaused
	if !paused {
		if err := m.Hold(); err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			return 0, s.wrongState(op)
		}
	}
	keep, err := fn(m, paused)
	if !paused && !keep {
		if rerr := m.Resume(); rerr != nil {
			s.o.Logf("VM %s: resume after %s: %v", s.vm.Name, op, rerr)
		}
	}
	return time.Since(start), err
}

// withMachine runs fn on the current machine, whatever it is doing; op
// names it in a refusal when there is none.
func (s *Session) withMachine(op string, fn func(m *machine.Machine) error) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	if m == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.wrongState(op)
	}
	return fn(m)
}

// snapshot takes the snapshot req asks for of the VMM's VM: the guest is
// held while its machine is saved (state, memory, an internal snapshot
// of every writable disk) and the files are written and synced; the
// snapshot's directory appears complete or not at all. With req.Stop the
// VM is then killed: it stays held until it ends, so it runs no further
// than the snapshot.
func (p *vmmProc) snapshot(sess *Session, req api.SnapshotRequest) (api.SnapshotResult, error) {
	name := p.vm.Name
	if !store.ValidSnapshotName(req.Name) {
		return api.SnapshotResult{}, api.Errorf(api.CodeBadRequest, "%q cannot name a snapshot: use 1 to %d letters, digits, '.', '_' and '-', starting with a letter or digit", req.Name, store.MaxNameLen)
	}
	tmp, err := p.vm.NewSnapshotDir(req.Name)
	if errors.Is(err, store.ErrSnapshotExists) {
		return api.SnapshotResult{}, api.Errorf(api.CodeExists, "VM '%s' has a snapshot called '%s' already", name, req.Name)
	}
	if err != nil {
		return api.SnapshotResult{}, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	res := api.SnapshotResult{Name: req.Name, Created: time.Now(), Stopped: req.Stop}
	held, err := sess.held("snapshot", func(m *machine.Machine, paused bool) (bool, error) {
		res.VMState = string(store.PhaseRunning)
		if paused {
			res.VMState = string(store.PhasePaused)
		}
		if err := p.writeSnapshot(m, tmp, req.Name, &res); err != nil {
			return false, err
		}
		committed = true
		return req.Stop, nil
	})
	res.Paused = held.Seconds()
	if err != nil {
		return api.SnapshotResult{}, err
	}
	p.logf("snapshot %s taken: %d MiB of %d MiB of memory written, the guest held for %s", req.Name, res.MemoryWritten>>20, res.Memory>>20, held.Round(time.Millisecond))
	if req.Stop {
		go sess.Kill()
	}
	return res, nil
}

// writeSnapshot saves m into the snapshot directory tmp and renames it
// into place as the snapshot called name. If anything fails after the
// disks got their internal snapshots, those are deleted again.
// Precondition: m is held.
func (p *vmmProc) writeSnapshot(m *machine.Machine, tmp, name string, res *api.SnapshotResult) error {
	mem, err := os.OpenFile(filepath.Join(tmp, store.SnapshotMemoryFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer mem.Close()
	saved, err := m.Save(machine.SaveOptions{Memory: mem, DiskSnapshot: name})
	if err != nil {
		return err
	}
	if err := p.finishSnapshot(saved, mem, tmp, name, res); err != nil {
		if derr := m.DeleteDiskSnapshot(name); derr != nil {
			p.logf("%v", derr)
		}
		return err
	}
	return nil
}

// finishSnapshot writes the state file and snapshot.json next to the
// memory file, syncs them and commits the directory.
func (p *vmmProc) finishSnapshot(saved machine.SaveResult, mem *os.File, tmp, name string, res *api.SnapshotResult) error {
	if err := mem.Sync(); err != nil {
		return fmt.Errorf("snapshot %s: sync the memory file: %w", name, err)
	}
	st := saved.State
	meta := store.SnapshotMeta{
		Format: store.SnapshotMetaFormat, Name: name, VM: p.vm.Name, Created: res.Created, VMState: res.VMState,
		Paddock: p.cfg.Version, CPUs: st.CPUs, Memory: st.Memory, MemoryWritten: saved.Memory.Written,
	}
	for i, path := range p.diskPaths {
		sd := store.SnapshotDisk{Index: i, Path: path}
		if i < len(st.Virtio) {
			sd.Snapshot = st.Virtio[i].Snapshot
		}
		if sd.Snapshot != "" {
			res.Disks = append(res.Disks, fmt.Sprintf("disks[%d]", i))
		}
		meta.Disks = append(meta.Disks, sd)
	}
	f, err := st.File(snapshot.Header{Paddock: p.cfg.Version, Created: res.Created,
		Notes: map[string]string{"vm": p.vm.Name, "snapshot": name, "vm_state": res.VMState}})
	if err != nil {
		return err
	}
	b, err := snapshot.Encode(f)
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(tmp, store.SnapshotStateFile), b, 0o600); err != nil {
		return err
	}
	mb, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(tmp, store.SnapshotMetaFile), append(mb, '\n'), 0o600); err != nil {
		return err
	}
	if err := p.vm.CommitSnapshotDir(tmp, name); err != nil {
		return err
	}
	res.Memory, res.MemoryWritten = st.Memory, saved.Memory.Written
	return nil
}
