package net_test

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
	"github.com/paddock-vm/paddock/netdev"
)

// pipe is an in-memory backend: frames the test injects are read by the
// device; frames the device writes are collected.
type pipe struct {
	in      chan [][]byte // bursts of frames, from inject
	pending [][]byte      // the rest of the burst Read is in; reader only
	out     chan []byte

	mu      sync.Mutex
	stop    chan struct{} // closed by Interrupt
	offload []int
}

func newPipe() *pipe {
	return &pipe{in: make(chan [][]byte, 64), out: make(chan []byte, 256), stop: make(chan struct{})}
}

func (p *pipe) stopC() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop
}

func scatterTo(bufs [][]byte, f []byte) int {
	n := 0
	for _, b := range bufs {
		n += copy(b, f[n:])
	}
	return n
}

// inject makes frames readable, all at once: the device finds the
// burst's later frames queued when it reads the first.
func (p *pipe) inject(frames ...[]byte) { p.in <- frames }

func (p *pipe) Read(bufs [][]byte, idle func()) (int, error) {
	if len(p.pending) == 0 {
		select {
		case p.pending = <-p.in:
		default:
			if idle != nil {
				idle()
			}
			select {
			case p.pending = <-p.in:
			case <-p.stopC():
				return 0, netdev.ErrInterrupted
			}
		}
	}
	f := p.pending[0]
	p.pending = p.pending[1:]
	return scatterTo(bufs, f), nil
}

func (p *pipe) Write(bufs [][]byte) (int, error) {
	var f []byte
	for _, b := range bufs {
		f = append(f, b...)
	}
	p.out <- f
	return len(f), nil
}

func (p *pipe) SetOffload(flags int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offload = append(p.offload, flags)
	return nil
}

func (p *pipe) Interrupt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
}

func (p *pipe) Rearm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		p.stop = make(chan struct{})
	default:
	}
}

func (p *pipe) lastOffload() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.offload) == 0 {
		return -1
	}
	return p.offload[len(p.offload)-1]
}

var guestMAC = netdev.GenerateMAC("net-test/0")

type rig struct {
	dev  *vnet.Device
	pci  *virtio.PCI
	mem  *virtiotest.Memory
	drv  *virtiotest.Driver
	back vnet.Backend
}

func newRig(t testing.TB, back vnet.Backend, features uint64) *rig {
	t.Helper()
	return newRigConfig(t, vnet.Config{Backend: back, MAC: guestMAC, Name: "nics[0]"}, features)
}

// newRigConfig is newRig with a device configured by cfg.
func newRigConfig(t testing.TB, cfg vnet.Config, features uint64) *rig {
	t.Helper()
	back := cfg.Backend
	mem, err := virtiotest.NewMemory(0x100000, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	r := &rig{mem: mem, back: back}
	if r.dev, err = vnet.New(cfg); err != nil {
		t.Fatal(err)
	}
	irq := virtiotest.NewInterrupts(3)
	if r.pci, err = virtio.NewPCI(virtio.PCIConfig{Device: r.dev, Memory: mem, MSIX: irq}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.pci.Close() })
	if r.drv, err = virtiotest.New(r.pci, mem, irq, nil); err != nil {
		t.Fatal(err)
	}
	if features == 0 {
		features = r.drv.DeviceFeatures()
	}
	if err := r.drv.Init(virtiotest.Options{Features: features, MSIX: true}); err != nil {
		t.Fatal(err)
	}
	return r
}

// hdr builds a virtio-net header.
func hdr(flags, gso byte, numBuffers uint16) []byte {
	h := make([]byte, vnet.HdrLen)
	h[0], h[1] = flags, gso
	binary.LittleEndian.PutUint16(h[10:], numBuffers)
	return h
}

func ethFrame(n int, tag byte) []byte {
	f := make([]byte, n)
	copy(f, guestMAC[:])
	copy(f[6:], []byte{2, 0, 0, 0, 0, 1})
	f[12], f[13] = 0x88, 0xb5
	for i := 14; i < n; i++ {
		f[i] = tag + byte(i)
	}
	return f
}

// send transmits one frame through the tx queue (header and payload in
// separate buffers, as Linux does without VIRTIO_F_ANY_LAYOUT games).
func (r *rig) send(t *testing.T, h, frame []byte) {
	t.Helper()
	q := r.drv.Queues[1]
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put(h), Len: uint32(len(h))}, {Addr: r.mem.Put(frame), Len: uint32(len(frame))}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(1)
	if u, err := q.WaitUsed(); err != nil || u.Len != 0 {
		t.Fatalf("tx used %+v, %v", u, err)
	}
}

