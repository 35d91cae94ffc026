package machine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/netdev"
)

// Disk is a virtio-blk disk.
type Disk struct {
	// Path is the image file (qcow2 or raw).
	Path string
	// Format is disk.FormatRaw or disk.FormatQcow2, or empty to detect
	// it from the file's contents; a detected raw disk refuses guest
	// writes of a qcow2 header to its first sector (see blk.Config).
	Format string
	// ReadOnly presents the disk read-only and opens the image so.
	ReadOnly bool
	// Serial is what the guest reads as the disk's serial number (at most
	// 20 bytes); Linux shows it in /dev/disk/by-id.
	Serial string
	// Cache is the blk cache mode; empty means writeback.
	Cache blk.CacheMode
	// Queues is the number of request queues; 0 means one per vCPU (at
	// most blk.MaxQueues).
	Queues int
}

// NIC is a virtio-net NIC backed by a host tap.
type NIC struct {
	// Tap names an existing tap device to use, or Bridge a bridge on
	// which the machine creates a tap (removed when the VMM exits,
	// however it exits). Exactly one is set.
	Tap    string
	Bridge string
	// MAC is the guest's address; required.
	MAC netdev.MAC
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

// VirtioDevices translates a VM spec's disks, NICs and rng into the
// machine's devices: relative paths are already resolved by configs, a
// NIC without a MAC gets one derived from the VM's name and the NIC's
// index (stable across restarts, new for a clone with a new name).
func VirtioDevices(vm *configs.VM) (disks []Disk, nics []NIC, rng bool, err error) {
	for _, d := range vm.Disks {
		disks = append(disks, Disk{Path: d.Path, Format: d.Format, ReadOnly: d.ReadOnly, Serial: d.Serial, Cache: blk.CacheMode(d.Cache)})
	}
	for i, n := range vm.NICs {
		mac := netdev.GenerateMAC(fmt.Sprintf("%s/%d", vm.Name, i))
		if n.MAC != "" {
			if mac, err = netdev.ParseMAC(n.MAC); err != nil {
				return nil, nil, false, fmt.Errorf("nics[%d].mac: %w", i, err)
			}
		}
		nics = append(nics, NIC{Tap: n.Tap, Bridge: n.Bridge, MAC: mac})
	}
	return disks, nics, vm.RNG, nil
}

// virtioDevices is the machine's virtio-pci functions and what they hold:
// disk images (and their locks), taps, GSI routes.
type virtioDevices struct {
	m      *Machine
	logf   func(format string, args ...any)
	router *gsiRouter
	alloc  *pci.Allocator
	lines  map[uint32]*sharedLine
	funcs  []*virtioFunc
	images []disk.Image
	locks  []*os.File
	taps   []*netdev.Tap
}

// virtioFunc is one virtio-pci function on the bus.
type virtioFunc struct {
	v    *virtioDevices
	name string
	slot int
	pci  *virtio.PCI
	msix *msixVectors

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
	for i, d := range m.cfg.Disks {
		dev, err := v.openDisk(i, d)
		if err != nil {
			return err
		}
		if err := v.attach(fmt.Sprintf("virtio-blk disks[%d]", i), dev); err != nil {
			return err
		}
	}
	for i, nic := range m.cfg.NICs {
		dev, err := v.openNIC(i, nic)
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

// openDisk locks and opens disk i's image and builds its device.
func (v *virtioDevices) openDisk(i int, d Disk) (virtio.Device, error) {
	name := fmt.Sprintf("disks[%d]", i)
	lock, err := lockImage(d.Path, d.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.locks = append(v.locks, lock)
	format := d.Format
	guard := false
	if format == "" {
		if format, err = disk.Detect(d.Path); err != nil {
			return nil, fmt.Errorf("machine: %s: %w", name, err)
		}
		guard = format == disk.FormatRaw
	}
	img, err := disk.Open(d.Path, disk.Options{Format: format, ReadOnly: d.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.images = append(v.images, img)
	queues := d.Queues
	if queues == 0 {
		queues = min(v.m.cfg.CPUs, blk.MaxQueues)
	}
	dev, err := blk.New(blk.Config{
		Image: img, ReadOnly: d.ReadOnly, Serial: d.Serial, Cache: d.Cache,
		Queues: queues, GuardFormat: guard, Name: name, Logf: v.logf,
	})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	return dev, nil
}

// lockImage takes an advisory lock on the image file for the machine's
// life: exclusive for a writable disk, shared for a read-only one, so
// two VMs can share a read-only base but never write the same image.
func lockImage(path string, readOnly bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if readOnly {
		how = unix.LOCK_SH
	}
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another VM", path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// openNIC opens or creates NIC i's tap and builds its device.
func (v *virtioDevices) openNIC(i int, n NIC) (virtio.Device, error) {
	name := fmt.Sprintf("nics[%d]", i)
	if n.MAC.Multicast() || n.MAC == (netdev.MAC{}) {
		return nil, fmt.Errorf("machine: %s: MAC %s is not a unicast address", name, n.MAC)
	}
	var tap *netdev.Tap
	var err error
	switch {
	case n.Tap != "" && n.Bridge != "":
		return nil, fmt.Errorf("machine: %s: set tap or bridge, not both", name)
	case n.Tap != "":
		tap, err = netdev.OpenTap(n.Tap)
	case n.Bridge != "":
		tap, err = v.bridgedTap(n)
	default:
		return nil, fmt.Errorf("machine: %s: needs a tap or a bridge", name)
	}
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.taps = append(v.taps, tap)
	dev, err := vnet.New(vnet.Config{Backend: tap, MAC: n.MAC, Name: name, Logf: v.logf})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	return dev, nil
}

// bridgedTap creates a tap named after the NIC's MAC (so it is easy to
// match with its VM) and makes it a port of the bridge.
func (v *virtioDevices) bridgedTap(n NIC) (*netdev.Tap, error) {
	if err := netdev.IsBridge(n.Bridge); err != nil {
		return nil, err
	}
	tap, err := netdev.CreateTap(fmt.Sprintf("pd%02x%02x%02x%02x", n.MAC[2], n.MAC[3], n.MAC[4], n.MAC[5]))
	if errors.Is(err, netdev.ErrExists) {
		tap, err = netdev.CreateTap("pdtap%d")
	}
	if err != nil {
		return nil, err
	}
	if err := netdev.AddToBridge(tap.Name(), n.Bridge); err != nil {
		tap.Close()
		return nil, err
	}
	return tap, nil
}

// attach puts dev on the next PCI slot with MSI-X, INTx and a BAR.
func (v *virtioDevices) attach(name string, dev virtio.Device) error {
	slot := firstVirtioSlot + len(v.funcs)
	f := &virtioFunc{v: v, name: name, slot: slot}
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

// close stops every device, then flushes and closes the disk images,
// closes the taps (a created tap disappears) and drops the image locks.
func (v *virtioDevices) close() error {
	var errs []error
	for _, f := range v.funcs {
		errs = append(errs, f.close())
	}
	for _, img := range v.images {
		errs = append(errs, img.Close())
	}
	for _, t := range v.taps {
		errs = append(errs, t.Close())
	}
	for _, l := range v.locks {
		errs = append(errs, l.Close())
	}
	v.funcs, v.images, v.taps, v.locks = nil, nil, nil, nil
	return errors.Join(errs...)
}

// gsiRouter owns the VM's GSI routing table: KVM's default irqchip routes
// for GSIs 0-23 plus an MSI route per MSI-X vector. KVM_SET_GSI_ROUTING
// replaces the whole table, so every change rewrites all of it.
type gsiRouter struct {
	vm *kvm.VM

	mu   sync.Mutex
	next uint32
	msi  map[uint32]kvm.RoutingEntry
}

// allocate reserves a GSI for an MSI route.
func (r *gsiRouter) allocate() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next >= maxGSI {
		return 0, fmt.Errorf("out of GSIs (%d)", maxGSI)
	}
	r.next++
	return r.next - 1, nil
}

// setMSI routes gsi to an MSI message and rewrites the table.
func (r *gsiRouter) setMSI(gsi uint32, msg virtio.MSIMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msi == nil {
		r.msi = map[uint32]kvm.RoutingEntry{}
	}
	old, had := r.msi[gsi]
	r.msi[gsi] = kvm.RoutingEntry{GSI: gsi, Type: kvm.RoutingMSI, AddressLo: uint32(msg.Address), AddressHi: uint32(msg.Address >> 32), Data: msg.Data}
	if err := r.commitLocked(); err != nil {
		if had {
			r.msi[gsi] = old
		} else {
			delete(r.msi, gsi)
		}
		return err
	}
	return nil
}

// commit writes the table.
func (r *gsiRouter) commit() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitLocked()
}

// commitLocked writes the table. Precondition: mu is held.
func (r *gsiRouter) commitLocked() error {
	return r.vm.SetGSIRouting(r.table())
}

// table is the routing table: the defaults, then MSI routes by GSI.
// Precondition: mu is held.
func (r *gsiRouter) table() []kvm.RoutingEntry {
	t := defaultRoutes()
	gsis := make([]uint32, 0, len(r.msi))
	for g := range r.msi {
		gsis = append(gsis, g)
	}
	sort.Slice(gsis, func(i, j int) bool { return gsis[i] < gsis[j] })
	for _, g := range gsis {
		t = append(t, r.msi[g])
	}
	return t
}

// defaultRoutes is KVM's own default table (arch/x86/kvm/irq_comm.c):
// GSIs 0-15 to the IOAPIC pin and the PIC pin of the same number, 16-23
// to the IOAPIC.
func defaultRoutes() []kvm.RoutingEntry {
	var t []kvm.RoutingEntry
	for gsi := uint32(0); gsi < 24; gsi++ {
		t = append(t, kvm.RoutingEntry{GSI: gsi, Type: kvm.RoutingIRQChip, Chip: kvm.IRQChipIOAPIC, Pin: gsi})
		if gsi < 16 {
			chip := uint32(kvm.IRQChipPICMaster)
			if gsi >= 8 {
				chip = kvm.IRQChipPICSlave
			}
			t = append(t, kvm.RoutingEntry{GSI: gsi, Type: kvm.RoutingIRQChip, Chip: chip, Pin: gsi % 8})
		}
	}
	return t
}

// msixVectors implements virtio.MSIX for one function: a GSI and an
// irqfd per vector.
type msixVectors struct {
	vm     *kvm.VM
	router *gsiRouter
	gsis   []uint32
	fds    []*virtio.EventFD
}

func newMSIXVectors(vm *kvm.VM, router *gsiRouter, n int) (*msixVectors, error) {
	x := &msixVectors{vm: vm, router: router}
	for i := 0; i < n; i++ {
		gsi, err := router.allocate()
		if err != nil {
			x.close()
			return nil, err
		}
		fd, err := virtio.NewEventFD()
		if err != nil {
			x.close()
			return nil, err
		}
		if err := vm.IRQFD(fd.Fd(), gsi); err != nil {
			fd.Close()
			x.close()
			return nil, fmt.Errorf("irqfd for MSI-X vector %d: %w", i, err)
		}
		x.gsis = append(x.gsis, gsi)
		x.fds = append(x.fds, fd)
	}
	return x, nil
}

// Route implements virtio.MSIX.
func (x *msixVectors) Route(v int, msg virtio.MSIMessage) error {
	if v < 0 || v >= len(x.gsis) {
		return fmt.Errorf("MSI-X vector %d of %d", v, len(x.gsis))
	}
	return x.router.setMSI(x.gsis[v], msg)
}

// Fire implements virtio.MSIX.
func (x *msixVectors) Fire(v int) error {
	if v < 0 || v >= len(x.fds) {
		return fmt.Errorf("MSI-X vector %d of %d", v, len(x.fds))
	}
	return x.fds[v].Signal()
}

// close removes the irqfds and closes their eventfds.
func (x *msixVectors) close() error {
	var errs []error
	for i, fd := range x.fds {
		errs = append(errs, x.vm.DeassignIRQFD(fd.Fd(), x.gsis[i]), fd.Close())
	}
	x.fds, x.gsis = nil, nil
	return errors.Join(errs...)
}

// sharedLine is a level-triggered GSI that several functions drive: it is
// high while any of them holds it high (KVM_IRQ_LINE from user space has
// a single source, so the sharing is resolved here).
type sharedLine struct {
	line *gsiLine

	mu   sync.Mutex
	high map[int]bool
}

// lineSource is one function's view of a shared line.
type lineSource struct {
	l  *sharedLine
	id int
}

// SetLevel implements devices.InterruptLine.
func (s *lineSource) SetLevel(high bool) error {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if high {
		l.high[s.id] = true
	} else {
		delete(l.high, s.id)
	}
	return l.line.SetLevel(len(l.high) > 0)
}

// Pulse implements devices.InterruptLine: an edge, unless another
// function holds the line high.
func (s *lineSource) Pulse() error {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.high) > 0 {
		return nil
	}
	return l.line.Pulse()
}

// WriteDebug writes the state of the machine's virtio devices (status,
// interrupts, ring positions, notifications that missed their ioeventfd)
// for diagnosing a stalled guest. Safe while the machine runs.
func (m *Machine) WriteDebug(w io.Writer) {
	fmt.Fprintf(w, "machine: %v\n", runState(m.state.Load()))
	if m.virtio == nil {
		return
	}
	for _, f := range m.virtio.funcs {
		f.pci.WriteDebug(w)
		fmt.Fprintf(w, "  notifications through MMIO exits: %d\n", f.notifyExits.Load())
	}
}
