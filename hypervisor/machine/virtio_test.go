package machine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// busTransport reaches a PCI function the way a guest does: its
// configuration space through ECAM on the MMIO bus, BAR 0 at the address
// its BAR holds. It implements virtiotest.Transport.
type busTransport struct {
	m    *Machine
	slot int
}

func (b *busTransport) cfgAddr(off int) uint64 { return ECAMStart + uint64(b.slot)<<15 + uint64(off) }

func (b *busTransport) ConfigRead(off int, data []byte)  { b.m.mmio.read(b.cfgAddr(off), data) }
func (b *busTransport) ConfigWrite(off int, data []byte) { b.m.mmio.write(b.cfgAddr(off), data) }

func (b *busTransport) cfg32(off int) uint32 {
	var d [4]byte
	b.ConfigRead(off, d[:])
	return binary.LittleEndian.Uint32(d[:])
}

func (b *busTransport) setCfg32(off int, v uint32) {
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], v)
	b.ConfigWrite(off, d[:])
}

func (b *busTransport) bar() uint64 { return uint64(b.cfg32(0x10) &^ 0xf) }

func (b *busTransport) ReadBAR(bar int, off uint64, data []byte) { b.m.mmio.read(b.bar()+off, data) }
func (b *busTransport) WriteBAR(bar int, off uint64, data []byte) {
	b.m.mmio.write(b.bar()+off, data)
}