// post makes n receive buffers of size bytes available.
func (r *rig) post(t *testing.T, n int, size uint32) []uint64 {
	t.Helper()
	q := r.drv.Queues[0]
	var addrs []uint64
	for i := 0; i < n; i++ {
		a := r.mem.Alloc(uint64(size), 8)
		if _, err := q.Add([]virtiotest.Buf{{Addr: a, Len: size, Write: true}}); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, a)
	}
	r.drv.Kick(0)
	return addrs
}

func TestConfig(t *testing.T) {
	r := newRig(t, newPipe(), 0)
	c := r.drv.ReadConfig(0, 10)
	if !bytes.Equal(c[:6], guestMAC[:]) {
		t.Errorf("config MAC % x, want %s", c[:6], guestMAC)
	}
	if st := binary.LittleEndian.Uint16(c[6:]); st != 1 {
		t.Errorf("status %#x, want link up", st)
	}
	if f := r.drv.DeviceFeatures(); f&vnet.Offered != vnet.Offered {
		t.Errorf("features %#x lack some of %#x", f, vnet.Offered)
	}
	if _, err := vnet.New(vnet.Config{Backend: newPipe(), MAC: netdev.MAC{1, 2, 3, 4, 5, 6}}); err == nil {
		t.Error("a multicast MAC was accepted")
	}
}

func TestTransmit(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, 0)
	for i, n := range []int{60, 1514, 9000, 65000} {
		h := hdr(1, 0, 0) // NEEDS_CSUM passes through to the tap
		binary.LittleEndian.PutUint16(h[6:], 34)
		binary.LittleEndian.PutUint16(h[8:], 16)
		f := ethFrame(n, byte(i))
		r.send(t, h, f)
		got := <-p.out
		if !bytes.Equal(got, append(h, f...)) {
			t.Fatalf("frame %d: backend got %d bytes, want header and %d-byte frame unchanged", i, len(got), n)
		}
	}
	// A chain shorter than the header is dropped, and still returned.
	q := r.drv.Queues[1]
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte{1, 2, 3}), Len: 3}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(1)
	if _, err := q.WaitUsed(); err != nil {
		t.Fatal(err)
	}
	if s := r.dev.Stats(); s.TxFrames != 4 || s.TxDropped != 1 {
		t.Fatalf("stats %+v", s)
	}
	select {
	case f := <-p.out:
		t.Fatalf("a dropped frame reached the backend: %x", f)
	default:
	}
}

func TestReceive(t *testing.T) {
	tests := []struct {
		name      string
		mergeable bool
		bufSize   uint32
		frameLen  int
		buffers   int // buffers the frame takes
	}{
		{"small frame", false, 1526, 60, 1},
		{"full frame", false, 1526, 1514, 1},
		{"big frame in a big buffer", false, 65562, 65000, 1},
		{"mergeable, one buffer", true, 1536, 1514, 1},
		{"mergeable, three buffers", true, 1024, 3000, 3},
		{"mergeable, header-only first buffer", true, 12, 100, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPipe()
			feats := vnet.Offered | virtio.FeatureVersion1 | virtio.FeatureEventIdx
			if !tc.mergeable {
				feats &^= vnet.FeatureMrgRxbuf
			}
			r := newRig(t, p, feats)
			size := tc.bufSize
			var addrs []uint64
			for i := 0; i < 4; i++ {
				addrs = append(addrs, r.post(t, 1, size)...)
				if size == 12 {
					size = 1024 // only the first buffer is header-sized
				}
			}
			f := ethFrame(tc.frameLen, 3)
			p.inject(append(hdr(2, 0, 0) /* DATA_VALID */, f...))
			var got []byte
			q := r.drv.Queues[0]
			for i := 0; i < tc.buffers; i++ {
				u, err := q.WaitUsed()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, r.mem.Read(addrs[i], uint64(u.Len))...)
			}
			if u, ok := q.PopUsed(); ok {
				t.Fatalf("frame used an extra buffer: %+v", u)
			}
			if nb := binary.LittleEndian.Uint16(got[10:]); int(nb) != tc.buffers {
				t.Errorf("num_buffers %d, want %d", nb, tc.buffers)
			}
			if got[0] != 2 {
				t.Errorf("header flags %#x: DATA_VALID lost with GUEST_CSUM negotiated", got[0])
			}
			if !bytes.Equal(got[vnet.HdrLen:], f) {
				t.Fatalf("received %d bytes, want the %d-byte frame", len(got)-vnet.HdrLen, len(f))
			}
		})
	}
}

