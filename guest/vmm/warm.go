package vmm

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// WriteWarmState writes dst, the state file of a warm template, from
// src, the open state file of the VM snapshot the template is made of: the
// same machine, with no internal disk snapshot named for its disks,
// since the template's base disks are the disks of the snapshot's
// instant (a clone's overlays on them have no internal snapshot to
// revert to). It returns the state.
func WriteWarmState(src *os.File, dst, template string) (*machine.State, error) {
	f, err := snapshot.ReadFrom(src)
	if err != nil {
		return nil, err
	}
	st, err := machine.DecodeState(f)
	if err != nil {
		return nil, err
	}
	for i := range st.Virtio {
		st.Virtio[i].Snapshot = ""
	}
	h := f.Header
	h.Notes = map[string]string{"template": template, "vm_state": f.Header.Notes["vm_state"]}
	out, err := st.File(h)
	if err != nil {
		return nil, err
	}
	b, err := snapshot.Encode(out)
	if err != nil {
		return nil, err
	}
	if err := store.WriteFileAtomic(dst, b, 0o600); err != nil {
		return nil, err
	}
	return st, nil
}

// OpenWarm reads the warm template t's saved machine for a restore: its
// state file, decoded, and its memory file, open read-only. Every
// problem is one error naming the template: not a warm template, a state
// file of another format version or corrupted, a memory file missing or
// not the size of the saved machine's RAM. The files' checksums are the
// caller's to verify (Template.Verify).
func OpenWarm(t *store.Template) (*RestoreFrom, error) {
	w, err := openWarmFiles(t)
	if err != nil {
		return nil, err
	}
	r, err := w.restoreFrom()
	if err != nil {
		return nil, err
	}
	if r.State.CPUs != t.Meta.Warm.CPUs || r.State.Memory != t.Meta.Warm.MemorySize {
		r.Memory.Close()
		return nil, fmt.Errorf("template %s: its state file saved %d vCPUs and %d bytes of RAM, its template.json says %d and %d", t.Name, r.State.CPUs, r.State.Memory, t.Meta.Warm.CPUs, t.Meta.Warm.MemorySize)
	}
	return r, nil
}

// WarmFiles are a warm template's saved machine, open read-only: its
// state file and its memory file. The command that starts a warm
// clone's VMM opens them and hands them over (Handles.Warm), so that a
// jailed VMM, which cannot reach the template's directory, restores
// from them.
type WarmFiles struct {
	// Template names the template in messages.
	Template string
	// State and Memory are the template's state and memory files.
	State, Memory *os.File
}

// Close closes the files still held (restoreFrom takes Memory over).
func (w *WarmFiles) Close() error {
	var errs []error
	for _, f := range []*os.File{w.State, w.Memory} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	w.State, w.Memory = nil, nil
	return errors.Join(errs...)
}

// openWarmFiles opens the warm template t's state and memory files.
func openWarmFiles(t *store.Template) (*WarmFiles, error) {
	w := t.Meta.Warm
	if w == nil {
		return nil, fmt.Errorf("template %s is not a warm template: it has no memory snapshot", t.Name)
	}
	state, err := os.Open(t.Path(w.State.File))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name, err)
	}
	mem, err := os.Open(t.Path(w.Memory.File))
	if err != nil {
		state.Close()
		return nil, fmt.Errorf("template %s: its memory file: %w", t.Name, err)
	}
	return &WarmFiles{Template: t.Name, State: state, Memory: mem}, nil
}

// restoreFrom decodes the state file and checks the memory file: a
// regular file of the saved machine's RAM size. The restore takes the
// memory file over; the state file is closed. Whatever happens, w holds
// no file afterwards.
func (w *WarmFiles) restoreFrom() (*RestoreFrom, error) {
	defer w.Close()
	b, err := io.ReadAll(io.LimitReader(w.State, snapshot.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("template %s: snapshot: read %s: %w", w.Template, w.State.Name(), err)
	}
	f, err := snapshot.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("template %s: snapshot: %s: %w", w.Template, w.State.Name(), err)
	}
	st, err := machine.DecodeState(f)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", w.Template, err)
	}
	fi, err := w.Memory.Stat()
	if err == nil && (!fi.Mode().IsRegular() || uint64(fi.Size()) != st.Memory) {
		err = fmt.Errorf("%s is %d bytes, want %d (the saved machine's RAM)", w.Memory.Name(), fi.Size(), st.Memory)
	}
	if err != nil {
		return nil, fmt.Errorf("template %s: its memory file: %w", w.Template, err)
	}
	mem := w.Memory
	w.Memory = nil
	return &RestoreFrom{Name: "of template " + w.Template, State: st, Memory: mem, NewMACs: true}, nil
}

// CheckWarm checks that the host's KVM (kvmPath, or /dev/kvm) can
// restore the warm template t: its files are whole and its saved vCPUs'
// CPU vendor and features are this host's. It opens nothing for long.
func CheckWarm(t *store.Template, kvmPath string) error {
	r, err := OpenWarm(t)
	if err != nil {
		return err
	}
	r.Memory.Close()
	if kvmPath == "" {
		kvmPath = kvm.DefaultPath
	}
	sys, err := kvm.Open(kvmPath)
	if err != nil {
		return fmt.Errorf("template %s: %w", t.Name, err)
	}
	defer sys.Close()
	if err := r.State.CheckHost(sys); err != nil {
		return fmt.Errorf("template %s was saved on another kind of CPU: its clones cannot run here (%w); make the warm template again on this host", t.Name, err)
	}
	return nil
}

// OpenVMWarm opens the saved machine of the warm template the VM v was
// made from (its from.json), which must still be the template of that
// ID, in the state directory home.
func OpenVMWarm(v *store.VM, home string) (*WarmFiles, error) {
	from, err := v.ReadFrom()
	if err != nil {
		return nil, err
	}
	if from == nil {
		return nil, fmt.Errorf("VM %s was not made from a template: it has no warm template to restore", v.Name)
	}
	s, err := store.Open(home)
	if err != nil {
		return nil, err
	}
	t, err := s.Template(from.Template)
	if err != nil {
		return nil, err
	}
	if t.Meta.ID != from.ID {
		return nil, fmt.Errorf("VM %s was made from another template called %s", v.Name, from.Template)
	}
	return openWarmFiles(t)
}

// takeWarm takes the handles' warm template files over for the first
// machine's restore.
func (h *Handles) takeWarm() (*RestoreFrom, error) {
	if h.Warm == nil {
		return nil, errors.New("vmm: a warm start, but the warm template's files were not handed over")
	}
	w := h.Warm
	h.Warm = nil
	return w.restoreFrom()
}
