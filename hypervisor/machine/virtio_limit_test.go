package machine

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
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
