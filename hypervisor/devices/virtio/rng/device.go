// Package rng is virtio-rng (virtio v1.2 section 5.4): an entropy device
// that fills the guest's buffers from the host's crypto/rand. A Linux
// guest sees it as /dev/hwrng (driver virtio-rng, hw_random core).
package rng

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

// QueueSize is the size of the request queue.
const QueueSize = 64

// MaxRequest bounds the bytes one request receives: a guest asking for
// more gets MaxRequest bytes (the driver handles short fills), so one
// request cannot keep the device busy for long.
const MaxRequest = 64 << 10

// Device is a virtio-rng device.
type Device struct {
	src   io.Reader
	group virtio.Group

	mu     sync.Mutex
	served uint64 // bytes handed to the guest, for tests and stats
}

// New returns a virtio-rng device reading from src, or from crypto/rand
// when src is nil.
func New(src io.Reader) *Device {
	if src == nil {
		src = rand.Reader
	}
	return &Device{src: src}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceID { return virtio.IDRNG }

// Features implements virtio.Device: virtio-rng has none of its own.
func (d *Device) Features() uint64 { return 0 }

// QueueSizes implements virtio.Device: one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device: there is no configuration space.
func (d *Device) ReadConfig(offset int, data []byte) { clear(data) }

// WriteConfig implements virtio.Device.
func (d *Device) WriteConfig(offset int, data []byte) {}

// Activate implements virtio.Device.
func (d *Device) Activate(env virtio.Env) error {
	q := env.Queues[0]
	if q == nil {
		return nil // the driver did not enable the queue: nothing to serve
	}
	d.group.Go(q, func() { d.serve(q, env) })
	return nil
}

// Reset implements virtio.Device.
func (d *Device) Reset() { d.group.Stop() }

// Served returns how many random bytes the guest has received.
func (d *Device) Served() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.served
}

// serve fills each request's writable buffers with random bytes.
func (d *Device) serve(q *virtio.Queue, env virtio.Env) {
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
		n, err := d.fill(c.Writable)
		if err != nil {
			env.Fail(err)
			return
		}
		q.Push(c.Head, n)
	}
}

// fill writes up to MaxRequest random bytes into bufs.
func (d *Device) fill(bufs [][]byte) (uint32, error) {
	var n int
	for _, b := range bufs {
		if n == MaxRequest {
			break
		}
		b = b[:min(len(b), MaxRequest-n)]
		if _, err := io.ReadFull(d.src, b); err != nil {
			return 0, fmt.Errorf("virtio-rng: entropy source: %w", err)
		}
		n += len(b)
	}
	d.mu.Lock()
	d.served += uint64(n)
	d.mu.Unlock()
	return uint32(n), nil
}
