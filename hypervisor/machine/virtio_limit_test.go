package machine

import (
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// TestVirtioDiskLimits drives a disk limited to 20 requests a second
// (a burst of one) through the machine's buses: six reads at once take
// at least the four waits of 50 ms the limiter imposes after its token
// and its first request of debt. Without the disk's Limits reaching its
// device they take about a millisecond. (A lower bound: a loaded host
// can only make it slower.)
func TestVirtioDiskLimits(t *testing.T) {
	d := openDisk(t, rawImage(t, 1<<20), disk.Options{})
	d.Limits = ratelimit.Limits{Ops: ratelimit.Rate{PerSecond: 20, Burst: 1}}
	m := newVirtioMachine(t, Config{Disks: []Disk{d}}, BootConfig{})
	mem := driverMemory(t, m)
	bus := &busTransport{m: m, slot: 1}
	bus.setCfg32(0x04, 0x06)
	drv, err := virtiotest.New(bus, mem, virtiotest.NewInterrupts(0), devicestest.NewLine())
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Init(virtiotest.Options{Features: drv.DeviceFeatures()}); err != nil {
		t.Fatal(err)
	}
	q := drv.Queues[0]
	const reads = 6
	for i := range reads {
		hdr := make([]byte, 16)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(i))
		bufs := []virtiotest.Buf{{Addr: mem.Put(hdr), Len: 16}, {Addr: mem.Alloc(512, 8), Len: 512, Write: true}, {Addr: mem.Alloc(1, 1), Len: 1, Write: true}}
		if _, err := q.Add(bufs); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	drv.Kick(0)
	waitUsed(t, q, reads)
	if took, least := time.Since(start), (reads-2)*50*time.Millisecond; took < least {
		t.Fatalf("%d reads on a disk limited to 20 a second took %v, want at least %v", reads, took, least)
	}
}

// TestVirtioGuestLimitedDisk runs a tiny guest (testdata/guests/virtio.S)
// that sends a request to a disk whose limiter is in debt, and halts
// until the request's interrupt: the request completes once the debt is
// repaid, and meanwhile the VMM process sleeps (a queue over its limit
// waits on a timer; it must not spin). Two flushes from Go put the
// limiter (2 requests a second, a burst of one) half a second into debt
// just before the guest runs.
func TestVirtioGuestLimitedDisk(t *testing.T) {
	requireKVM(t)
	notify := uint64(PCIMMIO32Start) + virtio.NotifyOffset
	const mailbox = 32<<20 - 16
	defs := map[string]int{"MAILBOX": mailbox, "NOTIFY": int(notify), "VEC": 0x30, "INTX": 0, "PIN": 0, "ISR": 0}
	d := openDisk(t, rawImage(t, 1<<20), disk.Options{})
	d.Limits = ratelimit.Limits{Ops: ratelimit.Rate{PerSecond: 2, Burst: 1}}
	con := newConsole()
	m := newVirtioMachine(t, Config{Disks: []Disk{d}, Console: con}, BootConfig{Kernel: guestKernel(t, "virtio", defs)})
	bus := &busTransport{m: m, slot: 1}
	if got := bus.bar(); got != PCIMMIO32Start {
		t.Fatalf("BAR 0 at %#x, the guest was built for %#x", got, uint64(PCIMMIO32Start))
	}
	bus.setCfg32(0x04, 0x06)
	mem := driverMemory(t, m)
	drv, err := virtiotest.New(bus, mem, virtiotest.NewInterrupts(0), devicestest.NewLine())
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Init(virtiotest.Options{Features: virtio.FeatureVersion1, MSIX: true}); err != nil {
		t.Fatal(err)
	}
	q := drv.Queues[0]
	flush := func() []virtiotest.Buf {
		hdr := make([]byte, 16)
		binary.LittleEndian.PutUint32(hdr, 4) // VIRTIO_BLK_T_FLUSH
		return []virtiotest.Buf{{Addr: mem.Put(hdr), Len: 16}, {Addr: mem.Alloc(1, 1), Len: 1, Write: true}}
	}
	for range 2 {
		if _, err := q.Add(flush()); err != nil {
			t.Fatal(err)
		}
	}
	drv.Kick(0)
	waitUsed(t, q, 2)
	cpu0, start := processCPU(t), time.Now()
	runVirtioGuest(t, m, q, flush(), mailbox, con)
	wall, cpu := time.Since(start), processCPU(t)-cpu0
	if got, want := con.String(), "ready\nirq 00000000\n"; got != want {
		t.Fatalf("console %q, want %q", got, want)
	}
	if n := q.UsedIdx(); n != 3 {
		t.Fatalf("used index %d, want 3", n)
	}
	// The debt was half a second when the second flush ran; setting up
	// the guest takes far less.
	if wall < 200*time.Millisecond {
		t.Fatalf("the guest's request completed %v after it ran, want the limiter's wait (up to 500ms)", wall)
	}
	if cpu > wall/2 {
		t.Fatalf("the VMM used %v of CPU time in the %v the guest's request waited for the limiter: it should sleep", cpu, wall)
	}
	t.Logf("waited %v, CPU time %v", wall.Round(time.Millisecond), cpu.Round(time.Millisecond))
}

// processCPU is the process's CPU time so far, user and system.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
