package vmm

import (
	"fmt"
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
	w := t.Meta.Warm
	if w == nil {
		return nil, fmt.Errorf("template %s is not a warm template: it has no memory snapshot", t.Name)
	}
	f, err := snapshot.ReadFile(t.Path(w.State.File))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name, err)
	}
	st, err := machine.DecodeState(f)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name, err)
	}
	if st.CPUs != w.CPUs || st.Memory != w.MemorySize {
		return nil, fmt.Errorf("template %s: its state file saved %d vCPUs and %d bytes of RAM, its template.json says %d and %d", t.Name, st.CPUs, st.Memory, w.CPUs, w.MemorySize)
	}
	mem, err := os.Open(t.Path(w.Memory.File))
	if err != nil {
		return nil, fmt.Errorf("template %s: its memory file: %w", t.Name, err)
	}
	fi, err := mem.Stat()
	if err == nil && (!fi.Mode().IsRegular() || uint64(fi.Size()) != st.Memory) {
		err = fmt.Errorf("%s is %d bytes, want %d (the saved machine's RAM)", mem.Name(), fi.Size(), st.Memory)
	}
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("template %s: its memory file: %w", t.Name, err)
	}
	return &RestoreFrom{Name: "of template " + t.Name, State: st, Memory: mem}, nil
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

// openWarm opens the memory snapshot of the warm template the VMM's VM
// was made from, which must still be the template of its from.json.
func (p *vmmProc) openWarm() (*RestoreFrom, error) {
	from, err := p.vm.ReadFrom()
	if err != nil {
		return nil, err
	}
	if from == nil {
		return nil, fmt.Errorf("VM %s was not made from a template: it has no warm template to restore", p.vm.Name)
	}
	s, err := store.Open(p.cfg.Home)
	if err != nil {
		return nil, err
	}
	t, err := s.Template(from.Template)
	if err != nil {
		return nil, err
	}
	if t.Meta.ID != from.ID {
		return nil, fmt.Errorf("VM %s was made from another template called %s", p.vm.Name, from.Template)
	}
	return OpenWarm(t)
}
