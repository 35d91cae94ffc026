package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

func cfg32(f pci.Function, off int) uint32 {
	var b [4]byte
	f.ConfigRead(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func TestIdentity(t *testing.T) {
	r := newRig(t)
	if got := cfg32(r.pci, 0); got != 0x1043_1af4 {
		t.Errorf("vendor/device = %#x, want 0x10431af4 (0x1040 + console)", got)
	}
	if rev := cfg32(r.pci, 8); rev&0xff != 1 {
		t.Errorf("revision %d, want 1 (non-transitional)", rev&0xff)
	}
	if sub := cfg32(r.pci, 0x2c); sub>>16 < 0x40 {
		t.Errorf("subsystem ID %#x, want >= 0x40", sub>>16)
	}
	if pin := cfg32(r.pci, 0x3c) >> 8 & 0xff; pin != 1 {
		t.Errorf("interrupt pin %d, want 1 (INTA)", pin)
	}
	// BAR 0 is a 32-bit memory BAR of BARSize bytes.
	r.pci.ConfigWrite(0x10, []byte{0xff, 0xff, 0xff, 0xff})
	if got := cfg32(r.pci, 0x10); got != ^uint32(virtio.BARSize-1) {
		t.Errorf("BAR 0 sizing reads %#x", got)
	}
	if n := r.drv.NumQueues(); n != 1 {
		t.Errorf("num_queues %d, want 1", n)
	}
	want := uint64(1<<3) | virtio.TransportFeatures
	if got := r.drv.DeviceFeatures(); got != want {
		t.Errorf("device features %#x, want %#x", got, want)
	}
}

func TestFeatureNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		ok       bool
	}{
		{"version 1 only", virtio.FeatureVersion1, true},
		{"everything offered", virtio.TransportFeatures | 1<<3, true},
		{"legacy driver", 1 << 3, false},
		{"feature not offered", virtio.FeatureVersion1 | 1<<4, false},
		{"packed ring not offered", virtio.FeatureVersion1 | virtio.FeatureRingPacked, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			err := r.drv.Init(virtiotest.Options{Features: tc.features, MSIX: true})
			if tc.ok != (err == nil) {
				t.Fatalf("Init: %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				if !errors.Is(err, virtiotest.ErrFeaturesRejected) {
					t.Fatalf("Init: %v, want features rejected", err)
				}
				if a, _ := r.dev.counts(); a != 0 {
					t.Fatal("device activated after the features were rejected")
				}
				return
			}
			if a, _ := r.dev.counts(); a != 1 {
				t.Fatalf("device activated %d times, want 1", a)
			}
			// Driver features freeze at FEATURES_OK.
			r.drv.SetCommon(0x08, 4, 0)
			r.drv.SetCommon(0x0c, 4, 0)
			if got := r.drv.Common(0x0c, 4); got != tc.features&0xffffffff {
				t.Errorf("driver features changed after FEATURES_OK: %#x", got)
			}
		})
	}
}

func TestStatusRules(t *testing.T) {
	r := newRig(t)
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	// DRIVER_OK without FEATURES_OK is refused.
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK)
	if s := r.drv.Status(); s&virtio.StatusDriverOK != 0 {
		t.Errorf("status %#x: DRIVER_OK accepted without FEATURES_OK", s)
	}
	// Bits are cleared only by a reset.
	r.drv.SetStatus(virtio.StatusAcknowledge)
	if s := r.drv.Status(); s != virtio.StatusAcknowledge|virtio.StatusDriver {
		t.Errorf("status %#x after clearing DRIVER without a reset", s)
	}
	if err := r.drv.Reset(); err != nil {
		t.Fatal(err)
	}
}

