// Package net is virtio-net (virtio v1.2 section 5.1) on a tap backend:
// one receive and one transmit queue, the 12-byte virtio-net header passed
// through to and from the tap (so checksum offload and TSO work end to
// end), mergeable receive buffers, a MAC address and link status.
//
// Frames the guest transmits go from guest memory to the tap with one
// writev; received frames are read from the tap into a staging buffer and
// copied into the guest's receive buffers. Each direction has its own
// goroutine.
package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/netdev"
)

// Feature bits (VIRTIO_NET_F_*).
const (
	FeatureCsum      uint64 = 1 << 0
	FeatureGuestCsum uint64 = 1 << 1
	FeatureMTU       uint64 = 1 << 3
	FeatureMAC       uint64 = 1 << 5
	FeatureGuestTSO4 uint64 = 1 << 7
	FeatureGuestTSO6 uint64 = 1 << 8
	FeatureGuestECN  uint64 = 1 << 9
	FeatureGuestUFO  uint64 = 1 << 10
	FeatureHostTSO4  uint64 = 1 << 11
	FeatureHostTSO6  uint64 = 1 << 12
	FeatureHostECN   uint64 = 1 << 13
	FeatureMrgRxbuf  uint64 = 1 << 15
	FeatureStatus    uint64 = 1 << 16
	FeatureCtrlVQ    uint64 = 1 << 17
	FeatureMQ        uint64 = 1 << 22
)

// Offered is the feature set the device offers.
const Offered = FeatureCsum | FeatureGuestCsum | FeatureMAC |
	FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN |
	FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN |
	FeatureMrgRxbuf | FeatureStatus

// Header layout (struct virtio_net_hdr_v1).
const (
	HdrLen        = netdev.VnetHdrLen
	hdrFlags      = 0
	hdrGSOType    = 1
	hdrNumBuffers = 10
	flagNeedsCsum = 1
	flagDataValid = 2
	statusLinkUp  = 1
	rxQueue       = 0
	txQueue       = 1
	configLen     = 12
	stagingLen    = HdrLen + MaxFrame
	maxIOV        = 1024 // IOV_MAX
	// batch bounds the frames a direction handles before it interrupts
	// the guest (if the guest asked to hear), when more keep coming.
	batch = 64
)

// MaxFrame is the largest frame (after the header) the device passes in
// either direction: an IP packet of 64 KiB in a VLAN-tagged Ethernet
// frame. A guest's larger frame is dropped and counted (TxDropped), so a
// frame never costs the device more than one buffer of this size.
const MaxFrame = 65535 + 14 + 4

// QueueSize is the size of each queue.
const QueueSize = 256

// Backend carries frames (each preceded by the virtio-net header) to and
// from the host network. *netdev.Tap implements it.
type Backend interface {
	// Read blocks for one frame, calling idle (if not nil) first when
	// none is queued; after Interrupt it fails with
	// netdev.ErrInterrupted.
	Read(bufs [][]byte, idle func()) (int, error)
	// Write sends one frame.
	Write(bufs [][]byte) (int, error)
	// SetOffload sets the offloads (netdev.Offload*) the reader accepts.
	SetOffload(flags int) error
	Interrupt()
	Rearm()
}

// Config configures a virtio-net device.
type Config struct {
	// Backend carries the frames; required.
	Backend Backend
	// MAC is the guest's address.
	MAC netdev.MAC
	// TxLimiter limits the frames the guest sends and their bytes (the
	// Ethernet frame, without the virtio-net header); RxLimiter those
	// it receives. Nil (the default) limits nothing. Over its limit, a
	// direction takes no frame until the limiter allows one: the guest's
	// frames wait in its transmit ring, the host's in the tap's queue
	// (which drops them when full, as a slow link does).
	TxLimiter, RxLimiter *ratelimit.Limiter
	// Name identifies the NIC in messages.
	Name string
	// Logf reports host I/O errors and frames the guest got wrong, at
	// most virtio.LogBurst in a row (a virtio.LogLimiter). Nil discards.
	Logf func(format string, args ...any)
}

// Stats count frames and bytes.
type Stats struct {
	RxFrames, RxBytes, RxDropped uint64
	TxFrames, TxBytes, TxDropped uint64
}

// Device is a virtio-net device.
type Device struct {
	cfg   Config
	logf  func(format string, args ...any)
	group virtio.Group

	mu     sync.Mutex
	linkUp bool
	env    *virtio.Env // while active
	stats  Stats
	// Receive goroutine only.
	staging []byte
	used    []usedElem
	hdr     [][]byte
}

