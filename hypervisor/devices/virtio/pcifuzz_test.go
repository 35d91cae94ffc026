package virtio_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
	"github.com/paddock-vm/paddock/netdev"
)

// loopback is a virtio-net backend for the fuzz target: frames the guest
// sends come back to it, and the fuzzer injects more.
type loopback struct {
	frames chan []byte

	mu   sync.Mutex
	stop chan struct{}
}

func newLoopback() *loopback {
	return &loopback{frames: make(chan []byte, 16), stop: make(chan struct{})}
}

func (l *loopback) stopC() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stop
}

func (l *loopback) Read(bufs [][]byte, idle func()) (int, error) {
	var f []byte
	select {
	case f = <-l.frames:
	default:
		if idle != nil {
			idle()
		}
		select {
		case f = <-l.frames:
		case <-l.stopC():
			return 0, netdev.ErrInterrupted
		}
	}
	n := 0
	for _, b := range bufs {
		n += copy(b, f[n:])
	}
	return n, nil
}

// offer queues a frame unless the backend is full.
func (l *loopback) offer(f []byte) {
	select {
	case l.frames <- f:
	default:
	}
}

func (l *loopback) Write(bufs [][]byte) (int, error) {
	var f []byte
	for _, b := range bufs {
		f = append(f, b...)
	}
	l.offer(f)
	return len(f), nil
}

func (l *loopback) SetOffload(int) error { return nil }

func (l *loopback) Interrupt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
}

func (l *loopback) Rearm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
		l.stop = make(chan struct{})
	default:
	}
}

// fixedSource is an entropy source for virtio-rng that costs nothing.
type fixedSource struct{}

func (fixedSource) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xa5
	}
	return len(p), nil
}

// Guest memory of the fuzz target: the driver's allocations (rings,
// indirect tables) from the bottom, buffers anywhere in the top half.
const (
	pfMemBase  = 0x100000
	pfMemSize  = 4 << 20
	pfDataBase = pfMemBase + pfMemSize/2
	// pfAllocMax is where the driver stops allocating: an Init needs
	// less than 64 KiB.
	pfAllocMax = pfDataBase - 128<<10
	// pfMaxOps bounds the operations of one input.
	pfMaxOps = 96
	// pfDeadline is how long one input may take before the target
	// calls it a deadlock and panics with every goroutine's stack: less
	// than the 10 s after which Go's fuzzing engine gives up on a
	// worker without saying where it hung.
	pfDeadline = 8 * time.Second
)

// input reads the fuzzer's bytes as operations; past the end it reads
// zeros.
type input struct{ b []byte }

func (in *input) u8() byte {
	if len(in.b) == 0 {
		return 0
	}
	v := in.b[0]
	in.b = in.b[1:]
	return v
}

func (in *input) u16() uint16 { return uint16(in.u8()) | uint16(in.u8())<<8 }

func (in *input) u64() uint64 {
	var b [8]byte
	n := copy(b[:], in.b)
	in.b = in.b[n:]
	return binary.LittleEndian.Uint64(b[:])
}

func (in *input) bytes(n int) []byte {
	n = min(n, len(in.b))
	b := in.b[:n]
	in.b = in.b[n:]
	return b
}

// Fuzz operations (the first byte of each, modulo pfOps).
const (
	opConfigRead = iota
	opConfigWrite
	opBARRead
	opBARWrite
	opInit
	opPost
	opKick
	opReset
	opStatus
	opScribble
	opInject
	opDebug
	pfOps
)

// pfFunction is one device on the transport, with the test driver.
type pfFunction struct {
	pci  *virtio.PCI
	drv  *virtiotest.Driver
	nvec int
}