func TestEchoDirectAndIndirect(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		for _, msix := range []bool{false, true} {
			t.Run(fmt.Sprintf("indirect=%v,msix=%v", indirect, msix), func(t *testing.T) {
				r := newRig(t)
				feats := virtio.FeatureVersion1
				if indirect {
					feats |= virtio.FeatureIndirectDesc
				}
				r.init(t, virtiotest.Options{Features: feats, MSIX: msix})
				q := r.drv.Queues[0]
				// More requests than the queue has slots: the rings wrap.
				for i := 0; i < 3*int(q.Size); i++ {
					msg := []byte(fmt.Sprintf("request %d with some bytes", i))
					in := r.mem.Put(msg[:7])
					in2 := r.mem.Put(msg[7:])
					out := r.mem.Alloc(10, 1)
					out2 := r.mem.Alloc(64, 1)
					bufs := []virtiotest.Buf{{Addr: in, Len: 7}, {Addr: in2, Len: uint32(len(msg) - 7)}, {Addr: out, Len: 10, Write: true}, {Addr: out2, Len: 64, Write: true}}
					var head uint16
					var err error
					if indirect {
						head, err = q.AddIndirect(bufs)
					} else {
						head, err = q.Add(bufs)
					}
					if err != nil {
						t.Fatal(err)
					}
					r.drv.Kick(0)
					u, err := q.WaitUsed()
					if err != nil {
						t.Fatal(err)
					}
					if u.ID != head || int(u.Len) != len(msg) {
						t.Fatalf("used %+v, want id %d len %d", u, head, len(msg))
					}
					got := append(r.mem.Read(out, 10), r.mem.Read(out2, uint64(len(msg)-10))...)
					if !bytes.Equal(got, msg) {
						t.Fatalf("echoed %q, want %q", got, msg)
					}
				}
				if r.pci.NeedsReset() {
					t.Fatal("device needs a reset after valid requests")
				}
			})
		}
	}
}

func TestReset(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: true})
	r.echo(t, "ping")
	if err := r.drv.Reset(); err != nil {
		t.Fatal(err)
	}
	if a, rs := r.dev.counts(); a != 1 || rs != 1 {
		t.Fatalf("activations %d, resets %d; want 1 and 1", a, rs)
	}
	// Registers are back to their reset values.
	r.drv.SetCommon(0x16, 2, 0)
	if v := r.drv.Common(0x1c, 2); v != 0 {
		t.Errorf("queue_enable %d after reset", v)
	}
	if v := r.drv.Common(0x1a, 2); v != virtio.NoVector {
		t.Errorf("queue_msix_vector %#x after reset", v)
	}
	if v := r.drv.Common(0x18, 2); v != 8 {
		t.Errorf("queue_size %d after reset, want the maximum 8", v)
	}
	// The device works again after re-initialisation, from index 0.
	r.mem.Reset()
	r.init(t, virtiotest.Options{MSIX: true})
	if got := r.echo(t, "pong"); got != "pong" {
		t.Fatalf("after reset echoed %q", got)
	}
}

func TestINTx(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: false})
	q := r.drv.Queues[0]
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte("x")), Len: 1}, {Addr: r.mem.Alloc(1, 1), Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	select {
	case <-r.intx.C():
	case <-timeoutC():
		t.Fatal("INTx never raised")
	}
	if !r.intx.High() {
		t.Fatal("INTx not held high")
	}
	if st := cfg32(r.pci, 4) >> 16; st&0x08 == 0 {
		t.Errorf("PCI status %#x lacks the interrupt status bit", st)
	}
	if isr := r.drv.ReadISR(); isr != 1 {
		t.Errorf("ISR %#x, want 1 (queue)", isr)
	}
	if r.intx.High() {
		t.Error("INTx still high after the ISR was read")
	}
	if isr := r.drv.ReadISR(); isr != 0 {
		t.Errorf("ISR %#x on second read, want 0", isr)
	}
	if st := cfg32(r.pci, 4) >> 16; st&0x08 != 0 {
		t.Errorf("PCI status %#x keeps the interrupt status bit", st)
	}
	// INTx disable in the command register keeps the line low.
	r.pci.ConfigWrite(0x04, []byte{0x06, 0x04})
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte("y")), Len: 1}, {Addr: r.mem.Alloc(1, 1), Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	raises := r.intx.Edges()
	r.drv.Kick(0)
	r.drv.Timeout = shortTimeout
	waitUsedIndex(t, q, 2)
	if r.intx.High() || r.intx.Edges() != raises {
		t.Error("INTx raised while disabled in the command register")
	}
	// Enabling INTx again raises it for the pending ISR bit.
	r.pci.ConfigWrite(0x04, []byte{0x06, 0x00})
	if !r.intx.High() {
		t.Error("INTx not raised when re-enabled with the ISR set")
	}
}