func TestReceiveOffloadsAndDataValid(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, virtio.FeatureVersion1)
	if off := p.lastOffload(); off != 0 {
		t.Fatalf("offloads %#x without guest features, want 0", off)
	}
	a := r.post(t, 1, 2048)
	f := ethFrame(100, 1)
	p.inject(append(hdr(2, 0, 0), f...))
	u, err := r.drv.Queues[0].WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	got := r.mem.Read(a[0], uint64(u.Len))
	if got[0] != 0 {
		t.Errorf("DATA_VALID passed to a guest without GUEST_CSUM")
	}
	if nb := binary.LittleEndian.Uint16(got[10:]); nb != 1 {
		t.Errorf("num_buffers %d without MRG_RXBUF, want 1", nb)
	}

	p2 := newPipe()
	newRig(t, p2, vnet.Offered|virtio.FeatureVersion1)
	want := netdev.OffloadCsum | netdev.OffloadTSO4 | netdev.OffloadTSO6 | netdev.OffloadTSOECN
	if off := p2.lastOffload(); off != want {
		t.Fatalf("offloads %#x with every guest feature, want %#x", off, want)
	}
}

func TestReceiveWaitsForBuffers(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, 0)
	f := ethFrame(200, 9)
	p.inject(append(hdr(0, 0, 0), f...))
	// Nothing is posted: the frame waits in the device. Post now.
	a := r.post(t, 1, 2048)
	u, err := r.drv.Queues[0].WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.mem.Read(a[0], uint64(u.Len)); !bytes.Equal(got[vnet.HdrLen:], f) {
		t.Fatal("frame corrupted after waiting for buffers")
	}
}

func TestReceiveDropsOversizedFrame(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, vnet.Offered&^vnet.FeatureMrgRxbuf|virtio.FeatureVersion1)
	a := r.post(t, 1, 1526)
	p.inject(append(hdr(0, 0, 0), ethFrame(4000, 1)...))
	small := ethFrame(64, 2)
	p.inject(append(hdr(0, 0, 0), small...))
	u, err := r.drv.Queues[0].WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.mem.Read(a[0], uint64(u.Len)); !bytes.Equal(got[vnet.HdrLen:], small) {
		t.Fatal("the buffer did not receive the frame after the dropped one")
	}
	if s := r.dev.Stats(); s.RxDropped != 1 || s.RxFrames != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLinkStatus(t *testing.T) {
	r := newRig(t, newPipe(), 0)
	g := r.drv.Generation()
	r.dev.SetLink(false)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if st := binary.LittleEndian.Uint16(r.drv.ReadConfig(6, 2)); st != 0 {
		t.Fatalf("status %#x after link down", st)
	}
	if r.drv.Generation() == g {
		t.Error("configuration generation unchanged")
	}
	r.dev.SetLink(true)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	st := r.dev.Save()
	if !st.LinkUp || st.MAC != guestMAC {
		t.Fatalf("state %+v", st)
	}
	r.dev.SetLink(false)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatal(err)
	}
	if got := r.dev.Save(); got != st {
		t.Fatalf("state after restore %+v, want %+v", got, st)
	}
	if err := r.dev.Restore(vnet.State{MAC: netdev.GenerateMAC("other")}); err == nil {
		t.Fatal("restored another MAC")
	}
}

func TestResetWithBlockedReceive(t *testing.T) {
	r := newRig(t, newPipe(), 0)
	r.post(t, 2, 2048)
	done := make(chan error, 1)
	go func() { done <- r.drv.Reset() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(virtiotest.DefaultTimeout):
		t.Fatal("reset hung while the receiver waited for frames")
	}
	// The device works after re-initialisation.
	r.mem.Reset()
	p := r.back.(*pipe)
	if err := r.drv.Init(virtiotest.Options{Features: r.drv.DeviceFeatures(), MSIX: true}); err != nil {
		t.Fatal(err)
	}
	a := r.post(t, 1, 2048)
	f := ethFrame(99, 5)
	p.inject(append(hdr(0, 0, 0), f...))
	u, err := r.drv.Queues[0].WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.mem.Read(a[0], uint64(u.Len)); !bytes.Equal(got[vnet.HdrLen:], f) {
		t.Fatal("no frame after reset")
	}
}

// waitCount waits until vector v has fired at least n times and returns
// the count.
func waitCount(t *testing.T, irq *virtiotest.Interrupts, v, n int) int {
	t.Helper()
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for irq.Count(v) < n {
		if time.Now().After(deadline) {
			t.Fatalf("vector %d fired %d times, want %d", v, irq.Count(v), n)
		}
		time.Sleep(time.Millisecond)
	}
	return irq.Count(v)
}