// New returns a virtio-net device.
func New(cfg Config) (*Device, error) {
	if cfg.Backend == nil {
		return nil, errors.New("virtio-net: no backend")
	}
	if cfg.MAC.Multicast() || cfg.MAC == (netdev.MAC{}) {
		return nil, fmt.Errorf("virtio-net: %s: MAC %s is not a unicast address", cfg.Name, cfg.MAC)
	}
	d := &Device{cfg: cfg, logf: virtio.NewLogLimiter(cfg.Logf, nil).Printf, linkUp: true, staging: make([]byte, stagingLen)}
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceID { return virtio.IDNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return Offered }

// QueueSizes implements virtio.Device: one receive and one transmit queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: struct virtio_net_config.
func (d *Device) ReadConfig(offset int, data []byte) {
	var c [configLen]byte
	copy(c[:], d.cfg.MAC[:])
	d.mu.Lock()
	if d.linkUp {
		binary.LittleEndian.PutUint16(c[6:], statusLinkUp)
	}
	d.mu.Unlock()
	binary.LittleEndian.PutUint16(c[8:], 1) // max_virtqueue_pairs
	for i := range data {
		if o := offset + i; o >= 0 && o < configLen {
			data[i] = c[o]
		} else {
			data[i] = 0
		}
	}
}

// WriteConfig implements virtio.Device: the MAC is read-only for a
// VERSION_1 driver, so writes are ignored.
func (d *Device) WriteConfig(offset int, data []byte) {}

// SetLink sets the link status the guest sees and tells it.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	changed := d.linkUp != up
	d.linkUp = up
	env := d.env
	d.mu.Unlock()
	if changed && env != nil {
		env.ConfigChanged()
	}
}

// Stats returns the frame counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Activate implements virtio.Device: it sets the tap's offloads to what
// the guest accepts and starts the receive and transmit goroutines.
func (d *Device) Activate(env virtio.Env) error {
	var off int
	if env.HasFeature(FeatureGuestCsum) {
		off |= netdev.OffloadCsum
		if env.HasFeature(FeatureGuestTSO4) {
			off |= netdev.OffloadTSO4
		}
		if env.HasFeature(FeatureGuestTSO6) {
			off |= netdev.OffloadTSO6
		}
		if env.HasFeature(FeatureGuestECN) && off&(netdev.OffloadTSO4|netdev.OffloadTSO6) != 0 {
			off |= netdev.OffloadTSOECN
		}
	}
	if err := d.cfg.Backend.SetOffload(off); err != nil {
		return fmt.Errorf("virtio-net %s: %w", d.cfg.Name, err)
	}
	d.mu.Lock()
	d.env = &env
	d.mu.Unlock()
	d.cfg.Backend.Rearm()
	if q := env.Queues[rxQueue]; q != nil {
		d.group.Go(q, func() { d.receive(q, env) })
	}
	if q := env.Queues[txQueue]; q != nil {
		d.group.Go(q, func() { d.transmit(q, env) })
	}
	return nil
}

// Reset implements virtio.Device.
func (d *Device) Reset() {
	d.cfg.Backend.Interrupt()
	d.group.Stop()
	d.mu.Lock()
	d.env = nil
	d.mu.Unlock()
}

// hostError logs a host-side I/O error or a frame the guest got wrong
// (d.logf is rate-limited).
func (d *Device) hostError(format string, args ...any) {
	d.logf("virtio-net %s: "+format, append([]any{d.cfg.Name}, args...)...)
}

// transmit sends each chain of the transmit queue to the backend. Each
// buffer goes back to the driver as soon as its frame is sent, but the
// interrupt waits for the end of the burst (the ring found empty) or for
// batch frames: an interrupt costs the guest far more than a frame, and
// one for every frame would also wake a halted vCPU in the middle of a
// burst, to come back for the next frame.
//
// With a limiter, a frame is taken only once the limiter has no debt
// (the driver hears about the frames sent so far before the device
// waits), and charged when it is taken.
func (d *Device) transmit(q *virtio.Queue, env virtio.Env) {
	var c virtio.Chain
	var flat []byte
	lim, stop := d.cfg.TxLimiter, q.Stopping()
	sent := 0
	for {
		if sent == batch {
			q.Notify()
			sent = 0
		}
		if lim != nil && !lim.Wait(stop, q.Notify) {
			return
		}
		ok, err := q.Next(&c, q.Notify)
		if err != nil {
			env.Fail(err)
			return
		}
		if !ok {
			return
		}
		n := c.ReadLen()
		bufs := c.Readable
		if lim != nil {
			lim.Consume(n-min(n, HdrLen), 1)
		}
		switch {
		case n < HdrLen || n > HdrLen+MaxFrame:
			d.count(func(s *Stats) { s.TxDropped++ })
			d.hostError("guest sent a %d-byte frame (with its %d-byte header); dropped", n, HdrLen)
			q.Push(c.Head, 0)
			sent++
			continue
		case len(bufs) > maxIOV:
			if flat == nil {
				flat = make([]byte, HdrLen+MaxFrame)
			}
			c.ReadAt(flat[:n], 0)
			bufs = [][]byte{flat[:n]}
		}
		if _, err := d.cfg.Backend.Write(bufs); err != nil {
			d.count(func(s *Stats) { s.TxDropped++ })
			d.hostError("transmit: %v", err)
		} else {
			d.count(func(s *Stats) { s.TxFrames++; s.TxBytes += n - HdrLen })
		}
		q.Push(c.Head, 0)
		sent++
	}
}

