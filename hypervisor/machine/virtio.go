package machine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/netdev"
)

// Disk is a virtio-blk disk on an open image.
type Disk struct {
	// Image is the disk image, open (disk.Open) and holding its locks;
	// required. The machine does the disk's I/O on it and leaves it open:
	// closing it, which flushes it and drops its locks, is the caller's.
	Image disk.Image
	// Name names the image in messages: its path.
	Name string
	// GuardFormat says the image is raw because its format was detected,
	// not chosen by the user: the device refuses guest writes that would
	// make its first sector detect as anything else (see blk.Config).
	GuardFormat bool
	// ReadOnly presents the disk read-only. A writable disk needs an
	// image opened for writing.
	ReadOnly bool
	// Serial is what the guest reads as the disk's serial number (at most
	// 20 bytes); Linux shows it in /dev/disk/by-id.
	Serial string
	// Cache is the blk cache mode; empty means writeback.
	Cache blk.CacheMode
	// Queues is the number of request queues; 0 means one per vCPU (at
	// most blk.MaxQueues).
	Queues int
	// Limits limit the disk's bandwidth (Bytes: data read and written)
	// and requests (Ops), across its queues; zero limits nothing.
	Limits ratelimit.Limits
}

// NIC is a virtio-net NIC on an open host tap.
type NIC struct {
	// Tap carries the NIC's frames (netdev.OpenTap, netdev.CreateTap,
	// netdev.TapFromFile); required. The machine leaves it open.
	Tap *netdev.Tap
	// MAC is the guest's address; required.
	MAC netdev.MAC
	// Limits limit each direction on its own (transmit and receive
	// each get these buckets): Bytes counts Ethernet frame bytes, Ops
	// frames. Zero limits nothing.
	Limits ratelimit.Limits
}

// PCI layout of the virtio functions: device 1 onwards on bus 0, in the
// order disks, NICs, RNG; function 0 each. Their INTA# lines go to IOAPIC
// pins 16-19 with the usual swizzle, as the DSDT's _PRT says.
const (
	firstVirtioSlot = 1
	maxVirtioSlots  = pci.Devices - firstVirtioSlot
	// firstMSIGSI is the first GSI for MSI routes: 0-23 are the
	// irqchip pins.
	firstMSIGSI = 24
	// maxGSI bounds GSIs (KVM_MAX_IRQ_ROUTES).
	maxGSI = 4096
)

// intxGSIs are the GSIs of INTA#-INTD# for device 0; device d's pin p
// raises intxGSIs[(d+p)%4].
var intxGSIs = [4]uint32{16, 17, 18, 19}

// virtioDevices is the machine's virtio-pci functions, the disk images
// they use (not theirs to close) and their GSI routes.
type virtioDevices struct {
	m      *Machine
	logf   func(format string, args ...any)
	router *gsiRouter
	alloc  *pci.Allocator
	lines  map[uint32]*sharedLine
	funcs  []*virtioFunc
	images []disk.Image
}

// virtioFunc is one virtio-pci function on the bus.
type virtioFunc struct {
	v    *virtioDevices
	name string
	slot int
	dev  virtio.Device
	pci  *virtio.PCI
	msix *msixVectors
	// image is a disk's image, disk its index in Config.Disks; nil and
	// 0 for other devices.
	image disk.Image
	disk  int

	mu     sync.Mutex
	base   uint64 // where BAR 0 is mapped, when mapped
	mapped bool
	// notifyExits counts queue notifications that reached the VMM as
	// MMIO exits instead of being caught by their ioeventfd.
	notifyExits atomic.Int64
}

// setupVirtio creates the devices cfg lists and attaches them to the PCI
// bus. On error the caller's Close releases what was created.
func (m *Machine) setupVirtio() error {
	n := len(m.cfg.Disks) + len(m.cfg.NICs)
	if m.cfg.RNG {
		n++
	}
	if n == 0 {
		return nil
	}
	if n > maxVirtioSlots {
		return fmt.Errorf("machine: %d virtio devices; at most %d fit on the PCI bus", n, maxVirtioSlots)
	}
	logf := m.logf
	alloc, err := pci.NewAllocator(pci.Window{Base: PCIIOStart, Size: PCIIOSize},
		pci.Window{Base: PCIMMIO32Start, Size: PCIMMIO32Size},
		pci.Window{Base: pciMMIO64Start(m.cfg.Memory), Size: PCIMMIO64Size})
	if err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	v := &virtioDevices{m: m, logf: logf, router: &gsiRouter{vm: m.vm, next: firstMSIGSI}, alloc: alloc, lines: map[uint32]*sharedLine{}}
	m.virtio = v
	// Replace KVM's default routing table with ours (the same irqchip
	// routes) now, so a host that cannot do it fails here.
	if err := v.router.commit(); err != nil {
		return fmt.Errorf("machine: GSI routing: %w", err)
	}
	// Every image is checked before any device is made, so that a
	// restore can check every disk's snapshot before it reverts any disk
	// to one.
	for i, d := range m.cfg.Disks {
		if err := checkImage(i, d); err != nil {
			return err
		}
		v.images = append(v.images, d.Image)
	}
	if m.restoring != nil {
		if err := m.restoring.revertDisks(m.cfg.Disks, v.images); err != nil {
			return err
		}
	}
	for i, d := range m.cfg.Disks {
		dev, err := v.diskDevice(i, d)
		if err != nil {
			return err
		}
		if err := v.attach(fmt.Sprintf("virtio-blk disks[%d]", i), dev); err != nil {
			return err
		}
		f := v.funcs[len(v.funcs)-1]
		f.image, f.disk = v.images[i], i
	}
	for i, nic := range m.cfg.NICs {
		dev, err := v.nicDevice(i, nic)
		if err != nil {
			return err
		}
		if err := v.attach(fmt.Sprintf("virtio-net nics[%d]", i), dev); err != nil {
			return err
		}
	}
	if m.cfg.RNG {
		if err := v.attach("virtio-rng", rng.New(nil)); err != nil {
			return err
		}
	}
	return nil
}

