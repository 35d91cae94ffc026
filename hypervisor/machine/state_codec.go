package machine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// Section ids of a machine's state in a snapshot state file. Every
// section holds its part of State as JSON.
const (
	secMachine   = "machine"
	secVCPU      = "vcpu/" // + index
	secPICMaster = "irqchip/pic-master"
	secPICSlave  = "irqchip/pic-slave"
	secIOAPIC    = "irqchip/ioapic"
	secPIT       = "pit"
	secSerial    = "serial/com1"
	secI8042     = "i8042"
	secRTC       = "rtc"
	secPM        = "acpi-pm"
	secPCI       = "pci/host"
	secGED       = "ged"
	secVMGenID   = "vmgenid"
	secVirtio    = "virtio/" // + the function's device id
)

// MaxSnapshotCPUs bounds the vCPUs a state file may describe: KVM's own
// limit on x86 (KVM_MAX_VCPUS) is at most this.
const MaxSnapshotCPUs = 4096

// machineSection is the "machine" section: the hardware and the
// kvmclock, and the virtio functions' ids in PCI slot order.
type machineSection struct {
	CPUs   int
	Memory uint64
	Clock  uint64
	Virtio []string
}

// virtioID is a function's section id suffix: its device name without
// the type ("disks[0]", "nics[1]", "virtio-rng").
func virtioID(name string) string {
	if i := strings.IndexByte(name, ' '); i >= 0 {
		return name[i+1:]
	}
	return name
}

// part is one section's id and the value it holds.
type part struct {
	id string
	v  any
}

// fixedParts are the sections every machine has besides its vCPUs and
// virtio functions, with pointers to their values in st (to encode them,
// or to decode into).
func (st *State) fixedParts() []part {
	return []part{
		{secPICMaster, &st.PICMaster}, {secPICSlave, &st.PICSlave}, {secIOAPIC, &st.IOAPIC}, {secPIT, &st.PIT},
		{secSerial, &st.Serial}, {secI8042, &st.I8042}, {secRTC, &st.RTC}, {secPM, &st.PM}, {secPCI, &st.PCI},
		{secGED, &st.GED}, {secVMGenID, &st.VMGenID},
	}
}

// File encodes the state as a snapshot state file's contents: h with the
// machine's size and CPU vendor filled in, and one section per vCPU,
// interrupt controller and device.
func (st *State) File(h snapshot.Header) (*snapshot.File, error) {
	h.CPUs, h.Memory = st.CPUs, st.Memory
	if len(st.VCPUs) > 0 {
		h.CPUVendor = vendorString(st.VCPUs[0].CPUID)
	}
	f := &snapshot.File{Header: h}
	add := func(id string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("machine: encode %s: %w", id, err)
		}
		f.Sections = append(f.Sections, snapshot.Section{ID: id, Data: b})
		return nil
	}
	ms := machineSection{CPUs: st.CPUs, Memory: st.Memory, Clock: st.Clock}
	for _, v := range st.Virtio {
		ms.Virtio = append(ms.Virtio, virtioID(v.Name))
	}
	parts := append([]part{{secMachine, ms}}, st.fixedParts()...)
	for i, v := range st.VCPUs {
		parts = append(parts, part{fmt.Sprintf("%s%d", secVCPU, i), v})
	}
	for i, v := range st.Virtio {
		parts = append(parts, part{secVirtio + ms.Virtio[i], v})
	}
	for _, p := range parts {
		if err := add(p.id, p.v); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// DecodeState reads a machine's state from a snapshot state file. Every
// section it needs must be there, none it does not know may be, and each
// must decode strictly (no unknown fields); what the sections say is
// checked again when the state is restored (State.check, the devices'
// Restore, KVM).
func DecodeState(f *snapshot.File) (*State, error) {
	used := map[string]bool{}
	get := func(id string, v any) error {
		b, ok := f.Section(id)
		if !ok {
			return fmt.Errorf("machine: the snapshot has no %q section", id)
		}
		used[id] = true
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("machine: the snapshot's %q section: %w", id, err)
		}
		if dec.More() {
			return fmt.Errorf("machine: the snapshot's %q section has data after its value", id)
		}
		return nil
	}
	var ms machineSection
	if err := get(secMachine, &ms); err != nil {
		return nil, err
	}
	switch {
	case ms.CPUs < 1 || ms.CPUs > MaxSnapshotCPUs:
		return nil, fmt.Errorf("machine: the snapshot has %d vCPUs; want 1 to %d", ms.CPUs, MaxSnapshotCPUs)
	case ms.CPUs != f.Header.CPUs || ms.Memory != f.Header.Memory:
		return nil, fmt.Errorf("machine: the snapshot's header (%d vCPUs, %d bytes of memory) and its machine section (%d, %d) disagree",
			f.Header.CPUs, f.Header.Memory, ms.CPUs, ms.Memory)
	case len(ms.Virtio) > maxVirtioSlots:
		return nil, fmt.Errorf("machine: the snapshot has %d virtio functions; at most %d fit on the PCI bus", len(ms.Virtio), maxVirtioSlots)
	}
	st := &State{CPUs: ms.CPUs, Memory: ms.Memory, Clock: ms.Clock, VCPUs: make([]VCPUState, ms.CPUs)}
	for i := range st.VCPUs {
		if err := get(fmt.Sprintf("%s%d", secVCPU, i), &st.VCPUs[i]); err != nil {
			return nil, err
		}
	}
	for _, p := range st.fixedParts() {
		if err := get(p.id, p.v); err != nil {
			return nil, err
		}
	}
	st.Virtio = make([]VirtioState, len(ms.Virtio))
	for i, id := range ms.Virtio {
		if used[secVirtio+id] {
			return nil, fmt.Errorf("machine: the snapshot lists virtio function %q twice", id)
		}
		if err := get(secVirtio+id, &st.Virtio[i]); err != nil {
			return nil, err
		}
		if got := virtioID(st.Virtio[i].Name); got != id {
			// File keys the section by the name inside it: one keyed
			// otherwise would not encode back to the same state.
			return nil, fmt.Errorf("machine: the snapshot's virtio function %q names itself %q", id, got)
		}
	}
	for _, s := range f.Sections {
		if !used[s.ID] {
			return nil, fmt.Errorf("machine: the snapshot has a %q section this paddock does not know", s.ID)
		}
	}
	if vendor := vendorString(st.VCPUs[0].CPUID); vendor != f.Header.CPUVendor {
		return nil, fmt.Errorf("machine: the snapshot's header names a %s CPU, its vCPUs' CPUID a %s one", f.Header.CPUVendor, vendor)
	}
	return st, nil
}
