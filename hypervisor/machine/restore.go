package machine

import (
	"errors"
	"fmt"
	"os"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/devices/vmgenid"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// restoring is what a machine is restored from: the saved state and the
// memory file holding guest RAM.
type restoring struct {
	state  *State
	memory *os.File
}

// Restore builds the machine cfg describes from a snapshot instead of
// booting it: guest RAM is memory, a memory file Save wrote, mapped
// MAP_PRIVATE (pages load as the guest touches them; the file is never
// written); every writable disk is reverted to the internal qcow2
// snapshot st names; every vCPU, interrupt controller and device gets
// its saved state. Run then continues the guest from the instant it was
// saved; its kvmclock continues from the saved value. The one thing that
// does not come back is the VM generation ID: Restore writes
// cfg.GenerationID (or a random ID) where the guest reads it, and Run
// notifies the guest, so that a guest restored many times (warm clones)
// knows each run for a new one and reseeds its RNG.
//
// cfg must describe the same hardware as the saved machine (vCPUs,
// memory, disks, NICs with their MACs, RNG) and the host must offer
// every CPU feature the saved vCPUs were given; otherwise Restore
// refuses with an error naming the difference, before any disk is
// changed. Restore takes memory (and cfg.VM) over: it is closed with the
// machine, or at once if Restore fails.
func Restore(cfg Config, st *State, memory *os.File) (*Machine, error) {
	if err := st.check(cfg); err != nil {
		memory.Close()
		if cfg.VM != nil {
			cfg.VM.Close()
		}
		return nil, err
	}
	m, err := build(cfg, &restoring{state: st, memory: memory})
	if err != nil {
		return nil, err
	}
	if err := m.applyState(st); err != nil {
		m.Close()
		return nil, err
	}
	m.clock, m.restoredClock = st.Clock, true
	m.ready = true
	return m, nil
}

// check compares the state with the machine cfg describes, without the
// host: everything a restore needs to match.
func (st *State) check(cfg Config) error {
	switch {
	case st.CPUs != cfg.CPUs || len(st.VCPUs) != cfg.CPUs:
		return fmt.Errorf("machine: restore: the snapshot has %d vCPUs (%d saved), the machine %d", st.CPUs, len(st.VCPUs), cfg.CPUs)
	case st.Memory != cfg.Memory:
		return fmt.Errorf("machine: restore: the snapshot has %d MiB of memory, the machine %d MiB", st.Memory>>20, cfg.Memory>>20)
	case st.VMGenID.Addr < ACPIStart || st.VMGenID.Addr > biosEnd-vmgenid.Len:
		// Only the reserved firmware area: a new ID written anywhere
		// else would land in memory the guest's OS uses.
		return fmt.Errorf("machine: restore: the snapshot puts the VM generation ID at %#x, outside the reserved firmware area %#x-%#x",
			st.VMGenID.Addr, ACPIStart, biosEnd-1)
	}
	rngs := 0
	if cfg.RNG {
		rngs = 1
	}
	var disks, nics, haveRNG int
	for _, v := range st.Virtio {
		switch {
		case v.Blk != nil:
			disks++
		case v.Net != nil:
			nics++
		case v.RNG != nil:
			haveRNG++
		default:
			return fmt.Errorf("machine: restore: virtio function %q has no device state", v.Name)
		}
	}
	if disks != len(cfg.Disks) || nics != len(cfg.NICs) || haveRNG != rngs || len(st.Virtio) != disks+nics+haveRNG {
		return fmt.Errorf("machine: restore: the snapshot has %d disks, %d NICs and %d RNG, the machine %d, %d and %d",
			disks, nics, haveRNG, len(cfg.Disks), len(cfg.NICs), rngs)
	}
	for i, v := range st.Virtio {
		var want bool
		switch {
		case i < disks:
			want = v.Blk != nil
		case i < disks+nics:
			want = v.Net != nil
		default:
			want = v.RNG != nil
		}
		if !want {
			return fmt.Errorf("machine: restore: virtio function %d (%q) is not where the machine has it (disks, then NICs, then the RNG)", i, v.Name)
		}
	}
	for i, d := range cfg.Disks {
		if s := st.Virtio[i].Snapshot; s != "" && d.ReadOnly {
			return fmt.Errorf("machine: restore: disks[%d] (%s) is read-only now, but the snapshot saved it writable (internal snapshot %q)", i, d.Name, s)
		}
		if st.Virtio[i].Blk.ReadOnly != d.ReadOnly && !d.ReadOnly {
			return fmt.Errorf("machine: restore: disks[%d] (%s) was read-only in the snapshot, it is writable now", i, d.Name)
		}
	}
	return nil
}

// checkHost checks that this host can run the saved vCPUs: the same CPU
// vendor, every CPU feature their CPUID offers, room for their XSAVE
// state. It runs before anything else is made.
func (r *restoring) checkHost(sys *kvm.System) error {
	supported, err := sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	if err := cpuCompatible(r.state.VCPUs[0].CPUID, supported); err != nil {
		return fmt.Errorf("machine: restore: %w", err)
	}
	return nil
}

// revertDisks reverts every writable disk to the internal snapshot the
// state names for it. Every snapshot is found first, so that a missing
// one leaves all disks as they were.
func (r *restoring) revertDisks(disks []Disk, images []disk.Image) error {
	for i, img := range images {
		name := r.state.Virtio[i].Snapshot
		if name == "" {
			continue
		}
		q := disk.Qcow2(img)
		if q == nil {
			return fmt.Errorf("machine: restore: disks[%d] (%s) is a %s image, but the snapshot keeps its contents as the internal qcow2 snapshot %q",
				i, disks[i].Name, img.Capabilities().Format, name)
		}
		found := false
		for _, s := range q.Snapshots() {
			found = found || s.Name == name
		}
		if !found {
			return fmt.Errorf("machine: restore: disks[%d] (%s) has no internal snapshot %q: the disk is not the one the snapshot was taken of, or its snapshot was deleted",
				i, disks[i].Name, name)
		}
	}
	for i, img := range images {
		if name := r.state.Virtio[i].Snapshot; name != "" {
			if err := disk.Qcow2(img).ApplySnapshot(name); err != nil {
				return fmt.Errorf("machine: restore: revert disks[%d] (%s) to snapshot %q: %w", i, disks[i].Name, name, err)
			}
		}
	}
	return nil
}

// applyState loads st into the built machine: the vCPUs first (their
// LAPICs receive what the irqchip delivers), then the irqchip and the
// PIT, then the devices, which drive their interrupt lines to their
// saved levels. The virtio devices stay quiesced until Run.
func (m *Machine) applyState(st *State) error {
	for i, v := range m.vcpus {
		if err := v.restore(st.VCPUs[i]); err != nil {
			return fmt.Errorf("machine: restore vCPU %d: %w", i, err)
		}
	}
	if err := m.restoreIRQChips(st); err != nil {
		return fmt.Errorf("machine: restore: %w", err)
	}
	p := m.plat
	err := errors.Join(p.serial.Restore(st.Serial), p.kbd.Restore(st.I8042), p.rtc.Restore(st.RTC), p.pm.Restore(st.PM), p.pci.Restore(st.PCI),
		p.ged.Restore(st.GED), p.genID.Restore(st.VMGenID))
	if err != nil {
		return fmt.Errorf("machine: restore: %w", err)
	}
	if m.virtio != nil {
		// Every routed MSI-X vector of every function, in one write of
		// the routing table.
		m.virtio.router.hold()
		for i, f := range m.virtio.funcs {
			if err := f.restore(st.Virtio[i]); err != nil {
				m.virtio.router.release()
				return fmt.Errorf("machine: restore %s: %w", f.name, err)
			}
		}
		if err := m.virtio.router.release(); err != nil {
			return fmt.Errorf("machine: restore: route the MSI-X vectors: %w", err)
		}
	}
	return nil
}

// restoreIRQChips loads the PICs, the IOAPIC and the PIT.
func (m *Machine) restoreIRQChips(st *State) error {
	master := kvm.IRQChip{ChipID: kvm.IRQChipPICMaster}
	master.SetPIC(st.PICMaster)
	slave := kvm.IRQChip{ChipID: kvm.IRQChipPICSlave}
	slave.SetPIC(st.PICSlave)
	ioapic := kvm.IRQChip{ChipID: kvm.IRQChipIOAPIC}
	ioapic.SetIOAPIC(st.IOAPIC)
	return errors.Join(m.vm.SetIRQChip(master), m.vm.SetIRQChip(slave), m.vm.SetIRQChip(ioapic), m.vm.SetPIT2(st.PIT))
}

// restore loads a function's device model state, then its transport's
// (which maps the BAR, with its ioeventfds, and routes the MSI-X
// vectors). The device stays quiesced.
func (f *virtioFunc) restore(vs VirtioState) error {
	var err error
	switch d := f.dev.(type) {
	case *blk.Device:
		if vs.Blk == nil {
			return errors.New("the snapshot has no virtio-blk state for it")
		}
		err = d.Restore(*vs.Blk)
	case *vnet.Device:
		if vs.Net == nil {
			return errors.New("the snapshot has no virtio-net state for it")
		}
		err = d.Restore(*vs.Net)
	case *rng.Device:
		if vs.RNG == nil {
			return errors.New("the snapshot has no virtio-rng state for it")
		}
		err = d.Restore(*vs.RNG)
	}
	if err != nil {
		return err
	}
	return f.pci.Restore(vs.Transport)
}

// CheckHost checks, building nothing, that this host can run the vCPUs
// st saved, as Restore checks first: the same CPU vendor and every CPU
// feature their CPUID offers. A warm template's clones are refused with
// it before any is made.
func (st *State) CheckHost(sys *kvm.System) error {
	if len(st.VCPUs) == 0 {
		return errors.New("machine: restore: the snapshot has no vCPUs")
	}
	return (&restoring{state: st}).checkHost(sys)
}