// attach puts dev on the next PCI slot with MSI-X, INTx and a BAR.
func (v *virtioDevices) attach(name string, dev virtio.Device) error {
	slot := firstVirtioSlot + len(v.funcs)
	f := &virtioFunc{v: v, name: name, slot: slot, dev: dev}
	nvec := min(len(dev.QueueSizes())+1, virtio.MaxVectors)
	msix, err := newMSIXVectors(v.m.vm, v.router, nvec)
	if err != nil {
		return fmt.Errorf("machine: %s: %w", name, err)
	}
	f.msix = msix
	v.funcs = append(v.funcs, f)
	f.pci, err = virtio.NewPCI(virtio.PCIConfig{
		Device: dev, Memory: v.m.mem, MSIX: msix, Vectors: nvec,
		INTx: v.intxLine(slot), OnBARChange: f.barChanged, Name: name, Logf: v.logf,
	})
	if err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	if err := v.alloc.Assign(f.pci.ConfigSpace); err != nil {
		return fmt.Errorf("machine: %s: %w", name, err)
	}
	if err := v.m.plat.pci.Attach(slot, 0, f.pci); err != nil {
		return fmt.Errorf("machine: %s: %w", name, err)
	}
	return nil
}

// intxLine returns slot's INTA# line, shared with the other devices on
// the same GSI.
func (v *virtioDevices) intxLine(slot int) *lineSource {
	gsi := intxGSIs[slot%len(intxGSIs)]
	l := v.lines[gsi]
	if l == nil {
		l = &sharedLine{line: newGSILine(v.m.vm, gsi), high: map[int]bool{}}
		v.lines[gsi] = l
	}
	return &lineSource{l: l, id: slot}
}

// barChanged moves BAR 0's MMIO window and ioeventfds to where the guest
// programmed it, or removes them while decoding is disabled. It runs on
// the vCPU thread that wrote the configuration space.
func (f *virtioFunc) barChanged(ch pci.BARChange) {
	if ch.Index != virtio.BAR {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mapped {
		f.v.m.mmio.unregister(f.base)
		f.ioeventfds(f.base, false)
		f.mapped = false
	}
	if !ch.New.Enabled {
		return
	}
	if err := f.v.m.mmio.register(ch.New.Addr, ch.Size, &barWindow{f: f, base: ch.New.Addr}); err != nil {
		f.v.logf("%s: the guest mapped BAR 0 at %#x, which the machine cannot decode: %v", f.name, ch.New.Addr, err)
		return
	}
	f.base, f.mapped = ch.New.Addr, true
	f.ioeventfds(f.base, true)
}

// ioeventfds registers (or removes) the queues' notification addresses
// in BAR 0 at base as ioeventfds, so a notification signals the queue's
// eventfd inside KVM without an exit. A failure only costs speed: the
// MMIO exit path signals the same eventfd.
func (f *virtioFunc) ioeventfds(base uint64, assign bool) {
	for i, q := range f.pci.Queues() {
		e := kvm.IOEvent{Addr: base + virtio.NotifyOffset + uint64(i*virtio.NotifyMultiplier), Len: 2, Fd: q.Kick().Fd()}
		if !assign {
			e.Flags = kvm.IOEventDeassign
		}
		if err := f.v.m.vm.IOEventFD(e); err != nil {
			f.v.logf("%s: queue %d ioeventfd: %v", f.name, i, err)
		}
	}
}

// close stops the function's device and releases its interrupts.
func (f *virtioFunc) close() error {
	var errs []error
	if f.pci != nil {
		// The ioeventfds go first: they name the queues' eventfds,
		// which closing the function closes.
		f.mu.Lock()
		if f.mapped {
			f.v.m.mmio.unregister(f.base)
			f.ioeventfds(f.base, false)
			f.mapped = false
		}
		f.mu.Unlock()
		errs = append(errs, f.pci.Close())
	}
	if f.msix != nil {
		errs = append(errs, f.msix.close())
	}
	return errors.Join(errs...)
}

// barWindow puts a function's BAR 0 on the MMIO bus at base.
type barWindow struct {
	f    *virtioFunc
	base uint64
}

// ReadMMIO implements devices.MMIODevice.
func (w *barWindow) ReadMMIO(addr uint64, data []byte) {
	w.f.pci.ReadBAR(virtio.BAR, addr-w.base, data)
}

// WriteMMIO implements devices.MMIODevice.
func (w *barWindow) WriteMMIO(addr uint64, data []byte) {
	off := addr - w.base
	if off >= virtio.NotifyOffset && off < virtio.NotifyOffset+virtio.NotifyMultiplier*uint64(virtio.MaxQueues) {
		w.f.notifyExits.Add(1)
	}
	w.f.pci.WriteBAR(virtio.BAR, off, data)
}

// close stops every device. The disk images and taps stay open: they
// are the machine's caller's.
func (v *virtioDevices) close() error {
	var errs []error
	for _, f := range v.funcs {
		errs = append(errs, f.close())
	}
	v.funcs, v.images = nil, nil
	return errors.Join(errs...)
}
