package virtio_test

import (
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// TestQuiesceResume stops a running device for a snapshot and starts it
// again: while quiesced no goroutine of the device runs (a chain the
// driver adds is not taken), the saved ring positions are final, and
// Resume carries on with the chain that waited.
func TestQuiesceResume(t *testing.T) {
	r := newRig(t, 8)
	r.init(t, virtiotest.Options{MSIX: true})
	if got := r.echo(t, "before"); got != "before" {
		t.Fatalf("echo %q", got)
	}
	r.pci.Quiesce()
	if !r.pci.Quiesced() {
		t.Fatal("Quiesced() = false after Quiesce")
	}
	if a, rs := r.dev.counts(); a != 1 || rs != 1 {
		t.Fatalf("after Quiesce: %d activations, %d resets; want the device stopped once", a, rs)
	}
	r.pci.Quiesce() // twice is once
	if _, rs := r.dev.counts(); rs != 1 {
		t.Fatalf("a second Quiesce reset the device again (%d resets)", rs)
	}
	st := r.pci.Save()

	q := r.drv.Queues[0]
	msg := "waited"
	out := r.mem.Alloc(uint64(len(msg)), 1)
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte(msg)), Len: uint32(len(msg))}, {Addr: out, Len: uint32(len(msg)), Write: true}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	// No goroutine of the device exists: nothing can take the chain.
	if got := r.pci.Save(); got.Queues[0].LastAvail != st.Queues[0].LastAvail || q.UsedIdx() != st.Queues[0].UsedIdx {
		t.Fatalf("a quiesced device took a chain: positions %+v, used index %d; saved %+v", got.Queues[0], q.UsedIdx(), st.Queues[0])
	}
	if err := r.pci.Resume(); err != nil {
		t.Fatal(err)
	}
	if r.pci.Quiesced() {
		t.Fatal("Quiesced() = true after Resume")
	}
	u, err := q.WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.mem.Read(out, uint64(u.Len))); got != msg {
		t.Fatalf("chain added while quiesced echoed %q, want %q", got, msg)
	}
	if got := r.echo(t, "after"); got != "after" {
		t.Fatalf("echo after Resume %q", got)
	}
	if a, _ := r.dev.counts(); a != 2 {
		t.Fatalf("%d activations, want 2", a)
	}
	if err := r.pci.Resume(); err != nil { // not quiesced: nothing to do
		t.Fatal(err)
	}
	// A driver reset ends the quiesced state too.
	r.pci.Quiesce()
	if err := r.drv.Reset(); err != nil {
		t.Fatal(err)
	}
	if r.pci.Quiesced() {
		t.Fatal("a device reset left the function quiesced")
	}
}

// lazy is a device that uses every chain without notifying the driver:
// the interrupt is owed until someone calls Notify. It tells pushed
// about every chain it used.
type lazy struct {
	echo
	pushed chan struct{}
}

func (l *lazy) Activate(env virtio.Env) error {
	q := env.Queues[0]
	l.group.Go(q, func() {
		var c virtio.Chain
		for {
			ok, err := q.Next(&c, nil)
			if err != nil || !ok {
				return
			}
			q.Push(c.Head, 0)
			l.pushed <- struct{}{}
		}
	})
	return nil
}

// TestQuiesceDeliversOwedInterrupt checks that Quiesce interrupts the
// driver for chains the device used but had not told it about yet: the
// interrupt would otherwise be lost with the device's goroutine, and a
// restored guest would wait for it for ever.
func TestQuiesceDeliversOwedInterrupt(t *testing.T) {
	mem, err := virtiotest.NewMemory(0x10000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	dev := &lazy{echo: echo{sizes: []uint16{8}}, pushed: make(chan struct{}, 1)}
	irq := virtiotest.NewInterrupts(2)
	p, err := virtio.NewPCI(virtio.PCIConfig{Device: dev, Memory: mem, MSIX: irq})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.ConfigWrite(0x04, []byte{0x06, 0x00})
	drv, err := virtiotest.New(p, mem, irq, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Init(virtiotest.Options{Features: virtio.FeatureVersion1, MSIX: true}); err != nil {
		t.Fatal(err)
	}
	q := drv.Queues[0]
	if _, err := q.Add([]virtiotest.Buf{{Addr: mem.Alloc(8, 8), Len: 8, Write: true}}); err != nil {
		t.Fatal(err)
	}
	drv.Kick(0)
	<-dev.pushed
	v := q.Vector()
	if n := irq.Count(v); n != 0 {
		t.Fatalf("the lazy device interrupted %d times", n)
	}
	p.Quiesce()
	if n := irq.Count(v); n != 1 {
		t.Fatalf("after Quiesce the queue's vector fired %d times, want the 1 owed", n)
	}
}

// TestRestoreKeepsNoNotify restores a queue whose used ring flags say
// NO_NOTIFY, as a device stopped in the middle of a burst leaves them:
// the restored device must know it set the flag, and clear it when it
// next waits for the driver, or the driver would never notify again.
func TestRestoreKeepsNoNotify(t *testing.T) {
	r := newRig(t, 8)
	r.init(t, virtiotest.Options{MSIX: true}) // no EVENT_IDX: the flag is used
	if got := r.echo(t, "one"); got != "one" {
		t.Fatalf("echo %q", got)
	}
	r.pci.Quiesce()
	st := r.pci.Save()
	q := r.drv.Queues[0]
	r.mem.PutU16(q.Used, 1) // VRING_USED_F_NO_NOTIFY, in guest memory
	if err := r.pci.Close(); err != nil {
		t.Fatal(err)
	}
	p2, _, _ := restoreEcho(t, r.mem, st, 8)
	if err := p2.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for q.UsedFlags()&1 != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the restored device waits for the driver with NO_NOTIFY still set")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// restoreEcho builds a new echo function with queues of the given sizes
// over mem, as a restoring machine does, and restores st into it. It is
// left quiesced; the test closes it at its end.
func restoreEcho(t *testing.T, mem *virtiotest.Memory, st virtio.PCIState, sizes ...uint16) (*virtio.PCI, *echo, *virtiotest.Interrupts) {
	t.Helper()
	dev := &echo{sizes: sizes, feat: 1 << 3}
	irq := virtiotest.NewInterrupts(len(sizes) + 1)
	p, err := virtio.NewPCI(virtio.PCIConfig{Device: dev, Memory: mem, MSIX: irq, INTx: devicestest.NewLine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Restore(st); err != nil {
		t.Fatal(err)
	}
	return p, dev, irq
}