// barOffset picks a BAR 0 offset near a register block the op's byte
// selects.
func barOffset(in *input, nvec, nq int) uint64 {
	sel, sub := in.u8(), uint64(in.u8())
	switch sel % 7 {
	case 0:
		return sub % 0x40 // common configuration
	case 1:
		return 0x800 + sub%4 // ISR
	case 2:
		return 0x1000 + sub%0x40 // device configuration
	case 3:
		return virtio.NotifyOffset + virtio.NotifyMultiplier*(sub%uint64(nq+1)) // notifications
	case 4:
		return 0x3000 + sub%uint64(16*nvec+4) // MSI-X table
	case 5:
		return 0x3800 + sub%16 // pending bits
	}
	return uint64(in.u16()) % virtio.BARSize
}

// pfSizes are the access widths the transport sees.
var pfSizes = [...]int{1, 2, 4, 8}

// FuzzPCI drives virtio-blk (on a raw image), virtio-net (on a loopback
// backend) and virtio-rng through the virtio-pci transport with random
// configuration space and BAR accesses (common configuration, queue
// setup, MSI-X table and control, notifications, DRIVER_OK, resets),
// descriptor chains and scribbles over guest memory, while the devices
// work on their own goroutines. It must never panic or deadlock, a reset
// must always leave status 0, and closing the functions must stop every
// goroutine the devices started.
func FuzzPCI(f *testing.F) {
	// Seeds: initialise all three, post requests and kick; a net frame
	// both ways; register noise; resets and scribbles in the middle of
	// work.
	initAll := cat(seedInit(0, 0x11), seedInit(1, 0x31), seedInit(2, 0x21))
	blkHdr := make([]byte, 16)
	blkHdr[0] = 1 // VIRTIO_BLK_T_OUT, sector 0
	blkWrite := seedPost(0, 0, 0, blkHdr, [3]uint16{0, 16, 0}, [3]uint16{0x10, 512, 0}, [3]uint16{0x40, 1, 1})
	blkRead := seedPost(0, 1, 1, make([]byte, 16), [3]uint16{0x80, 16, 0}, [3]uint16{0x90, 4096, 1}, [3]uint16{0x200, 1, 1})
	netRx := seedPost(1, 0, 0, nil, [3]uint16{0x400, 2048, 1})
	netTx := seedPost(1, 1, 0, make([]byte, 16), [3]uint16{0x600, 12, 0}, [3]uint16{0x700, 60, 0})
	rngReq := seedPost(2, 0, 1, nil, [3]uint16{0x800, 64, 1})
	seeds := [][]byte{
		initAll,
		cat(initAll, blkWrite, blkRead, seedOp(opKick, 0, 0), seedOp(opKick, 0, 1)),
		cat(initAll, netRx, seedOp(opKick, 1, 0), seedOp(opInject, 1, 0x40, 7), netTx, seedOp(opKick, 1, 1)),
		cat(initAll, rngReq, seedOp(opKick, 2, 0), seedOp(opReset, 2), rngReq, seedOp(opKick, 2, 0)),
		cat(seedOp(opBARWrite, 0, 0, 0x14, 2), []byte{0x0f, 0, 0, 0, 0, 0, 0, 0},
			seedOp(opBARWrite, 1, 4, 0x10, 2), []byte{2, 0, 0, 0, 0, 0, 0, 0},
			seedOp(opConfigWrite, 0, 0x42, 1), []byte{0, 0xc0, 0, 0, 0, 0, 0, 0}),
		cat(initAll, blkWrite, seedOp(opScribble, 0, 0, 0x40, 3, 0xff, 0xff, 0xff, 0xff),
			seedOp(opKick, 0, 0), seedOp(opStatus, 0, 0x4f), seedOp(opReset, 0), seedOp(opDebug, 0)),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "fuzz.raw")
	if err := disk.CreateRaw(path, 1<<20); err != nil {
		f.Fatal(err)
	}
	img, err := disk.Open(path, disk.Options{Format: disk.FormatRaw})
	if err != nil {
		f.Fatal(err)
	}
	defer img.Close()
	mem, err := virtiotest.NewMemory(pfMemBase, pfMemSize)
	if err != nil {
		f.Fatal(err)
	}
	defer mem.Close()
	guest := mem.Bytes(pfMemBase, pfMemSize)

	f.Fuzz(func(t *testing.T, data []byte) {
		baseline := runtime.NumGoroutine()
		watchdog := time.AfterFunc(pfDeadline, func() {
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("FuzzPCI: an input ran for %v (a deadlock?)\n%s", pfDeadline, buf[:runtime.Stack(buf, true)]))
		})
		defer watchdog.Stop()
		clear(guest)
		mem.Reset()
		back := newLoopback()
		fns := pfFunctions(t, mem, img, back)
		defer func() {
			for _, fn := range fns {
				if err := fn.pci.Close(); err != nil {
					t.Error(err)
				}
			}
			checkGoroutines(t, baseline)
		}()
		in := &input{b: data}
		for ops := 0; len(in.b) > 0 && ops < pfMaxOps; ops++ {
			op, fn := in.u8()%pfOps, fns[int(in.u8())%len(fns)]
			pfStep(t, op, fn, in, mem, back)
		}
	})
}

