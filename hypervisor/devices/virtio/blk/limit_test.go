package blk_test

import (
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit/ratelimittest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// waitUsed waits, through the used ring, until queue 0 has used n
// chains.
func (g *rig) waitUsed(t *testing.T, n uint16) {
	t.Helper()
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for g.drv.Queues[0].UsedIdx() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the device used %d chains, want %d", g.drv.Queues[0].UsedIdx(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// limitedRig is a device on a raw image whose limiter runs on clock.
func limitedRig(t *testing.T, clock *ratelimittest.Clock, l ratelimit.Limits) *rig {
	t.Helper()
	return newRig(t, newImage(t, disk.FormatRaw), blk.Config{Limiter: ratelimit.NewWithClock(l, clock)}, 0)
}

// TestLimitBytes checks that a disk over its bandwidth takes no request
// until the limiter's debt is repaid, and that the wait is exactly the
// debt at the configured rate.
func TestLimitBytes(t *testing.T) {
	clock := ratelimittest.New()
	g := limitedRig(t, clock, ratelimit.Limits{Bytes: ratelimit.Rate{PerSecond: 64 << 10, Burst: 64 << 10}})
	// Five 32 KiB reads and a write, all at once: the first two empty
	// the bucket, the third runs into 32 KiB of debt (500 ms at 64
	// KiB/s), and the device waits before the fourth.
	for i := range 5 {
		g.add(t, 0, request{typ: tIn, sector: uint64(i) * 64, in: 32 << 10}, false)
	}
	g.add(t, 0, request{typ: tOut, sector: 0, out: pattern(16<<10, 1)}, false)
	g.drv.Kick(0)
	// 32 KiB of debt at 64 KiB/s; meanwhile the device has taken
	// exactly three requests.
	d := clock.ExpectWait(t, 500*time.Millisecond)
	g.waitUsed(t, 3)
	// Each read after that runs into debt again: another 32 KiB.
	for used := uint16(4); used <= 5; used++ {
		clock.Advance(d)
		d = clock.ExpectWait(t, 500*time.Millisecond)
		g.waitUsed(t, used)
	}
	// The write has waited for the fifth read's debt and runs.
	clock.Advance(d)
	clock.ExpectWait(t, 250*time.Millisecond)
	g.waitUsed(t, 6)
	if st := g.dev.Stats(); st.Reads != 5 || st.Writes != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v, want 5 reads and 1 write", st)
	}
}

// threeFlushes is a device limited to ops, given three flushes at once.
func threeFlushes(t *testing.T, ops ratelimit.Rate) (*rig, *ratelimittest.Clock) {
	t.Helper()
	clock := ratelimittest.New()
	g := limitedRig(t, clock, ratelimit.Limits{Ops: ops})
	for range 3 {
		g.add(t, 0, request{typ: tFlush}, false)
	}
	g.drv.Kick(0)
	return g, clock
}

// TestLimitOps checks the operations bucket: every request counts, with
// no data too.
func TestLimitOps(t *testing.T) {
	g, clock := threeFlushes(t, ratelimit.Rate{PerSecond: 4, Burst: 1})
	d := clock.ExpectWait(t, 250*time.Millisecond) // one op of debt at 4/s
	g.waitUsed(t, 2)
	clock.Advance(d)
	g.waitUsed(t, 3)
}

// TestLimitReset checks that a device waiting for its limiter stops at
// once when the driver resets it (and a snapshot's quiesce does the
// same), and that it works again when the driver starts it again.
func TestLimitReset(t *testing.T) {
	g, clock := threeFlushes(t, ratelimit.Rate{PerSecond: 1, Burst: 1})
	clock.ExpectWait(t, time.Second)
	done := make(chan error, 1)
	go func() { done <- g.drv.Reset() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(virtiotest.DefaultTimeout):
		t.Fatal("reset did not stop a device waiting for its limiter")
	}
	if n := clock.Pending(); n != 0 {
		t.Fatalf("%d limiter timers left after the reset, want 0", n)
	}
	if err := g.drv.Init(virtiotest.Options{Features: g.drv.DeviceFeatures(), MSIX: true}); err != nil {
		t.Fatal(err)
	}
	g.mem.Reset()
	clock.Advance(time.Hour)
	if st, _, _ := g.do(t, request{typ: tIn, in: 512}); st != sOK {
		t.Fatalf("read after the reset: status %d", st)
	}
}

// BenchmarkRead4KLimiter is BenchmarkRead4K with limits far above what
// the device reaches: the cost of a limiter that never makes it wait.
func BenchmarkRead4KLimiter(b *testing.B) {
	lim := ratelimit.New(ratelimit.Limits{Bytes: ratelimit.RateOver(1<<40, 0), Ops: ratelimit.RateOver(1<<30, 0)})
	benchIOConfig(b, tIn, 4096, blk.Config{Limiter: lim})
}
