package machine

import (
	"errors"
	"fmt"
	"os"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// SaveOptions say what Save writes besides the state it returns.
type SaveOptions struct {
	// Memory, if set, receives guest RAM (Memory.WriteTo): a new, empty
	// file. Save does not sync it.
	Memory *os.File
	// DiskSnapshot, if set, names the internal qcow2 snapshot Save takes
	// of every writable disk, at the same instant as the rest of the
	// state. Every writable disk must then be a qcow2 image without a
	// snapshot of that name.
	DiskSnapshot string
}

// SaveResult is what Save wrote.
type SaveResult struct {
	State  *State
	Memory MemoryWriteStats
}

// Save captures the machine: the state of every vCPU, interrupt
// controller and device, and, as o asks, guest RAM and a snapshot of
// every writable disk, all of the same instant. The virtio devices are
// quiesced while it runs (requests in flight complete first) and the
// disks flushed; the machine stays paused afterwards, for the caller to
// Resume or Close.
//
// Precondition: the machine is paused (Pause or Hold), or built and not
// yet run. Save refuses a running or stopped machine. When it fails it
// leaves no disk snapshot behind.
func (m *Machine) Save(o SaveOptions) (SaveResult, error) {
	switch {
	case runState(m.state.Load()) == stateStopped:
		return SaveResult{}, errors.New("machine: save: the machine has stopped")
	case m.started.Load() && !m.Paused():
		return SaveResult{}, errors.New("machine: save: the machine is running; pause it first")
	case !m.ready:
		return SaveResult{}, errors.New("machine: save: the machine was neither booted nor restored")
	}
	if o.DiskSnapshot != "" {
		if err := m.checkDiskSnapshot(o.DiskSnapshot); err != nil {
			return SaveResult{}, err
		}
	}
	if m.virtio != nil {
		m.virtio.quiesce()
		defer m.virtio.resume()
	}
	if err := m.flushDisks(); err != nil {
		return SaveResult{}, err
	}
	st, err := m.saveState()
	if err != nil {
		return SaveResult{}, err
	}
	res := SaveResult{State: st}
	if o.Memory != nil {
		if res.Memory, err = m.mem.WriteTo(o.Memory); err != nil {
			return SaveResult{}, fmt.Errorf("machine: save: %w", err)
		}
	}
	if o.DiskSnapshot != "" {
		if err := m.snapshotDisks(st, o.DiskSnapshot); err != nil {
			return SaveResult{}, err
		}
	}
	return res, nil
}

// writableDisks returns the virtio functions of the disks the guest can
// write.
func (m *Machine) writableDisks() []*virtioFunc {
	if m.virtio == nil {
		return nil
	}
	var out []*virtioFunc
	for _, f := range m.virtio.funcs {
		if f.image != nil && !f.image.Capabilities().ReadOnly {
			out = append(out, f)
		}
	}
	return out
}

// checkDiskSnapshot refuses a disk snapshot that cannot be taken on
// every writable disk, before anything is saved.
func (m *Machine) checkDiskSnapshot(name string) error {
	for _, f := range m.writableDisks() {
		q := disk.Qcow2(f.image)
		if q == nil {
			return fmt.Errorf("machine: save: %s is a %s image, and a snapshot of a running VM keeps a writable disk's contents as an internal qcow2 snapshot: convert the disk to qcow2, or make it read-only",
				f.diskName(), f.image.Capabilities().Format)
		}
		for _, s := range q.Snapshots() {
			if s.Name == name {
				return fmt.Errorf("machine: save: %s already has an internal snapshot named %q", f.diskName(), name)
			}
		}
	}
	return nil
}

// diskName names a disk's function in messages: "disks[N] (PATH)".
func (f *virtioFunc) diskName() string {
	return fmt.Sprintf("disks[%d] (%s)", f.disk, f.v.m.cfg.Disks[f.disk].Name)
}

// flushDisks makes every write the guest's disks completed durable.
func (m *Machine) flushDisks() error {
	for _, f := range m.writableDisks() {
		if err := f.image.Flush(); err != nil {
			return fmt.Errorf("machine: save: flush %s: %w", f.diskName(), err)
		}
	}
	return nil
}

// snapshotDisks takes the internal snapshot name of every writable disk
// and records it in st. If one fails, those already taken are deleted.
func (m *Machine) snapshotDisks(st *State, name string) error {
	var taken []*qcow2.Image
	for _, f := range m.writableDisks() {
		q := disk.Qcow2(f.image)
		if _, err := q.CreateSnapshot(name, qcow2.SnapshotOptions{}); err != nil {
			for _, t := range taken {
				// Best effort: the error that matters is the first.
				_ = t.DeleteSnapshot(name)
			}
			return fmt.Errorf("machine: save: snapshot %s: %w", f.diskName(), err)
		}
		taken = append(taken, q)
		st.Virtio[f.slot-firstVirtioSlot].Snapshot = name
	}
	return nil
}

// DeleteDiskSnapshot deletes the internal snapshot name from every
// writable disk that has it, through the images the machine holds open
// (and locked). Disks without it are left alone.
func (m *Machine) DeleteDiskSnapshot(name string) error {
	var errs []error
	for _, f := range m.writableDisks() {
		q := disk.Qcow2(f.image)
		if q == nil {
			continue
		}
		if err := q.DeleteSnapshot(name); err != nil && !errors.Is(err, qcow2.ErrNoSnapshot) {
			errs = append(errs, fmt.Errorf("machine: delete snapshot %q of %s: %w", name, f.diskName(), err))
		}
	}
	return errors.Join(errs...)
}

// saveState reads the state of the vCPUs, the in-kernel irqchip, PIT
// and clock, and every device. Precondition: paused, devices quiesced.
func (m *Machine) saveState() (*State, error) {
	st := &State{CPUs: m.cfg.CPUs, Memory: m.cfg.Memory}
	index, err := m.sys.MSRIndexList()
	if err != nil {
		return nil, fmt.Errorf("machine: save: %w", err)
	}
	for _, v := range m.vcpus {
		vs, err := v.save(index)
		if err != nil {
			return nil, fmt.Errorf("machine: save vCPU %d: %w", v.index, err)
		}
		st.VCPUs = append(st.VCPUs, vs)
	}
	if err := m.saveIRQChips(st); err != nil {
		return nil, fmt.Errorf("machine: save: %w", err)
	}
	clock, err := m.vm.Clock()
	if err != nil {
		return nil, fmt.Errorf("machine: save: %w", err)
	}
	st.Clock = clock.Clock
	p := m.plat
	st.Serial, st.I8042, st.RTC, st.PM, st.PCI = p.serial.Save(), p.kbd.Save(), p.rtc.Save(), p.pm.Save(), p.pci.Save()
	st.GED, st.VMGenID = p.ged.Save(), p.genID.Save()
	if m.virtio != nil {
		for _, f := range m.virtio.funcs {
			st.Virtio = append(st.Virtio, f.save())
		}
	}
	return st, nil
}

// saveIRQChips reads the PICs, the IOAPIC and the PIT.
func (m *Machine) saveIRQChips(st *State) error {
	var errs [4]error
	var master, slave, ioapic kvm.IRQChip
	master, errs[0] = m.vm.IRQChip(kvm.IRQChipPICMaster)
	slave, errs[1] = m.vm.IRQChip(kvm.IRQChipPICSlave)
	ioapic, errs[2] = m.vm.IRQChip(kvm.IRQChipIOAPIC)
	st.PIT, errs[3] = m.vm.PIT2()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	st.PICMaster, st.PICSlave, st.IOAPIC = master.PIC(), slave.PIC(), ioapic.IOAPIC()
	return nil
}

// save returns the function's transport and device state.
func (f *virtioFunc) save() VirtioState {
	vs := VirtioState{Name: f.name, Transport: f.pci.Save()}
	switch d := f.dev.(type) {
	case *blk.Device:
		s := d.Save()
		vs.Blk = &s
	case *vnet.Device:
		s := d.Save()
		vs.Net = &s
	case *rng.Device:
		s := d.Save()
		vs.RNG = &s
	}
	return vs
}

// quiesce stops every virtio device's work (virtio.PCI.Quiesce).
func (v *virtioDevices) quiesce() {
	for _, f := range v.funcs {
		f.pci.Quiesce()
	}
}

// resume starts the quiesced virtio devices again. A device that cannot
// start is failed (DEVICE_NEEDS_RESET) and reported; the others run.
func (v *virtioDevices) resume() {
	for _, f := range v.funcs {
		if err := f.pci.Resume(); err != nil {
			v.logf("%s: %v", f.name, err)
		}
	}
}
