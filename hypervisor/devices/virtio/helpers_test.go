package virtio_test

import (
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// echo is a test device: every chain's readable bytes are copied into its
// writable buffers, and the chain is used with the number of bytes copied.
// A first readable byte of 0xEE makes it fail the device instead.
type echo struct {
	sizes []uint16
	feat  uint64

	mu          sync.Mutex
	group       virtio.Group
	activations int
	resets      int
	env         virtio.Env
	config      [8]byte
}

func (e *echo) Type() virtio.DeviceID { return virtio.IDConsole }
func (e *echo) Features() uint64      { return e.feat }
func (e *echo) QueueSizes() []uint16  { return e.sizes }

func (e *echo) ReadConfig(off int, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range data {
		if o := off + i; o >= 0 && o < len(e.config) {
			data[i] = e.config[o]
		} else {
			data[i] = 0
		}
	}
}

func (e *echo) WriteConfig(off int, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, b := range data {
		if o := off + i; o >= 0 && o < len(e.config) {
			e.config[o] = b
		}
	}
}

func (e *echo) Activate(env virtio.Env) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.activations++
	e.env = env
	for _, q := range env.Queues {
		if q == nil {
			continue
		}
		e.group.Go(q, func() { e.serve(q, env) })
	}
	return nil
}

func (e *echo) serve(q *virtio.Queue, env virtio.Env) {
	var c virtio.Chain
	for {
		ok, err := q.Next(&c, q.Notify)
		if err != nil {
			env.Fail(err)
			return
		}
		if !ok {
			return
		}
		buf := make([]byte, c.ReadLen())
		c.ReadAt(buf, 0)
		if len(buf) > 0 && buf[0] == 0xee {
			env.Fail(errTest)
			return
		}
		n := c.WriteAt(buf, 0)
		q.Push(c.Head, uint32(n))
	}
}

func (e *echo) Reset() {
	e.group.Stop()
	e.mu.Lock()
	e.resets++
	e.mu.Unlock()
}

func (e *echo) counts() (activations, resets int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.activations, e.resets
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("the test asked the device to fail")

// rig is an echo device on a virtio-pci function with a driver.
type rig struct {
	dev  *echo
	pci  *virtio.PCI
	mem  *virtiotest.Memory
	irq  *virtiotest.Interrupts
	intx *devicestest.Line
	drv  *virtiotest.Driver
	logs *logRecorder
}

type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, format)
}

func (l *logRecorder) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func newRig(t *testing.T, sizes ...uint16) *rig {
	t.Helper()
	if len(sizes) == 0 {
		sizes = []uint16{8}
	}
	mem, err := virtiotest.NewMemory(0x10000, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	r := &rig{dev: &echo{sizes: sizes, feat: 1 << 3}, mem: mem, irq: virtiotest.NewInterrupts(len(sizes) + 1), intx: devicestest.NewLine(), logs: &logRecorder{}}
	r.pci, err = virtio.NewPCI(virtio.PCIConfig{Device: r.dev, Memory: mem, MSIX: r.irq, INTx: r.intx, Logf: r.logs.logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.pci.Close(); err != nil {
			t.Error(err)
		}
	})
	// Let the function decode memory, as firmware and the guest would.
	r.pci.ConfigWrite(0x04, []byte{0x06, 0x00})
	r.drv, err = virtiotest.New(r.pci, mem, r.irq, r.intx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) init(t *testing.T, o virtiotest.Options) {
	t.Helper()
	if o.Features == 0 {
		o.Features = virtio.FeatureVersion1
	}
	if err := r.drv.Init(o); err != nil {
		t.Fatal(err)
	}
}

// echo sends msg through queue 0 of the echo device and returns what
// came back.
func (r *rig) echo(t *testing.T, msg string) string {
	t.Helper()
	q := r.drv.Queues[0]
	out := r.mem.Alloc(uint64(len(msg)), 1)
	if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte(msg)), Len: uint32(len(msg))}, {Addr: out, Len: uint32(len(msg)), Write: true}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	u, err := q.WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	return string(r.mem.Read(out, uint64(u.Len)))
}
