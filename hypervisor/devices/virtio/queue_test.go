package virtio_test

import (
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

const shortTimeout = 2 * time.Second

func timeoutC() <-chan time.Time { return time.After(virtiotest.DefaultTimeout) }

// waitUsedIndex waits, through the used ring only (no interrupt), until
// the device has used n chains.
func waitUsedIndex(t *testing.T, q *virtiotest.Queue, n uint16) {
	t.Helper()
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for q.UsedIdx() != n {
		if time.Now().After(deadline) {
			t.Fatalf("used index %d, want %d", q.UsedIdx(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMalformedChains lays out broken chains by hand: each must put the
// device into DEVICE_NEEDS_RESET with a configuration interrupt, without
// using the chain.
func TestMalformedChains(t *testing.T) {
	type layout func(r *rig, q *virtiotest.Queue)
	out := func(r *rig) uint64 { return r.mem.Alloc(16, 1) }
	tests := []struct {
		name     string
		indirect bool
		lay      layout
	}{
		{"loop", false, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, out(r), 4, virtiotest.FlagNext|virtiotest.FlagWrite, 1)
			q.PutDesc(q.Desc, 1, out(r), 4, virtiotest.FlagNext|virtiotest.FlagWrite, 0)
			q.Publish(0)
		}},
		{"self loop", false, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 3, out(r), 4, virtiotest.FlagNext, 3)
			q.Publish(3)
		}},
		{"next out of range", false, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, out(r), 4, virtiotest.FlagNext, 9)
			q.Publish(0)
		}},
		{"head out of range", false, func(r *rig, q *virtiotest.Queue) {
			q.Publish(200)
		}},
		{"buffer outside RAM", false, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, 0xffff_ffff_0000, 4, virtiotest.FlagWrite, 0)
			q.Publish(0)
		}},
		{"buffer wraps the address space", false, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, ^uint64(0)-1, 16, virtiotest.FlagWrite, 0)
			q.Publish(0)
		}},
		{"buffer crosses the end of RAM", false, func(r *rig, q *virtiotest.Queue) {
			end := r.mem.Base + r.mem.Size()
			q.PutDesc(q.Desc, 0, end-8, 16, virtiotest.FlagWrite, 0)
			q.Publish(0)
		}},
		{"readable after writable", false, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, out(r), 4, virtiotest.FlagNext|virtiotest.FlagWrite, 1)
			q.PutDesc(q.Desc, 1, out(r), 4, 0, 0)
			q.Publish(0)
		}},
		{"indirect without the feature", false, func(r *rig, q *virtiotest.Queue) {
			table := r.mem.Alloc(16, 16)
			q.PutDesc(table, 0, out(r), 4, virtiotest.FlagWrite, 0)
			q.PutDesc(q.Desc, 0, table, 16, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"indirect and next", true, func(r *rig, q *virtiotest.Queue) {
			table := r.mem.Alloc(16, 16)
			q.PutDesc(table, 0, out(r), 4, virtiotest.FlagWrite, 0)
			q.PutDesc(q.Desc, 0, table, 16, virtiotest.FlagIndirect|virtiotest.FlagNext, 1)
			q.PutDesc(q.Desc, 1, out(r), 4, virtiotest.FlagWrite, 0)
			q.Publish(0)
		}},
		{"nested indirect", true, func(r *rig, q *virtiotest.Queue) {
			inner := r.mem.Alloc(16, 16)
			q.PutDesc(inner, 0, out(r), 4, virtiotest.FlagWrite, 0)
			table := r.mem.Alloc(16, 16)
			q.PutDesc(table, 0, inner, 16, virtiotest.FlagIndirect, 0)
			q.PutDesc(q.Desc, 0, table, 16, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"indirect table of odd size", true, func(r *rig, q *virtiotest.Queue) {
			table := r.mem.Alloc(32, 16)
			q.PutDesc(q.Desc, 0, table, 24, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"empty indirect table", true, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, r.mem.Alloc(16, 16), 0, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"indirect table too large", true, func(r *rig, q *virtiotest.Queue) {
			n := virtio.MaxIndirect + 1
			table := r.mem.Alloc(16*uint64(n), 16)
			q.PutDesc(q.Desc, 0, table, uint32(16*n), virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"loop inside an indirect table", true, func(r *rig, q *virtiotest.Queue) {
			table := r.mem.Alloc(32, 16)
			q.PutDesc(table, 0, out(r), 4, virtiotest.FlagWrite|virtiotest.FlagNext, 1)
			q.PutDesc(table, 1, out(r), 4, virtiotest.FlagWrite|virtiotest.FlagNext, 0)
			q.PutDesc(q.Desc, 0, table, 32, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"indirect next out of range", true, func(r *rig, q *virtiotest.Queue) {
			table := r.mem.Alloc(16, 16)
			q.PutDesc(table, 0, out(r), 4, virtiotest.FlagWrite|virtiotest.FlagNext, 1)
			q.PutDesc(q.Desc, 0, table, 16, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"indirect table outside RAM", true, func(r *rig, q *virtiotest.Queue) {
			q.PutDesc(q.Desc, 0, 0x1000_0000_0000, 64, virtiotest.FlagIndirect, 0)
			q.Publish(0)
		}},
		{"available index runs ahead", false, func(r *rig, q *virtiotest.Queue) {
			q.SetAvailIdx(100)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			feats := virtio.FeatureVersion1
			if tc.indirect {
				feats |= virtio.FeatureIndirectDesc
			}
			r.init(t, virtiotest.Options{Features: feats, MSIX: true})
			q := r.drv.Queues[0]
			tc.lay(r, q)
			r.drv.Kick(0)
			if err := r.drv.WaitConfigInterrupt(); err != nil {
				t.Fatal(err)
			}
			if s := r.drv.Status(); s&virtio.StatusDeviceNeedsReset == 0 {
				t.Fatalf("status %#x lacks DEVICE_NEEDS_RESET", s)
			}
			if q.UsedIdx() != 0 {
				t.Fatalf("the malformed chain was used")
			}
			if r.logs.count() == 0 {
				t.Error("the problem was not logged")
			}
			// A reset recovers the device.
			if err := r.drv.Reset(); err != nil {
				t.Fatal(err)
			}
			if r.drv.Status() != 0 {
				t.Fatal("DEVICE_NEEDS_RESET survived the reset")
			}
		})
	}
}

// TestFailStopsEveryQueue: once a device has failed, none of its queues
// hands out another chain until the driver resets it, whichever queue
// the failure came from; the reset brings the device back.
func TestFailStopsEveryQueue(t *testing.T) {
	r := newRig(t, 8, 8)
	r.init(t, virtiotest.Options{MSIX: true})
	bad := r.drv.Queues[1]
	bad.PutDesc(bad.Desc, 0, r.mem.Alloc(4, 1), 4, virtiotest.FlagNext, 9) // next out of range
	bad.Publish(0)
	r.drv.Kick(1)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	for i, q := range r.pci.Queues() {
		if !q.Stopped() {
			t.Errorf("queue %d still serves chains after the device failed", i)
		}
	}
	if err := r.drv.Reset(); err != nil {
		t.Fatal(err)
	}
	r.mem.Reset()
	r.init(t, virtiotest.Options{MSIX: true})
	if got := r.echo(t, "ping"); got != "ping" {
		t.Fatalf("after the reset the device echoed %q", got)
	}
}

func TestDeviceFailure(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: true})
	q := r.drv.Queues[0]
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte{0xee}), Len: 1}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if s := r.drv.Status(); s&virtio.StatusDeviceNeedsReset == 0 {
		t.Fatalf("status %#x", s)
	}
}

func TestBadQueueConfiguration(t *testing.T) {
	tests := []struct {
		name  string
		setup func(d *virtiotest.Driver)
	}{
		{"size not a power of two", func(d *virtiotest.Driver) { d.SetCommon(0x18, 2, 6) }},
		{"size above the maximum", func(d *virtiotest.Driver) { d.SetCommon(0x18, 2, 16) }},
		{"descriptor table misaligned", func(d *virtiotest.Driver) { d.SetCommon(0x20, 8, 0x10008) }},
		{"used ring misaligned", func(d *virtiotest.Driver) { d.SetCommon(0x30, 8, 0x10002) }},
		{"available ring outside RAM", func(d *virtiotest.Driver) { d.SetCommon(0x28, 8, 0xffff_0000) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			d := r.drv
			d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
			d.SetCommon(0x0c, 4, 0)
			d.SetCommon(0x08, 4, 1)
			d.SetCommon(0x0c, 4, 1)
			d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
			d.SetCommon(0x16, 2, 0)
			d.SetCommon(0x20, 8, 0x10000)
			d.SetCommon(0x28, 8, 0x11000)
			d.SetCommon(0x30, 8, 0x12000)
			tc.setup(d)
			d.SetCommon(0x1c, 2, 1)
			d.SetStatus(d.Status() | virtio.StatusDriverOK)
			if s := d.Status(); s&virtio.StatusDeviceNeedsReset == 0 {
				t.Fatalf("status %#x lacks DEVICE_NEEDS_RESET", s)
			}
			if a, _ := r.dev.counts(); a != 0 {
				t.Fatal("device activated with a bad queue")
			}
		})
	}
}

// TestQueueLockedAfterEnable checks a queue's addresses cannot change
// once it is enabled.
func TestQueueLockedAfterEnable(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: true})
	q := r.drv.Queues[0]
	r.drv.SetCommon(0x16, 2, 0)
	r.drv.SetCommon(0x20, 8, 0x4000_0000)
	r.drv.SetCommon(0x18, 2, 2)
	if got := r.drv.Common(0x20, 8); got != q.Desc {
		t.Fatalf("descriptor table moved to %#x while enabled", got)
	}
	if got := r.drv.Common(0x18, 2); got != uint64(q.Size) {
		t.Fatalf("queue size changed to %d while enabled", got)
	}
}

func TestNotificationSuppression(t *testing.T) {
	add := func(t *testing.T, r *rig, q *virtiotest.Queue) {
		t.Helper()
		if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte("n")), Len: 1}, {Addr: r.mem.Alloc(1, 1), Len: 1, Write: true}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("no interrupt flag", func(t *testing.T) {
		r := newRig(t)
		r.init(t, virtiotest.Options{MSIX: true})
		q := r.drv.Queues[0]
		v := q.Vector()
		q.SetNoInterrupt(true)
		add(t, r, q)
		r.drv.Kick(0)
		waitUsedIndex(t, q, 1)
		if n := r.irq.Count(v); n != 0 {
			t.Fatalf("%d interrupts despite VIRTQ_AVAIL_F_NO_INTERRUPT", n)
		}
		q.SetNoInterrupt(false)
		add(t, r, q)
		r.drv.Kick(0)
		if err := r.drv.WaitInterrupt(0); err != nil {
			t.Fatal(err)
		}
		// The device is idle and waiting: it asks to be notified.
		if f := q.UsedFlags(); f != 0 {
			t.Errorf("used flags %#x while the device waits for notifications", f)
		}
	})
	t.Run("event index", func(t *testing.T) {
		r := newRig(t)
		r.init(t, virtiotest.Options{Features: virtio.FeatureVersion1 | virtio.FeatureEventIdx, MSIX: true})
		q := r.drv.Queues[0]
		v := q.Vector()
		// Ask for an interrupt only when the used index passes 2 (the
		// third chain).
		q.SetUsedEvent(2)
		for i := 0; i < 2; i++ {
			add(t, r, q)
			r.drv.Kick(0)
			waitUsedIndex(t, q, uint16(i+1))
		}
		if n := r.irq.Count(v); n != 0 {
			t.Fatalf("%d interrupts for 2 chains with used_event 2, want 0", n)
		}
		add(t, r, q)
		r.drv.Kick(0)
		waitUsedIndex(t, q, 3)
		if err := r.drv.WaitInterrupt(0); err != nil {
			t.Fatal(err)
		}
		if n := r.irq.Count(v); n != 1 {
			t.Fatalf("%d interrupts after passing used_event, want 1", n)
		}
		// The idle device asks for a notification at the next chain.
		if e := q.AvailEvent(); e != 3 {
			t.Errorf("avail_event %d, want 3", e)
		}
	})
}

func TestQueueStopIsPrompt(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: true})
	done := make(chan error, 1)
	go func() { done <- r.drv.Reset() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-timeoutC():
		t.Fatal("reset hung with an idle queue worker")
	}
	if _, rs := r.dev.counts(); rs != 1 {
		t.Fatalf("resets %d", rs)
	}
}
