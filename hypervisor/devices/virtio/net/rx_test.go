package net_test

import (
	"bytes"

	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// recycle plays a driver that keeps making the receive chain head
// available again, in batches, without waiting to get it back: a
// misbehaving guest. Each batch waits until the device has taken the
// previous one (it published avail_event, EVENT_IDX). It stops once the
// device needs a reset or after batches batches, and returns how many
// chains it made available in all, first included.
func (r *rig) recycle(t *testing.T, first, head uint16, batches, batch int) int {
	t.Helper()
	q := r.drv.Queues[0]
	q.Publish(first)
	published := 1
	for b := 0; b < batches && !r.pci.NeedsReset(); b++ {
		for i := 0; i < batch; i++ {
			q.Publish(head)
		}
		published += batch
		r.drv.Kick(0)
		deadline := time.Now().Add(virtiotest.DefaultTimeout)
		for q.AvailEvent() != uint16(published) && !r.pci.NeedsReset() {
			if time.Now().After(deadline) {
				t.Fatalf("the device took %d of %d receive chains and stopped", q.AvailEvent(), published)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	return published
}

// rxChain lays out a receive chain of one buffer of n bytes (writable
// when write is set) without making it available, for recycle.
func (r *rig) rxChain(t *testing.T, n uint32, write bool) uint16 {
	t.Helper()
	q := r.drv.Queues[0]
	head, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Alloc(uint64(max(n, 1)), 8), Len: n, Write: write}})
	if err != nil {
		t.Fatal(err)
	}
	q.SetAvailIdx(0) // not available yet: recycle publishes it
	return head
}

// checkFailed asserts that the device failed the receive queue after
// taking at most limit chains, and returned none of them: the frame that
// found a bad chain is not delivered, and nothing the guest made
// available past the bad chain was taken into host memory.
func (r *rig) checkFailed(t *testing.T, published, limit int) {
	t.Helper()
	q := r.drv.Queues[0]
	if taken := int(r.pci.Save().Queues[0].LastAvail); taken > limit {
		t.Fatalf("the device took %d receive chains (of %d made available), want at most %d", taken, published, limit)
	}
	if !r.pci.NeedsReset() {
		t.Fatal("no DEVICE_NEEDS_RESET")
	}
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if u := q.UsedIdx(); u != 0 {
		t.Fatalf("used index %d: a frame was delivered into a bad chain", u)
	}
	if s := r.dev.Stats(); s.RxFrames != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReceiveZeroLengthChain: with mergeable receive buffers, a chain
// after the first that has no writable bytes fails the device (virtio
// 1.2 5.1.6.3.1: every buffer must hold at least the header; QEMU
// reports "receive queue contains no in buffers"). Taking it and looking
// for the next, as long as the guest offers more, grew host memory
// without bound and never told the guest.
func TestReceiveZeroLengthChain(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     uint32
		write bool
	}{
		{"zero-length writable buffer", 0, true},
		{"readable buffer only", 64, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPipe()
			r := newRig(t, p, 0)
			first := r.rxChain(t, 64, true)
			head := r.rxChain(t, tc.n, tc.write)
			p.inject(append(hdr(0, 0, 0), ethFrame(1000, 1)...))
			published := r.recycle(t, first, head, 8, 128)
			r.checkFailed(t, published, 2)
		})
	}
}

// TestReceiveMoreChainsThanTheQueue: a frame never takes more chains
// than the queue holds. A driver that makes one-byte chains available
// again before it got them back would otherwise feed a 64 KiB frame
// into tens of thousands of chains (and wrap num_buffers past 65535).
func TestReceiveMoreChainsThanTheQueue(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, 0)
	first := r.rxChain(t, 64, true)
	head := r.rxChain(t, 1, true)
	p.inject(append(hdr(0, 0, 0), ethFrame(60000, 1)...))
	published := r.recycle(t, first, head, 8, 128)
	r.checkFailed(t, published, int(r.drv.Queues[0].Size)+1)
}

// TestQuiesceMidFrame stops the device while a frame that needs two
// mergeable receive buffers has only one: the frame is dropped, and the
// chain it took goes back to the ring instead of staying with the
// device, so that after Resume (or a restore from the saved positions)
// the next frame arrives in it and the driver gets every buffer back.
func TestQuiesceMidFrame(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, vnet.Offered|virtio.FeatureVersion1|virtio.FeatureEventIdx)
	q := r.drv.Queues[0]
	first := r.post(t, 1, 256)
	p.inject(append(hdr(0, 0, 0), ethFrame(1000, 1)...))
	// The device takes the buffer, finds the frame needs more and asks
	// to be notified for the next chain (avail_event moves to 1).
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for q.AvailEvent() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the device never took the first receive buffer")
		}
		time.Sleep(100 * time.Microsecond)
	}
	r.pci.Quiesce()
	if taken := r.pci.Save().Queues[0].LastAvail; taken != 0 {
		t.Fatalf("after Quiesce the device holds %d receive chains, want 0", taken)
	}
	if err := r.pci.Resume(); err != nil {
		t.Fatal(err)
	}
	f := ethFrame(100, 2)
	p.inject(append(hdr(0, 0, 0), f...))
	u, err := q.WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.mem.Read(first[0], uint64(u.Len)); !bytes.Equal(got[vnet.HdrLen:], f) {
		t.Fatalf("the next frame did not arrive in the buffer the stopped one had taken")
	}
}
