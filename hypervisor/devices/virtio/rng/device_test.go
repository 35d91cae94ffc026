package rng_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

type rig struct {
	dev *rng.Device
	pci *virtio.PCI
	mem *virtiotest.Memory
	drv *virtiotest.Driver
}

func newRig(t *testing.T, src io.Reader) *rig {
	t.Helper()
	mem, err := virtiotest.NewMemory(0x100000, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	irq := virtiotest.NewInterrupts(2)
	r := &rig{dev: rng.New(src), mem: mem}
	r.pci, err = virtio.NewPCI(virtio.PCIConfig{Device: r.dev, Memory: mem, MSIX: irq, INTx: devicestest.NewLine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.pci.Close() })
	if r.drv, err = virtiotest.New(r.pci, mem, irq, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.Init(virtiotest.Options{Features: virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc, MSIX: true}); err != nil {
		t.Fatal(err)
	}
	return r
}

// request asks for the given buffer sizes in one chain and returns what
// the device wrote and the used length.
func (r *rig) request(t *testing.T, sizes ...uint32) ([]byte, uint32) {
	t.Helper()
	var bufs []virtiotest.Buf
	for _, s := range sizes {
		bufs = append(bufs, virtiotest.Buf{Addr: r.mem.Alloc(uint64(s), 8), Len: s, Write: true})
	}
	q := r.drv.Queues[0]
	if _, err := q.AddIndirect(bufs); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	u, err := q.WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, b := range bufs {
		out = append(out, r.mem.Read(b.Addr, uint64(b.Len))...)
	}
	return out, u.Len
}

func TestFillsFromSource(t *testing.T) {
	pattern := make([]byte, 1<<20)
	for i := range pattern {
		pattern[i] = byte(i*7 + i>>8)
	}
	r := newRig(t, bytes.NewReader(pattern))
	tests := []struct {
		sizes []uint32
		want  uint32
	}{
		{[]uint32{64}, 64},
		{[]uint32{1, 3, 100}, 104},
		{[]uint32{4096, 4096}, 8192},
		{[]uint32{rng.MaxRequest + 100}, rng.MaxRequest},
		{[]uint32{rng.MaxRequest - 10, 20, 30}, rng.MaxRequest},
	}
	off := 0
	for _, tc := range tests {
		got, n := r.request(t, tc.sizes...)
		if n != tc.want {
			t.Fatalf("sizes %v: used length %d, want %d", tc.sizes, n, tc.want)
		}
		if !bytes.Equal(got[:n], pattern[off:off+int(n)]) {
			t.Fatalf("sizes %v: bytes differ from the source", tc.sizes)
		}
		off += int(n)
	}
	if r.dev.Served() != uint64(off) {
		t.Fatalf("served %d, want %d", r.dev.Served(), off)
	}
}

func TestCryptoRand(t *testing.T) {
	r := newRig(t, nil)
	a, n := r.request(t, 256)
	b, m := r.request(t, 256)
	if n != 256 || m != 256 {
		t.Fatalf("used lengths %d, %d", n, m)
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 256)) {
		t.Fatal("crypto/rand gave repeated or zero bytes")
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("entropy pool on fire") }

func TestSourceErrorFailsDevice(t *testing.T) {
	r := newRig(t, failing{})
	q := r.drv.Queues[0]
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Alloc(16, 8), Len: 16, Write: true}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if s := r.drv.Status(); s&virtio.StatusDeviceNeedsReset == 0 {
		t.Fatalf("status %#x after an entropy source failure", s)
	}
}

func TestReadableOnlyChain(t *testing.T) {
	r := newRig(t, nil)
	q := r.drv.Queues[0]
	// A chain with no writable buffer gets nothing and is used with 0.
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Alloc(16, 8), Len: 16}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	u, err := q.WaitUsed()
	if err != nil || u.Len != 0 {
		t.Fatalf("used %+v, %v", u, err)
	}
}

func BenchmarkRequest4K(b *testing.B) {
	mem, err := virtiotest.NewMemory(0x100000, 8<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	irq := virtiotest.NewInterrupts(2)
	dev := rng.New(nil)
	p, err := virtio.NewPCI(virtio.PCIConfig{Device: dev, Memory: mem, MSIX: irq})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	drv, err := virtiotest.New(p, mem, irq, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := drv.Init(virtiotest.Options{Features: virtio.FeatureVersion1, MSIX: true}); err != nil {
		b.Fatal(err)
	}
	buf := mem.Alloc(4096, 8)
	q := drv.Queues[0]
	b.SetBytes(4096)
	for i := 0; i < b.N; i++ {
		if _, err := q.Add([]virtiotest.Buf{{Addr: buf, Len: 4096, Write: true}}); err != nil {
			b.Fatal(err)
		}
		drv.Kick(0)
		if _, err := q.WaitUsed(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStateGolden: virtio-rng's own state is empty; its golden file
// keeps it so (a field added to it changes the snapshot format).
func TestStateGolden(t *testing.T) {
	r := newRig(t, bytes.NewReader(nil))
	st := r.dev.Save()
	if err := r.dev.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatal(err)
	}
	if r.dev.Save() != st {
		t.Fatal("state after restore differs")
	}
}