// rawImage writes a raw disk image of size bytes whose sector i starts
// with "sector i".
func rawImage(t *testing.T, size int) string {
	t.Helper()
	b := make([]byte, size)
	for i := 0; i < size/512; i++ {
		copy(b[i*512:], fmt.Sprintf("sector %d", i))
	}
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// logRecorder collects device messages.
type logRecorder struct{ lines chan string }

func (l *logRecorder) logf(format string, args ...any) {
	select {
	case l.lines <- fmt.Sprintf(format, args...):
	default:
	}
}

// newVirtioMachine builds a machine with cfg's devices and, when b names
// a kernel, boots it; tests that run no guest code only build it.
func newVirtioMachine(t *testing.T, cfg Config, b BootConfig) *Machine {
	t.Helper()
	requireKVM(t)
	cfg.CPUs, cfg.Memory = max(cfg.CPUs, 1), 64<<20
	if cfg.KVM == nil {
		cfg.KVM = testKVM(t)
	}
	if cfg.Logf == nil {
		cfg.Logf = (&logRecorder{lines: make(chan string, 100)}).logf
	}
	m, err := Build(cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if b.Kernel != nil {
		if err := m.Boot(b); err != nil {
			m.Close()
			t.Fatalf("Boot: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// driverMemory gives a test driver guest RAM from 32 MiB, clear of the
// tiny guests loaded at 1 MiB.
func driverMemory(t *testing.T, m *Machine) *virtiotest.Memory {
	t.Helper()
	b, err := m.Memory().Slice(32<<20, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	return virtiotest.MemoryAt(32<<20, b)
}

func TestVirtioEnumeration(t *testing.T) {
	m := newVirtioMachine(t, Config{Disks: []Disk{openDisk(t, rawImage(t, 1<<20), disk.Options{})}, RNG: true}, BootConfig{})
	want := []struct {
		slot int
		id   uint32
	}{{1, 0x1042_1af4}, {2, 0x1044_1af4}, {3, 0xffff_ffff}}
	var bars []uint64
	for _, w := range want {
		b := &busTransport{m: m, slot: w.slot}
		if got := b.cfg32(0); got != w.id {
			t.Errorf("slot %d: vendor/device %#x, want %#x", w.slot, got, w.id)
		}
		if w.id == 0xffff_ffff {
			continue
		}
		bar := b.bar()
		if bar < PCIMMIO32Start || bar+virtio.BARSize > PCIMMIO32Start+PCIMMIO32Size || bar%virtio.BARSize != 0 {
			t.Errorf("slot %d: BAR 0 at %#x, outside the 32-bit window or unaligned", w.slot, bar)
		}
		bars = append(bars, bar)
		if pin := b.cfg32(0x3c) >> 8 & 0xff; pin != 1 {
			t.Errorf("slot %d: interrupt pin %d, want INTA", w.slot, pin)
		}
		if _, err := virtiotest.New(b, nil, nil, nil); err != nil {
			t.Errorf("slot %d: %v", w.slot, err)
		}
	}
	if len(bars) == 2 && bars[0] == bars[1] {
		t.Errorf("both functions have BAR 0 at %#x", bars[0])
	}
}

// TestVirtioThroughBuses drives a disk and the rng from Go through the
// machine's buses, as a guest would (no vCPU runs): notifications arrive
// as MMIO writes, and the BAR follows the guest when it is moved.
func TestVirtioThroughBuses(t *testing.T) {
	d := openDisk(t, rawImage(t, 1<<20), disk.Options{})
	d.Serial = "bus-disk"
	m := newVirtioMachine(t, Config{Disks: []Disk{d}, RNG: true}, BootConfig{})
	mem := driverMemory(t, m)
	disk := &busTransport{m: m, slot: 1}
	disk.setCfg32(0x04, 0x06) // memory decode and bus mastering on
	drv, err := virtiotest.New(disk, mem, virtiotest.NewInterrupts(0), devicestest.NewLine())
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Init(virtiotest.Options{Features: drv.DeviceFeatures()}); err != nil {
		t.Fatal(err)
	}
	// Read sector 5.
	hdr := make([]byte, 16)
	binary.LittleEndian.PutUint64(hdr[8:], 5)
	data, status := mem.Alloc(512, 8), mem.Alloc(1, 1)
	q := drv.Queues[0]
	if _, err := q.Add([]virtiotest.Buf{{Addr: mem.Put(hdr), Len: 16}, {Addr: data, Len: 512, Write: true}, {Addr: status, Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	drv.Kick(0)
	waitUsed(t, q, 1)
	if st := mem.Read(status, 1)[0]; st != 0 {
		t.Fatalf("status %d", st)
	}
	if got := mem.Read(data, 8); string(got) != "sector 5" {
		t.Fatalf("sector 5 reads %q", got)
	}
	f := m.virtio.funcs[0]
	if n := f.notifyExits.Load(); n != 1 {
		t.Errorf("%d notification exits, want 1 (no vCPU, so no ioeventfd catches it)", n)
	}

	// Move BAR 0 as Linux would: decoding off, new address, decoding on.
	old := disk.bar()
	moved := old + 0x100000
	disk.setCfg32(0x04, 0)
	disk.setCfg32(0x10, uint32(moved))
	disk.setCfg32(0x04, 0x06)
	var b [2]byte
	m.mmio.read(old+0x12, b[:])
	if b != [2]byte{0xff, 0xff} {
		t.Errorf("the old BAR address still decodes: % x", b)
	}
	if n := drv.NumQueues(); n != 1 {
		t.Errorf("num_queues at the new address: %d", n)
	}
	if _, err := q.Add([]virtiotest.Buf{{Addr: mem.Put(hdr), Len: 16}, {Addr: data, Len: 512, Write: true}, {Addr: status, Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	drv.Kick(0)
	waitUsed(t, q, 2)

	// The rng, on the next slot.
	rngT := &busTransport{m: m, slot: 2}
	rngT.setCfg32(0x04, 0x06)
	rd, err := virtiotest.New(rngT, mem, virtiotest.NewInterrupts(0), devicestest.NewLine())
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.Init(virtiotest.Options{Features: virtio.FeatureVersion1}); err != nil {
		t.Fatal(err)
	}
	buf := mem.Alloc(64, 8)
	if _, err := rd.Queues[0].Add([]virtiotest.Buf{{Addr: buf, Len: 64, Write: true}}); err != nil {
		t.Fatal(err)
	}
	rd.Kick(0)
	waitUsed(t, rd.Queues[0], 1)
	if bytes.Equal(mem.Read(buf, 64), make([]byte, 64)) {
		t.Fatal("the rng returned zeros")
	}
}

// runVirtioGuest stages bufs on q for the virtio guest
// (testdata/guests/virtio.S) to publish, tells it where through its
// mailbox, and runs the machine until the guest powers off.
func runVirtioGuest(t *testing.T, m *Machine, q *virtiotest.Queue, bufs []virtiotest.Buf, mailbox uint64, con *console) {
	t.Helper()
	_, idxAddr, idx, err := q.Stage(bufs)
	if err != nil {
		t.Fatal(err)
	}
	box, err := m.Memory().Slice(mailbox, 8)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(box, uint32(idxAddr))
	binary.LittleEndian.PutUint16(box[4:], idx)
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	e, err := m.Run(ctx)
	if err != nil || e.Reason != exit.PowerOff {
		t.Fatalf("Run = %v (%s), %v; console %q", e.Reason, e.Detail, err, con.String())
	}
}

// waitUsed polls the used ring: with no vCPU there is nobody to take the
// interrupt.
func waitUsed(t *testing.T, q *virtiotest.Queue, n uint16) {
	t.Helper()
	deadline := time.Now().Add(guestTimeout)
	for q.UsedIdx() != n {
		if time.Now().After(deadline) {
			t.Fatalf("used index %d, want %d", q.UsedIdx(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestVirtioGuestInterrupts runs a tiny guest that rings an rng queue's
// doorbell (set up from Go beforehand) and waits for the interrupt: with
// MSI-X the doorbell is an ioeventfd (no exit reaches the VMM) and the
// interrupt an irqfd on an MSI route; with INTx it is IOAPIC pin 17,
// lowered when the guest reads the ISR.
func TestVirtioGuestInterrupts(t *testing.T) {
	for _, intx := range []bool{false, true} {
		t.Run(fmt.Sprintf("intx=%v", intx), func(t *testing.T) {
			requireKVM(t)
			// Build once to learn the BAR address the allocator gives
			// slot 1 (the first BAR of the 32-bit window).
			notify := uint64(PCIMMIO32Start) + virtio.NotifyOffset
			const mailbox = 32<<20 - 16 // just below the driver's memory
			defs := map[string]int{"MAILBOX": mailbox, "NOTIFY": int(notify), "VEC": 0x30, "INTX": 0, "PIN": 0, "ISR": 0}
			if intx {
				defs["INTX"], defs["PIN"], defs["VEC"] = 1, int(intxGSIs[1%4]), 0x31
				defs["ISR"] = int(uint64(PCIMMIO32Start) + 0x800)
			}
			con := newConsole()
			m := newVirtioMachine(t, Config{RNG: true, Console: con}, BootConfig{Kernel: guestKernel(t, "virtio", defs)})
			rngT := &busTransport{m: m, slot: 1}
			if got := rngT.bar(); got != PCIMMIO32Start {
				t.Fatalf("BAR 0 at %#x, the guest was built for %#x", got, uint64(PCIMMIO32Start))
			}
			rngT.setCfg32(0x04, 0x06)
			mem := driverMemory(t, m)
			drv, err := virtiotest.New(rngT, mem, virtiotest.NewInterrupts(0), devicestest.NewLine())
			if err != nil {
				t.Fatal(err)
			}
			if err := drv.Init(virtiotest.Options{Features: virtio.FeatureVersion1 | virtio.FeatureEventIdx, MSIX: !intx}); err != nil {
				t.Fatal(err)
			}
			if !intx && drv.Queues[0].Vector() != 0 {
				t.Fatalf("queue vector %d", drv.Queues[0].Vector())
			}
			buf := mem.Alloc(128, 8)
			q := drv.Queues[0]
			// The guest publishes the request: the device must not see it
			// before the guest can take interrupts, or a fast device's
			// MSI would reach a LAPIC that is still disabled and be lost.
			runVirtioGuest(t, m, q, []virtiotest.Buf{{Addr: buf, Len: 128, Write: true}}, mailbox, con)
			want := "ready\nirq 00000000\n"
			if intx {
				want = "ready\nirq 00000001\n" // the queue bit of the ISR
			}
			if got := con.String(); got != want {
				t.Fatalf("console %q, want %q", got, want)
			}
			if q.UsedIdx() != 1 || bytes.Equal(mem.Read(buf, 128), make([]byte, 128)) {
				t.Fatal("the request was not served")
			}
			if n := m.virtio.funcs[0].notifyExits.Load(); n != 0 {
				t.Errorf("%d notifications reached the VMM as exits; the ioeventfd should have caught them", n)
			}
		})
	}
}

func TestVirtioSetupErrors(t *testing.T) {
	requireKVM(t)
	mac := netdev.GenerateMAC("errors/0")
	sys := testKVM(t)
	raw := openDisk(t, rawImage(t, 4096), disk.Options{Format: disk.FormatRaw})
	ro := openDisk(t, rawImage(t, 4096), disk.Options{Format: disk.FormatRaw, ReadOnly: true})
	ro.ReadOnly = false
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no image", Config{Disks: []Disk{{Name: "/nonexistent/disk.qcow2"}}}, "machine: disks[0]: no open image"},
		{"bad serial", Config{Disks: []Disk{{Image: raw.Image, Name: raw.Name, Serial: strings.Repeat("x", 21)}}}, "longer than 20 bytes"},
		{"writable on a read-only image", Config{Disks: []Disk{ro}}, "machine: disks[0] (" + ro.Name + "): the disk is writable, but its image was opened read-only"},
		{"no tap", Config{NICs: []NIC{{MAC: mac}}}, "machine: nics[0]: no open tap"},
		{"no MAC", Config{NICs: []NIC{{}}}, "nics[0]: MAC 00:00:00:00:00:00 is not a unicast address"},
		{"too many devices", Config{RNG: true, Disks: make([]Disk, 31)}, "32 virtio devices; at most 31"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.KVM, cfg.CPUs, cfg.Memory = sys, 1, 64<<20
			before := testenv.OpenFDs(t)
			m, err := Build(cfg)
			if err == nil {
				m.Close()
				t.Fatal("Build succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if after := testenv.OpenFDs(t); after != before {
				t.Errorf("%d file descriptors leaked", after-before)
			}
		})
	}
}

// TestVirtioNICOnTap builds machines with a NIC on a tap (created
// inside a private network namespace): the NIC's MAC is in its
// configuration space, and the tap outlives each machine (a VMM's next
// boot uses it again) until its owner closes it.
func TestVirtioNICOnTap(t *testing.T) {
	requireKVM(t)
	ns := netnstest.New(t)
	var tap *netdev.Tap
	if err := ns.Do(func() error {
		var err error
		tap, err = netdev.CreateTap("pdtest0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	mac := netdev.GenerateMAC("tap-test/0")
	for boot := 0; boot < 2; boot++ {
		m := newVirtioMachine(t, Config{NICs: []NIC{{Tap: tap, MAC: mac}}}, BootConfig{})
		b := &busTransport{m: m, slot: 1}
		b.setCfg32(0x04, 0x06)
		drv, err := virtiotest.New(b, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := drv.ReadConfig(0, 6); !bytes.Equal(got, mac[:]) {
			t.Errorf("boot %d: config MAC % x, want %s", boot, got, mac)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		ns.IP(t, "link", "show", "pdtest0") // still there
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Try("ip", "link", "show", "pdtest0"); err == nil {
		t.Fatalf("the tap outlived its last descriptor:\n%s", out)
	}
}

func TestGSIRoutingTable(t *testing.T) {
	d := defaultRoutes()
	var ioapic, pic int
	for _, e := range d {
		switch {
		case e.Type != kvm.RoutingIRQChip:
			t.Fatalf("default route %+v is not an irqchip route", e)
		case e.Chip == kvm.IRQChipIOAPIC:
			ioapic++
			if e.Pin != e.GSI {
				t.Errorf("GSI %d routed to IOAPIC pin %d", e.GSI, e.Pin)
			}
		default:
			pic++
			if e.GSI >= 16 || e.Pin != e.GSI%8 || (e.GSI < 8) != (e.Chip == kvm.IRQChipPICMaster) {
				t.Errorf("bad PIC route %+v", e)
			}
		}
	}
	if ioapic != 24 || pic != 16 {
		t.Fatalf("%d IOAPIC and %d PIC routes, want 24 and 16", ioapic, pic)
	}
	r := &gsiRouter{msi: map[uint32]kvm.RoutingEntry{
		30: {GSI: 30, Type: kvm.RoutingMSI, AddressLo: 0xfee00000, Data: 0x41},
		24: {GSI: 24, Type: kvm.RoutingMSI, AddressLo: 0xfee00000, Data: 0x40},
	}}
	tab := r.table()
	if len(tab) != len(d)+2 || tab[len(d)].GSI != 24 || tab[len(d)+1].GSI != 30 {
		t.Fatalf("table tail %+v", tab[len(d):])
	}
}

// TestGSIRouterHold checks that a held router writes its table only at
// release: a route KVM refuses (a GSI above KVM_MAX_IRQ_ROUTES) is
// refused by setMSI at once, but while held, only by release; after
// release, routes are written at once again.
func TestGSIRouterHold(t *testing.T) {
	sys := testKVM(t)
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	r := &gsiRouter{vm: vm, next: firstMSIGSI}
	const refused = 5000
	msg := virtio.MSIMessage{Address: 0xfee00000, Data: 0x40}
	if err := r.setMSI(refused, msg); err == nil {
		t.Fatalf("setMSI of GSI %d: no error from KVM", refused)
	}
	if err := r.setMSI(firstMSIGSI, msg); err != nil {
		t.Fatal(err)
	}
	r.hold()
	if err := r.setMSI(refused, msg); err != nil {
		t.Fatalf("setMSI of GSI %d while held: %v; want the table written only at release", refused, err)
	}
	if err := r.release(); err == nil {
		t.Fatalf("release with GSI %d routed: no error from KVM", refused)
	}
	delete(r.msi, refused)
	r.hold()
	if err := r.release(); err != nil {
		t.Fatalf("release with nothing routed meanwhile: %v", err)
	}
	if err := r.setMSI(refused, msg); err == nil {
		t.Fatalf("setMSI of GSI %d after release: no error from KVM", refused)
	}
}