// noEventIdx is the device's features without EVENT_IDX: every decision
// to notify then interrupts, so the tests see each one.
const noEventIdx = vnet.Offered | virtio.FeatureVersion1

// TestTransmitBurstInterrupts: a burst of frames made available with one
// kick costs one interrupt per 64 frames and one at its end, not one per
// frame.
func TestTransmitBurstInterrupts(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, noEventIdx)
	q := r.drv.Queues[1]
	const burst = 100
	h := hdr(0, 0, 0)
	// The whole burst becomes available at once: a device that found
	// the first frames while the rest were still being laid out would
	// rightly interrupt when it caught up.
	var idx uint16
	for i := range burst {
		f := ethFrame(60, byte(i))
		var err error
		if _, _, idx, err = q.Stage([]virtiotest.Buf{{Addr: r.mem.Put(h), Len: uint32(len(h))}, {Addr: r.mem.Put(f), Len: uint32(len(f))}}); err != nil {
			t.Fatal(err)
		}
	}
	q.SetAvailIdx(idx)
	r.drv.Kick(1)
	for i := range burst {
		if got := <-p.out; !bytes.Equal(got[vnet.HdrLen:], ethFrame(60, byte(i))) {
			t.Fatalf("frame %d out of order or corrupted", i)
		}
	}
	v := q.Vector()
	if n := waitCount(t, r.drv.IRQ, v, 2); n != 2 {
		t.Fatalf("%d interrupts for a burst of %d frames, want 2", n, burst)
	}
	// One more frame: the burst's interrupts are all in by the time it
	// is used, and it gets its own.
	r.send(t, h, ethFrame(60, 0))
	<-p.out
	if n := waitCount(t, r.drv.IRQ, v, 3); n != 3 {
		t.Fatalf("%d interrupts after one more frame, want 3", n)
	}
	if s := r.dev.Stats(); s.TxFrames != burst+1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReceiveBurstInterrupts: frames queued on the backend are delivered
// with one interrupt per 64 frames and one when the backend runs dry.
func TestReceiveBurstInterrupts(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, noEventIdx)
	q := r.drv.Queues[0]
	const burst = 100
	addrs := r.post(t, burst+1, 2048)
	var frames [][]byte
	for i := range burst {
		frames = append(frames, append(hdr(0, 0, 0), ethFrame(100, byte(i))...))
	}
	p.inject(frames...)
	for i := range burst {
		u, err := q.WaitUsed()
		if err != nil {
			t.Fatal(err)
		}
		if got := r.mem.Read(addrs[i], uint64(u.Len)); !bytes.Equal(got[vnet.HdrLen:], ethFrame(100, byte(i))) {
			t.Fatalf("frame %d out of order or corrupted", i)
		}
	}
	v := q.Vector()
	if n := waitCount(t, r.drv.IRQ, v, 2); n != 2 {
		t.Fatalf("%d interrupts for a burst of %d frames, want 2", n, burst)
	}
	p.inject(append(hdr(0, 0, 0), ethFrame(100, 0)...))
	if _, err := q.WaitUsed(); err != nil {
		t.Fatal(err)
	}
	if n := waitCount(t, r.drv.IRQ, v, 3); n != 3 {
		t.Fatalf("%d interrupts after one more frame, want 3", n)
	}
}

// TestTransmitFrameSizes: the largest frame goes out; a larger one, or
// one shorter than the header, is dropped and counted, and its chain
// still returned.
func TestTransmitFrameSizes(t *testing.T) {
	p := newPipe()
	r := newRig(t, p, 0)
	r.send(t, hdr(0, 0, 0), ethFrame(vnet.MaxFrame, 1))
	if got := <-p.out; len(got) != vnet.HdrLen+vnet.MaxFrame {
		t.Fatalf("backend got %d bytes, want %d", len(got), vnet.HdrLen+vnet.MaxFrame)
	}
	r.send(t, hdr(0, 0, 0), ethFrame(vnet.MaxFrame+1, 2))
	r.send(t, nil, []byte{1, 2, 3})
	select {
	case f := <-p.out:
		t.Fatalf("a dropped frame of %d bytes reached the backend", len(f))
	default:
	}
	if s := r.dev.Stats(); s.TxFrames != 1 || s.TxDropped != 2 {
		t.Fatalf("stats %+v", s)
	}
	if r.pci.NeedsReset() {
		t.Fatal("a dropped frame failed the device")
	}
}