// pfFunctions builds the three functions over mem.
func pfFunctions(t *testing.T, mem *virtiotest.Memory, img disk.Image, back *loopback) []*pfFunction {
	b, err := blk.New(blk.Config{Image: img, Queues: 2, QueueSize: 16, GuardFormat: true, Name: "fuzz"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := vnet.New(vnet.Config{Backend: back, MAC: netdev.GenerateMAC("fuzz")})
	if err != nil {
		t.Fatal(err)
	}
	var fns []*pfFunction
	for _, dev := range []virtio.Device{b, n, rng.New(fixedSource{})} {
		nvec := len(dev.QueueSizes()) + 1
		irq := virtiotest.NewInterrupts(nvec)
		p, err := virtio.NewPCI(virtio.PCIConfig{Device: dev, Memory: mem, MSIX: irq, INTx: devicestest.NewLine()})
		if err != nil {
			t.Fatal(err)
		}
		drv, err := virtiotest.New(p, mem, irq, nil)
		if err != nil {
			t.Fatal(err)
		}
		fns = append(fns, &pfFunction{pci: p, drv: drv, nvec: nvec})
	}
	return fns
}

// pfStep performs one operation on fn.
func pfStep(t *testing.T, op byte, fn *pfFunction, in *input, mem *virtiotest.Memory, back *loopback) {
	nq := len(fn.pci.Queues())
	switch op {
	case opConfigRead, opConfigWrite:
		off, size := int(in.u8()), pfSizes[in.u8()%3]
		buf := make([]byte, size)
		if op == opConfigRead {
			fn.pci.ConfigRead(off, buf)
			return
		}
		putLE(buf, in.u64())
		fn.pci.ConfigWrite(off, buf)
	case opBARRead, opBARWrite:
		off, size := barOffset(in, fn.nvec, nq), pfSizes[in.u8()%4]
		buf := make([]byte, size)
		if op == opBARRead {
			fn.pci.ReadBAR(0, off, buf)
			return
		}
		putLE(buf, in.u64())
		fn.pci.WriteBAR(0, off, buf)
	case opInit:
		mask, flags := in.u8(), in.u8()
		if mem.Mark() > pfAllocMax {
			return
		}
		feats := fn.drv.DeviceFeatures()
		if mask&1 == 0 {
			feats &^= virtio.FeatureIndirectDesc
		}
		if mask&2 == 0 {
			feats &^= virtio.FeatureEventIdx
		}
		if mask&4 == 0 {
			feats &^= 1 << 15 // virtio-net's mergeable buffers
		}
		sizes := []uint16{uint16(4 << (flags >> 4 & 3)), 0}
		// Init fails on what the fuzzer got wrong before it; the device
		// is then half set up, which is fine.
		_ = fn.drv.Init(virtiotest.Options{Features: feats, MSIX: flags&1 == 1, QueueSizes: sizes})
	case opPost:
		pfPost(fn, in, mem)
	case opKick:
		if qi := int(in.u8()) % max(len(fn.drv.Queues), 1); qi < len(fn.drv.Queues) {
			fn.drv.Kick(qi)
		}
	case opReset:
		fn.drv.SetStatus(0)
		if s := fn.drv.Status(); s != 0 {
			t.Fatalf("status %#x after a reset", s)
		}
		fn.drv.Queues = nil
	case opStatus:
		fn.drv.SetStatus(in.u8())
	case opScribble:
		off := uint64(in.u16()) << 5 % pfMemSize
		b := in.bytes(int(in.u8()%64) + 1)
		copy(mem.Bytes(pfMemBase+off, min(uint64(len(b)), pfMemSize-off)), b)
	case opInject:
		n, fill := int(in.u8())<<4+12, in.u8()
		frame := make([]byte, n)
		for i := 12; i < n; i++ { // after a zero virtio-net header
			frame[i] = fill + byte(i)
		}
		back.offer(frame)
	case opDebug:
		fn.pci.WriteDebug(io.Discard)
	}
}

// putLE stores the low len(b) bytes of v in b, little-endian.
func putLE(b []byte, v uint64) {
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}

// pfPost lays out a chain on one of fn's queues: up to four buffers in
// the data half of guest memory (device-writable or not, of any length
// up to 8 KiB), the first filled with 16 bytes of the input (a virtio-blk
// request header, say), directly or through an indirect table.
func pfPost(fn *pfFunction, in *input, mem *virtiotest.Memory) {
	qi, flags, count := int(in.u8()), in.u8(), int(in.u8()%4)+1
	first := in.bytes(16)
	var bufs []virtiotest.Buf
	for i := 0; i < count; i++ {
		addr := pfDataBase + uint64(in.u16())<<4%(pfMemSize/2-8192)
		n := uint32(in.u16()) % 8192
		bufs = append(bufs, virtiotest.Buf{Addr: addr, Len: n, Write: in.u8()&1 == 1})
		if i == 0 {
			copy(mem.Bytes(addr, uint64(n)), first)
		}
	}
	if len(fn.drv.Queues) == 0 {
		return
	}
	q := fn.drv.Queues[qi%len(fn.drv.Queues)]
	if flags&1 == 1 && mem.Mark() < pfAllocMax {
		_, _ = q.AddIndirect(bufs) // fails when the queue is full
		return
	}
	_, _ = q.Add(bufs)
}

// checkGoroutines waits until no more goroutines run than before the
// input (the devices' ones exit just after their Reset returned) and
// fails the input if some never stop.
func checkGoroutines(t *testing.T, baseline int) {
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the functions closed, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// Seed builders: each returns the bytes of one operation.

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func seedOp(op byte, fn byte, args ...byte) []byte { return append([]byte{op, fn}, args...) }

// seedInit initialises fn with every feature; flags as opInit reads
// them (bit 0: MSI-X, bits 4-5: queue size 4<<n).
func seedInit(fn, flags byte) []byte { return seedOp(opInit, fn, 0xff, flags) }

// seedPost posts a chain on queue qi of fn (indirect when flags is 1)
// of buffers {address index, length, writable}; first fills the first.
func seedPost(fn, qi, flags byte, first []byte, bufs ...[3]uint16) []byte {
	b := seedOp(opPost, fn, qi, flags, byte(len(bufs)-1))
	b = append(b, append(first, make([]byte, 16-len(first))...)...)
	for _, x := range bufs {
		b = binary.LittleEndian.AppendUint16(b, x[0])
		b = binary.LittleEndian.AppendUint16(b, x[1])
		b = append(b, byte(x[2]))
	}
	return b
}