func TestMSIXMaskingAndPBA(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: true})
	q := r.drv.Queues[0]
	v := q.Vector()
	if msg, ok := r.irq.Routed(v); !ok || msg.Address != virtiotest.MSIAddress || msg.Data != uint32(v)+0x30 {
		t.Fatalf("vector %d routed %+v (%v)", v, msg, ok)
	}
	r.drv.MaskVector(v, true)
	add := func() {
		if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte("z")), Len: 1}, {Addr: r.mem.Alloc(1, 1), Len: 1, Write: true}}); err != nil {
			t.Fatal(err)
		}
		r.drv.Kick(0)
	}
	before := r.irq.Count(v)
	add()
	waitUsedIndex(t, q, 1)
	if r.irq.Count(v) != before {
		t.Fatal("a masked vector fired")
	}
	pba := make([]byte, 8)
	r.pci.ReadBAR(0, 0x3800, pba)
	if pba[0]&(1<<v) == 0 {
		t.Fatalf("PBA %x lacks vector %d", pba, v)
	}
	r.drv.MaskVector(v, false)
	if r.irq.Count(v) != before+1 {
		t.Fatalf("unmasking did not deliver the pending vector (count %d)", r.irq.Count(v))
	}
	r.pci.ReadBAR(0, 0x3800, pba)
	if pba[0] != 0 {
		t.Fatalf("PBA %x after delivery", pba)
	}
	// The function mask works the same way.
	r.pci.ConfigWrite(r.msixCap(t)+3, []byte{0xc0})
	add()
	waitUsedIndex(t, q, 2)
	if r.irq.Count(v) != before+1 {
		t.Fatal("vector fired under the function mask")
	}
	r.pci.ConfigWrite(r.msixCap(t)+3, []byte{0x80})
	if r.irq.Count(v) != before+2 {
		t.Fatal("clearing the function mask did not deliver the pending vector")
	}
	// An out-of-range vector reads back as NO_VECTOR.
	r.drv.SetCommon(0x10, 2, 40)
	if got := r.drv.Common(0x10, 2); got != virtio.NoVector {
		t.Errorf("config vector 40 of 2 reads back %#x", got)
	}
}

func (r *rig) msixCap(t *testing.T) int {
	t.Helper()
	for ptr := int(cfg32(r.pci, 0x34) & 0xff); ptr != 0; ptr = int(cfg32(r.pci, ptr) >> 8 & 0xff) {
		if cfg32(r.pci, ptr)&0xff == 0x11 {
			return ptr
		}
	}
	t.Fatal("no MSI-X capability")
	return 0
}

func TestPCIConfigAccessCapability(t *testing.T) {
	r := newRig(t, 8, 16, 32)
	var capOff int
	for ptr := int(cfg32(r.pci, 0x34) & 0xff); ptr != 0; ptr = int(cfg32(r.pci, ptr) >> 8 & 0xff) {
		if w := cfg32(r.pci, ptr); w&0xff == 0x09 && w>>24 == 5 {
			capOff = ptr
		}
	}
	if capOff == 0 {
		t.Fatal("no VIRTIO_PCI_CAP_PCI_CFG")
	}
	// Read num_queues (common config 0x12, 2 bytes) through the window.
	put := func(off int, v uint32, n int) {
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, v)
		r.pci.ConfigWrite(off, b[:n])
	}
	put(capOff+4, 0, 1)
	put(capOff+8, 0x12, 4)
	put(capOff+12, 2, 4)
	if got := cfg32(r.pci, capOff+16) & 0xffff; got != 3 {
		t.Fatalf("num_queues through the window = %d, want 3", got)
	}
	// Write device_status through the window.
	put(capOff+8, 0x14, 4)
	put(capOff+12, 1, 4)
	put(capOff+16, virtio.StatusAcknowledge, 1)
	if s := r.drv.Status(); s != virtio.StatusAcknowledge {
		t.Fatalf("status %#x after a write through the window", s)
	}
}

