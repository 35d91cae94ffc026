package net_test

import (
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit/ratelimittest"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// TestLimitTransmit checks that frames the guest sends over its limit
// wait in the ring until the limiter's debt is repaid: bytes count the
// Ethernet frame, not the virtio-net header.
func TestLimitTransmit(t *testing.T) {
	clock := ratelimittest.New()
	p := newPipe()
	lim := ratelimit.NewWithClock(ratelimit.Limits{Bytes: ratelimit.Rate{PerSecond: 10000, Burst: 1000}}, clock)
	r := newRigConfig(t, vnet.Config{Backend: p, MAC: guestMAC, Name: "nics[0]", TxLimiter: lim}, 0)
	q := r.drv.Queues[1]
	for i := range 3 {
		h, f := hdr(0, 0, 0), ethFrame(1514, byte(i))
		if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put(h), Len: uint32(len(h))}, {Addr: r.mem.Put(f), Len: uint32(len(f))}}); err != nil {
			t.Fatal(err)
		}
	}
	r.drv.Kick(1)
	// The first frame empties the bucket and runs 514 bytes into debt:
	// 51.4 ms at 10000 bytes/s.
	clock.ExpectWait(t, 51400*time.Microsecond)
	<-p.out
	if len(p.out) != 0 {
		t.Fatalf("%d more frames reached the tap while the device waits", len(p.out))
	}
	clock.Advance(51400 * time.Microsecond)
	clock.ExpectWait(t, 151400*time.Microsecond)
	<-p.out
	clock.Advance(151400 * time.Microsecond)
	<-p.out
	if err := r.drv.Reset(); err != nil { // the device's goroutines are done
		t.Fatal(err)
	}
	if s := r.dev.Stats(); s.TxFrames != 3 || s.TxBytes != 3*1514 {
		t.Fatalf("stats %+v, want 3 frames of 1514 bytes sent", s)
	}
}

// TestLimitReceive checks that frames for the guest over its limit stay
// in the backend until the limiter allows them; each frame is one
// operation.
func TestLimitReceive(t *testing.T) {
	clock := ratelimittest.New()
	p := newPipe()
	lim := ratelimit.NewWithClock(ratelimit.Limits{Ops: ratelimit.Rate{PerSecond: 2, Burst: 1}}, clock)
	r := newRigConfig(t, vnet.Config{Backend: p, MAC: guestMAC, Name: "nics[0]", RxLimiter: lim}, 0)
	r.post(t, 4, 2048)
	p.inject(append(hdr(0, 0, 0), ethFrame(60, 1)...), append(hdr(0, 0, 0), ethFrame(60, 2)...), append(hdr(0, 0, 0), ethFrame(60, 3)...))
	// One frame from the bucket, one into debt; the third waits 500 ms.
	clock.ExpectWait(t, 500*time.Millisecond)
	q := r.drv.Queues[0]
	if n := q.UsedIdx(); n != 2 {
		t.Fatalf("the guest got %d frames while the device waits, want 2", n)
	}
	clock.Advance(500 * time.Millisecond)
	if _, ok := clock.WaitTimer(virtiotest.DefaultTimeout); !ok {
		t.Fatal("the device did not wait after the third frame")
	}
	if n := q.UsedIdx(); n != 3 {
		t.Fatalf("the guest got %d frames, want 3", n)
	}
	// A reset stops the waiting receiver.
	if err := r.drv.Reset(); err != nil {
		t.Fatal(err)
	}
	if n := clock.Pending(); n != 0 {
		t.Fatalf("%d limiter timers left after the reset, want 0", n)
	}
}