func (d *Device) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

// receive reads frames from the backend into the receive queue. Read
// tries the tap before it waits, so a burst costs one read per frame; the
// interrupt (if the guest asked for one) comes when the burst ends, before
// Read waits, or after batch frames. With a limiter, the next frame is
// read from the backend only once the limiter has no debt, and charged
// when it is read; frames meanwhile wait in the backend.
func (d *Device) receive(q *virtio.Queue, env virtio.Env) {
	frame := [][]byte{d.staging}
	mergeable := env.HasFeature(FeatureMrgRxbuf)
	maxChains := int(q.Size())
	guestCsum := env.HasFeature(FeatureGuestCsum)
	lim, stop := d.cfg.RxLimiter, q.Stopping()
	var c virtio.Chain
	received := 0
	for {
		if received == batch {
			q.Notify()
			received = 0
		}
		if lim != nil && !lim.Wait(stop, q.Notify) {
			return
		}
		n, err := d.cfg.Backend.Read(frame, q.Notify)
		switch {
		case errors.Is(err, netdev.ErrInterrupted):
			return
		case err != nil:
			if !q.Stopped() {
				d.hostError("receive: %v", err)
			}
			return
		case n < HdrLen:
			d.count(func(s *Stats) { s.RxDropped++ })
			continue
		}
		if lim != nil {
			lim.Consume(uint64(n-HdrLen), 1)
		}
		if !guestCsum {
			d.staging[hdrFlags] &^= flagDataValid
		}
		ok, err := d.deliver(q, &c, d.staging[:n], mergeable, maxChains)
		if err != nil {
			env.Fail(err)
			return
		}
		if !ok {
			return // stopped while waiting for buffers
		}
		received++
	}
}

// deliver copies one frame (header first) into the guest's receive
// buffers, waiting for buffers if there are none. It returns false when
// the queue was stopped meanwhile. A chain that cannot take part of the
// frame (one without room for the header first, one with no writable
// byte after it) is an error, and so is a frame that takes more than
// maxChains chains (the queue's size: more means the driver made chains
// available again before it got them back): each chain taken costs host
// memory until the frame is complete, so the device must not keep taking
// chains that do not bring it closer. Precondition: called from the
// receive goroutine only.
func (d *Device) deliver(q *virtio.Queue, c *virtio.Chain, frame []byte, mergeable bool, maxChains int) (bool, error) {
	d.used = d.used[:0]
	var hdr [][]byte
	off := uint64(0)
	for off < uint64(len(frame)) {
		if len(d.used) == maxChains {
			return false, fmt.Errorf("virtio-net %s: a %d-byte frame would take more receive buffers than the queue's %d: %w", d.cfg.Name, len(frame), maxChains, virtio.ErrChain)
		}
		ok, err := q.Next(c, q.Notify)
		if err != nil {
			return false, err
		}
		if !ok {
			// Stopped in the middle of the frame (a reset, or a
			// quiesce for a snapshot): the frame is dropped, and the
			// chains it took go back to the ring, so that a resumed
			// device uses them for the next frame instead of keeping
			// them from the driver for ever.
			q.Unpop(len(d.used))
			return false, nil
		}
		if len(d.used) > 0 && c.WriteLen() == 0 {
			return false, fmt.Errorf("virtio-net %s: receive buffer %d has no writable byte: %w", d.cfg.Name, c.Head, virtio.ErrChain)
		}
		start := uint64(0)
		if len(d.used) == 0 {
			if c.WriteLen() < HdrLen {
				return false, fmt.Errorf("virtio-net %s: receive buffer of %d bytes cannot hold the header: %w", d.cfg.Name, c.WriteLen(), virtio.ErrChain)
			}
			if !mergeable && c.WriteLen() < uint64(len(frame)) {
				// The buffer cannot hold the frame: drop the frame,
				// keep the buffer for the next one.
				q.Unpop(1)
				d.count(func(s *Stats) { s.RxDropped++ })
				return true, nil
			}
			// The header is written last, once num_buffers is known.
			hdr = virtio.Slices(d.hdr[:0], c.Writable, 0, HdrLen)
			start, off = HdrLen, HdrLen
		}
		n := uint64(c.WriteAt(frame[off:], start))
		d.used = append(d.used, usedElem{c.Head, uint32(start + n)})
		off += n
	}
	binary.LittleEndian.PutUint16(frame[hdrNumBuffers:], uint16(len(d.used)))
	rest := frame[:HdrLen]
	for _, b := range hdr {
		rest = rest[copy(b, rest):]
	}
	for _, u := range d.used {
		q.Push(u.head, u.len)
	}
	d.count(func(s *Stats) { s.RxFrames++; s.RxBytes += uint64(len(frame) - HdrLen) })
	return true, nil
}

// usedElem is a receive chain filled by deliver.
type usedElem struct {
	head uint16
	len  uint32
}