func TestConfigGeneration(t *testing.T) {
	r := newRig(t)
	r.init(t, virtiotest.Options{MSIX: true})
	g := r.drv.Generation()
	v := r.drv.ConfigVector()
	before := r.irq.Count(v)
	r.dev.env.ConfigChanged()
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if r.irq.Count(v) != before+1 {
		t.Errorf("config vector fired %d times", r.irq.Count(v)-before)
	}
	if got := r.drv.Generation(); got != g+1 {
		t.Errorf("generation %d, want %d", got, g+1)
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t, 8, 8)
	r.init(t, virtiotest.Options{Features: virtio.FeatureVersion1 | virtio.FeatureEventIdx, MSIX: true})
	q := r.drv.Queues[1]
	roundTrip := func(msg string) {
		t.Helper()
		out := r.mem.Alloc(uint64(len(msg)), 1)
		if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte(msg)), Len: uint32(len(msg))}, {Addr: out, Len: uint32(len(msg)), Write: true}}); err != nil {
			t.Fatal(err)
		}
		r.drv.Kick(1)
		if _, err := q.WaitUsed(); err != nil {
			t.Fatal(err)
		}
		if got := string(r.mem.Read(out, uint64(len(msg)))); got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	for i := 0; i < 5; i++ {
		roundTrip(fmt.Sprintf("before %d", i))
	}
	r.drv.MaskVector(0, true)
	r.pci.Quiesce()
	st := r.pci.Save()
	if err := r.pci.Close(); err != nil {
		t.Fatal(err)
	}

	// A new function on the same memory continues where the old one was.
	p2, dev, irq := restoreEcho(t, r.mem, devicestest.Golden(t, "pci-state", st), 8, 8)
	if _, ok := irq.Routed(0); ok {
		t.Error("masked vector 0 was routed on restore")
	}
	if _, ok := irq.Routed(1); !ok {
		t.Error("vector 1 was not routed on restore")
	}
	// Restore leaves the device quiesced: nothing runs before Resume.
	if a, _ := dev.counts(); a != 0 || !p2.Quiesced() {
		t.Fatalf("restored device activated %d times (quiesced %v), want 0 before Resume", a, p2.Quiesced())
	}
	if got := p2.Save(); fmt.Sprint(got) != fmt.Sprint(st) {
		t.Fatalf("state after restore differs:\n got %+v\nwant %+v", got, st)
	}
	if err := p2.Resume(); err != nil {
		t.Fatal(err)
	}
	if a, _ := dev.counts(); a != 1 {
		t.Fatalf("restored device activated %d times after Resume", a)
	}
	r.pci, r.irq, r.dev = p2, irq, dev
	r.drv.T, r.drv.IRQ = p2, irq
	for i := 0; i < 10; i++ {
		roundTrip(fmt.Sprintf("after %d", i))
	}
	if err := p2.Restore(st); err == nil {
		t.Error("Restore into a live device succeeded")
	}
	// Incompatible states are refused.
	bad := st
	bad.Queues = bad.Queues[:1]
	fresh, err := virtio.NewPCI(virtio.PCIConfig{Device: &echo{sizes: []uint16{8, 8}}, Memory: r.mem, MSIX: virtiotest.NewInterrupts(3)})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.Restore(bad); err == nil {
		t.Error("Restore with a missing queue succeeded")
	}
}
