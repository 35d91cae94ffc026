// Package blk is virtio-blk (virtio v1.2 section 5.2) on a disk.Image
// (qcow2 or raw): read, write, flush, discard, write-zeroes and get-id
// requests, a read-only mode, and several request queues. Requests run
// on goroutines of the device, several at a time per queue, never on the
// vCPU thread that notified the queue; every failure reaches the guest
// as an IOERR or UNSUPP status.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

// Feature bits (VIRTIO_BLK_F_*).
const (
	FeatureSizeMax     uint64 = 1 << 1
	FeatureSegMax      uint64 = 1 << 2
	FeatureGeometry    uint64 = 1 << 4
	FeatureRO          uint64 = 1 << 5
	FeatureBlkSize     uint64 = 1 << 6
	FeatureFlush       uint64 = 1 << 9
	FeatureTopology    uint64 = 1 << 10
	FeatureConfigWCE   uint64 = 1 << 11
	FeatureMQ          uint64 = 1 << 12
	FeatureDiscard     uint64 = 1 << 13
	FeatureWriteZeroes uint64 = 1 << 14
)

// Request types (VIRTIO_BLK_T_*).
const (
	typeIn          = 0
	typeOut         = 1
	typeFlush       = 4
	typeGetID       = 8
	typeDiscard     = 11
	typeWriteZeroes = 13
)

// Request status (VIRTIO_BLK_S_*).
const (
	statusOK     = 0
	statusIOErr  = 1
	statusUnsupp = 2
)

// Geometry and limits the device advertises.
const (
	// SectorSize is virtio-blk's unit of addressing.
	SectorSize = 512
	// SerialLen is the size of a GET_ID answer (VIRTIO_BLK_ID_BYTES).
	SerialLen = 20
	// DefaultQueueSize is each request queue's size.
	DefaultQueueSize = 256
	// MaxQueues bounds the request queues.
	MaxQueues = 16
	// SizeMax is the largest data segment the driver may use.
	SizeMax = 4 << 20
	// MaxDiscardSectors bounds one discard or write-zeroes segment
	// (2 GiB).
	MaxDiscardSectors = 1 << 22
	// MaxDiscardSegments bounds the segments of one discard or
	// write-zeroes request.
	MaxDiscardSegments = 32
	// InFlight bounds the requests one queue runs at the same time (each
	// holds a goroutine, and a staging buffer on an image that is not
	// Vectored).
	InFlight = 32

	headerLen  = 16
	segmentLen = 16
	configLen  = 60
)

// CacheMode says how guest flushes relate to host durability.
type CacheMode string

// Cache modes.
const (
	// CacheWriteback (the default) tells the guest the disk has a
	// volatile write cache; a guest flush makes its writes durable
	// (fdatasync through the image's metadata).
	CacheWriteback CacheMode = "writeback"
	// CacheWritethrough makes every write durable before it completes;
	// the guest sees no write cache.
	CacheWritethrough CacheMode = "writethrough"
	// CacheUnsafe ignores guest flushes: fast, and a host crash loses
	// data. For scratch VMs only.
	CacheUnsafe CacheMode = "unsafe"
)

// Config configures a virtio-blk device.
type Config struct {
	// Image is the disk. The device does not close it.
	Image disk.Image
	// ReadOnly presents the disk read-only (it is also read-only when
	// the image is).
	ReadOnly bool
	// Serial is the GET_ID answer, at most SerialLen bytes.
	Serial string
	// Cache is the cache mode (default CacheWriteback).
	Cache CacheMode
	// Queues is the number of request queues (default 1).
	Queues int
	// QueueSize is each queue's size (default DefaultQueueSize).
	QueueSize uint16
	// GuardFormat refuses guest writes that would make the disk detect
	// as another format than raw (a qcow2 header at its start): set it
	// for raw images whose format was detected rather than configured,
	// so that a guest cannot make the host read the image as qcow2 (and
	// open a backing file the guest names) next time. The guard checks
	// a private copy of sector 0 and writes that copy, so a guest that
	// changes its buffer meanwhile (from another vCPU) cannot slip a
	// header past it; only sector 0 is checked, as detection reads
	// nothing after its first disk.DetectLen bytes.
	GuardFormat bool
	// Limiter limits the disk's requests and the bytes they read and
	// write, across all its queues; nil (the default) limits nothing.
	// Every request counts as one operation; reads and writes count
	// their data bytes, other requests none. A queue over its limit
	// takes no request until the limiter allows one.
	Limiter *ratelimit.Limiter
	// Name identifies the disk in messages.
	Name string
	// Logf reports host I/O errors and refused writes, at most
	// virtio.LogBurst in a row (a virtio.LogLimiter). Nil discards.
	Logf func(format string, args ...any)
}

// Device is a virtio-blk device.
type Device struct {
	cfg      Config
	ro       bool
	capacity uint64 // in sectors
	features uint64
	config   [configLen]byte
	logf     func(format string, args ...any)
	group    virtio.Group
	chains   sync.Pool
	stages   sync.Pool // *[]byte of stageSize, for transfer

	// sector0 serialises guarded writes of sector 0 (GuardFormat).
	sector0 sync.Mutex

	mu    sync.Mutex
	stats Stats
}

// Stats count the device's requests.
type Stats struct {
	Reads, Writes, Flushes, Discards, WriteZeroes, GetIDs uint64
	ReadBytes, WriteBytes                                 uint64
	Errors, Unsupported                                   uint64
}

// New returns a virtio-blk device for cfg.
func New(cfg Config) (*Device, error) {
	if cfg.Image == nil {
		return nil, errors.New("virtio-blk: no disk image")
	}
	if len(cfg.Serial) > SerialLen {
		return nil, fmt.Errorf("virtio-blk: %s: serial %q is longer than %d bytes", cfg.Name, cfg.Serial, SerialLen)
	}
	switch cfg.Cache {
	case "":
		cfg.Cache = CacheWriteback
	case CacheWriteback, CacheWritethrough, CacheUnsafe:
	default:
		return nil, fmt.Errorf("virtio-blk: %s: unknown cache mode %q", cfg.Name, cfg.Cache)
	}
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.Queues < 1 || cfg.Queues > MaxQueues {
		return nil, fmt.Errorf("virtio-blk: %s: %d queues; want 1 to %d", cfg.Name, cfg.Queues, MaxQueues)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QueueSize < 4 || cfg.QueueSize&(cfg.QueueSize-1) != 0 || cfg.QueueSize > virtio.MaxQueueSize {
		return nil, fmt.Errorf("virtio-blk: %s: queue size %d is not a power of two from 4 to %d", cfg.Name, cfg.QueueSize, virtio.MaxQueueSize)
	}
	caps := cfg.Image.Capabilities()
	d := &Device{
		cfg:      cfg,
		ro:       cfg.ReadOnly || caps.ReadOnly,
		capacity: uint64(cfg.Image.Size()) / SectorSize,
		logf:     virtio.NewLogLimiter(cfg.Logf, nil).Printf,
	}
	d.chains.New = func() any { return new(virtio.Chain) }
	d.stages.New = func() any { b := make([]byte, stageSize); return &b }
	d.features = FeatureSizeMax | FeatureSegMax | FeatureBlkSize | FeatureTopology
	if cfg.Cache != CacheWritethrough {
		d.features |= FeatureFlush
	}
	if cfg.Queues > 1 {
		d.features |= FeatureMQ
	}
	if d.ro {
		d.features |= FeatureRO
	} else {
		d.features |= FeatureDiscard | FeatureWriteZeroes
	}
	d.buildConfig(caps)
	return d, nil
}

// buildConfig fills struct virtio_blk_config.
func (d *Device) buildConfig(caps disk.Capabilities) {
	c := d.config[:]
	le := binary.LittleEndian
	le.PutUint64(c[0:], d.capacity)
	le.PutUint32(c[8:], SizeMax)
	le.PutUint32(c[12:], uint32(d.cfg.QueueSize)-2) // seg_max: room for header and status
	le.PutUint32(c[20:], SectorSize)                // blk_size
	// Topology: 512-byte logical and physical blocks; the optimal I/O
	// size is the image's allocation unit.
	le.PutUint16(c[26:], 1)
	if caps.ClusterSize >= SectorSize {
		le.PutUint32(c[28:], uint32(min(caps.ClusterSize/SectorSize, 1<<20)))
	}
	if d.cfg.Cache != CacheWritethrough {
		c[32] = 1 // writeback
	}
	le.PutUint16(c[34:], uint16(d.cfg.Queues))
	le.PutUint32(c[36:], MaxDiscardSectors)
	le.PutUint32(c[40:], MaxDiscardSegments)
	align := uint32(1)
	if caps.DiscardGranularity >= SectorSize {
		align = uint32(min(caps.DiscardGranularity/SectorSize, 1<<20))
	}
	le.PutUint32(c[44:], align)
	le.PutUint32(c[48:], MaxDiscardSectors)
	le.PutUint32(c[52:], MaxDiscardSegments)
	c[56] = 1 // write_zeroes_may_unmap
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceID { return virtio.IDBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueSizes implements virtio.Device.
func (d *Device) QueueSizes() []uint16 {
	s := make([]uint16, d.cfg.Queues)
	for i := range s {
		s[i] = d.cfg.QueueSize
	}
	return s
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset int, data []byte) {
	for i := range data {
		if o := offset + i; o >= 0 && o < configLen {
			data[i] = d.config[o]
		} else {
			data[i] = 0
		}
	}
}

// WriteConfig implements virtio.Device: the configuration is read-only
// (no VIRTIO_BLK_F_CONFIG_WCE).
func (d *Device) WriteConfig(offset int, data []byte) {}

// Activate implements virtio.Device: one dispatcher per enabled queue.
func (d *Device) Activate(env virtio.Env) error {
	for _, q := range env.Queues {
		if q == nil {
			continue
		}
		d.group.Go(q, func() { d.serve(q, env) })
	}
	return nil
}

// Reset implements virtio.Device: it returns after every request taken
// from a queue has completed.
func (d *Device) Reset() { d.group.Stop() }

// Stats returns the request counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// serve takes q's requests and runs up to InFlight of them at once. A
// request with nothing else pending runs on this goroutine: handing it to
// another would only add a wakeup to its latency. With a limiter, serve
// takes a request only once the limiter has no debt, and charges it
// when it takes it.
func (d *Device) serve(q *virtio.Queue, env virtio.Env) {
	lim := d.cfg.Limiter
	stop := q.Stopping()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, InFlight)
	complete := func(c *virtio.Chain) {
		n, err := d.handle(c)
		if err != nil {
			env.Fail(err)
		} else {
			q.Push(c.Head, n)
			q.Notify()
		}
		d.chains.Put(c)
	}
	for {
		if lim != nil && !lim.Wait(stop, nil) {
			return
		}
		c := d.chains.Get().(*virtio.Chain)
		ok, err := q.Next(c, nil)
		if err != nil {
			env.Fail(err)
		}
		if !ok || err != nil {
			d.chains.Put(c)
			return
		}
		if lim != nil {
			lim.Consume(dataLen(c), 1)
		}
		if len(slots) == 0 && !q.HasAvailable() {
			complete(c)
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			complete(c)
			<-slots
		}()
	}
}

// dataLen is the data a request moves, as the rate limiter counts it:
// a read's or a write's data bytes; 0 for other requests and for chains
// too short to say.
func dataLen(c *virtio.Chain) uint64 {
	var typ [4]byte
	if c.ReadAt(typ[:], 0) != len(typ) {
		return 0
	}
	switch binary.LittleEndian.Uint32(typ[:]) {
	case typeIn:
		if c.WriteLen() > 0 {
			return c.WriteLen() - 1
		}
	case typeOut:
		if c.ReadLen() > headerLen {
			return c.ReadLen() - headerLen
		}
	}
	return 0
}

// handle runs one request and writes its status. It returns the bytes
// written into the chain's writable buffers, or an error when the chain
// cannot carry a status at all.
func (d *Device) handle(c *virtio.Chain) (uint32, error) {
	if c.WriteLen() == 0 {
		return 0, fmt.Errorf("virtio-blk: %s: request %d has no writable status byte: %w", d.cfg.Name, c.Head, virtio.ErrChain)
	}
	dataIn := c.WriteLen() - 1 // the last writable byte is the status
	var hdr [headerLen]byte
	status, written := byte(statusIOErr), uint64(0)
	if c.ReadAt(hdr[:], 0) == headerLen {
		typ := binary.LittleEndian.Uint32(hdr[0:])
		sector := binary.LittleEndian.Uint64(hdr[8:])
		status, written = d.execute(c, typ, sector, dataIn)
	}
	c.WriteAt([]byte{status}, c.WriteLen()-1)
	return uint32(written + 1), nil
}

// execute runs a request whose header was read; it returns the status and
// how many data bytes it wrote for the guest.
func (d *Device) execute(c *virtio.Chain, typ uint32, sector, dataIn uint64) (byte, uint64) {
	dataOut := c.ReadLen() - headerLen
	switch typ {
	case typeIn:
		st := d.count(d.read(c, sector, dataIn), func(s *Stats) { s.Reads++; s.ReadBytes += dataIn })
		if st != statusOK {
			return st, 0
		}
		return st, dataIn
	case typeOut:
		return d.count(d.write(c, sector, dataOut), func(s *Stats) { s.Writes++; s.WriteBytes += dataOut }), 0
	case typeFlush:
		return d.count(d.flush(), func(s *Stats) { s.Flushes++ }), 0
	case typeGetID:
		n := min(dataIn, SerialLen)
		var id [SerialLen]byte
		copy(id[:], d.cfg.Serial)
		c.WriteAt(id[:n], 0)
		d.count(statusOK, func(s *Stats) { s.GetIDs++ })
		return statusOK, n
	case typeDiscard, typeWriteZeroes:
		st := d.discard(c, typ == typeWriteZeroes, dataOut)
		return d.count(st, func(s *Stats) {
			if typ == typeDiscard {
				s.Discards++
			} else {
				s.WriteZeroes++
			}
		}), 0
	}
	return d.count(statusUnsupp, nil), 0
}

// count records a request's outcome and returns its status.
func (d *Device) count(status byte, ok func(*Stats)) byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case status == statusUnsupp:
		d.stats.Unsupported++
	case status != statusOK:
		d.stats.Errors++
	case ok != nil:
		ok(&d.stats)
	}
	return status
}

// inRange checks that n bytes from sector are whole sectors on the disk.
func (d *Device) inRange(sector, n uint64) bool {
	return n%SectorSize == 0 && sector <= d.capacity && n/SectorSize <= d.capacity-sector
}

// read serves VIRTIO_BLK_T_IN.
func (d *Device) read(c *virtio.Chain, sector, n uint64) byte {
	if !d.inRange(sector, n) {
		return statusIOErr
	}
	off := int64(sector * SectorSize)
	if err := d.transfer(virtio.Slices(nil, c.Writable, 0, n), off, false); err != nil {
		d.logf("virtio-blk %s: read %d bytes at %#x: %v", d.cfg.Name, n, off, err)
		return statusIOErr
	}
	return statusOK
}

// write serves VIRTIO_BLK_T_OUT.
func (d *Device) write(c *virtio.Chain, sector, n uint64) byte {
	if d.ro || !d.inRange(sector, n) {
		return statusIOErr
	}
	bufs := virtio.Slices(nil, c.Readable, headerLen, n)
	if d.cfg.GuardFormat && sector == 0 && n > 0 {
		// The guest can change its buffers at any time, so the guard
		// decides on a private copy of the sector that decides
		// detection and writes exactly that copy; guarded writes of
		// sector 0 are serialised, so two of them cannot interleave
		// into a header neither had.
		var ok bool
		if bufs, ok = d.stageSector0(c, n); !ok {
			d.logf("virtio-blk %s: refused a guest write of a disk image header to sector 0 of a raw disk whose format was detected (set the disk's format to allow it)", d.cfg.Name)
			return statusIOErr
		}
		d.sector0.Lock()
		defer d.sector0.Unlock()
	}
	off := int64(sector * SectorSize)
	if err := d.transfer(bufs, off, true); err != nil {
		d.logf("virtio-blk %s: write %d bytes at %#x: %v", d.cfg.Name, n, off, err)
		return statusIOErr
	}
	if d.cfg.Cache == CacheWritethrough {
		return d.flush()
	}
	return statusOK
}

// Detection must be decided within sector 0, the only one the guard
// checks.
var _ [SectorSize - disk.DetectLen]struct{}

// stageSector0 copies the first sector of a write of n bytes to sector
// 0 out of guest memory and returns the buffers to write: that copy,
// then the rest of the request straight from guest memory. It returns
// false when the copy would make the disk detect as another format than
// raw. Precondition: n is a positive multiple of SectorSize.
func (d *Device) stageSector0(c *virtio.Chain, n uint64) ([][]byte, bool) {
	sector := make([]byte, SectorSize)
	c.ReadAt(sector, headerLen)
	if disk.DetectHeader(sector) != disk.FormatRaw {
		return nil, false
	}
	return virtio.Slices([][]byte{sector}, c.Readable, headerLen+SectorSize, n-SectorSize), true
}

// stageSize is the largest piece of a request moved through one staging
// buffer.
const stageSize = 1 << 20

// maxIOV bounds the buffers of one vectored call (IOV_MAX).
const maxIOV = 1024

// Vectored is an image that reads and writes scattered buffers in one
// call (preadv/pwritev). virtio-blk then moves data straight between
// guest memory and the image, without its staging copy.
type Vectored interface {
	ReadvAt(bufs [][]byte, off int64) (int, error)
	WritevAt(bufs [][]byte, off int64) (int, error)
}

// transfer moves the guest buffers bufs to (write) or from the image at
// off. One buffer, or any number with a Vectored image, goes straight
// between guest memory and the image. Otherwise a request scattered over
// many buffers (Linux sends a page per segment) goes through a staging
// buffer, so that the image sees one read or write per MiB instead of one
// per segment: a syscall and a metadata lookup cost more than the copy.
func (d *Device) transfer(bufs [][]byte, off int64, write bool) error {
	img := d.cfg.Image
	if v, ok := img.(Vectored); ok && len(bufs) > 1 {
		for len(bufs) > 0 {
			k := min(len(bufs), maxIOV)
			var n int
			var err error
			if write {
				n, err = v.WritevAt(bufs[:k], off)
			} else {
				n, err = v.ReadvAt(bufs[:k], off)
			}
			if err != nil {
				return err
			}
			off += int64(n)
			bufs = bufs[k:]
		}
		return nil
	}
	if len(bufs) == 1 {
		var err error
		if write {
			_, err = img.WriteAt(bufs[0], off)
		} else {
			_, err = img.ReadAt(bufs[0], off)
		}
		return err
	}
	sp := d.stages.Get().(*[]byte)
	defer d.stages.Put(sp)
	stage := *sp
	for len(bufs) > 0 {
		// Take whole buffers up to the stage's size (a buffer larger
		// than the stage goes alone, straight).
		k, n := 0, 0
		for k < len(bufs) && n+len(bufs[k]) <= len(stage) {
			n += len(bufs[k])
			k++
		}
		if k == 0 {
			if err := d.transfer(bufs[:1], off, write); err != nil {
				return err
			}
			off += int64(len(bufs[0]))
			bufs = bufs[1:]
			continue
		}
		chunk := stage[:n]
		var err error
		if write {
			gatherInto(chunk, bufs[:k])
			_, err = img.WriteAt(chunk, off)
		} else if _, err = img.ReadAt(chunk, off); err == nil {
			scatterFrom(bufs[:k], chunk)
		}
		if err != nil {
			return err
		}
		off += int64(n)
		bufs = bufs[k:]
	}
	return nil
}

// gatherInto copies bufs, in order, into dst (exactly their total size).
func gatherInto(dst []byte, bufs [][]byte) {
	for _, b := range bufs {
		dst = dst[copy(dst, b):]
	}
}

// scatterFrom copies src, in order, into bufs (exactly their total size).
func scatterFrom(bufs [][]byte, src []byte) {
	for _, b := range bufs {
		src = src[copy(b, src):]
	}
}

// flush serves VIRTIO_BLK_T_FLUSH.
func (d *Device) flush() byte {
	if d.cfg.Cache == CacheUnsafe || d.ro {
		return statusOK
	}
	if err := d.cfg.Image.Flush(); err != nil {
		d.logf("virtio-blk %s: flush: %v", d.cfg.Name, err)
		return statusIOErr
	}
	return statusOK
}

// discard serves VIRTIO_BLK_T_DISCARD and VIRTIO_BLK_T_WRITE_ZEROES: a
// list of {sector, num_sectors, flags} segments.
func (d *Device) discard(c *virtio.Chain, zeroes bool, n uint64) byte {
	if d.ro {
		return statusIOErr
	}
	if n == 0 || n%segmentLen != 0 || n/segmentLen > MaxDiscardSegments {
		return statusIOErr
	}
	segs := make([]byte, n)
	c.ReadAt(segs, headerLen)
	if d.cfg.GuardFormat && coversSector0(segs) {
		// Zeros never form a header, but they go to sector 0 in turn
		// with the guard's checked writes all the same: every state
		// sector 0 passes through is then one the guard allowed.
		d.sector0.Lock()
		defer d.sector0.Unlock()
	}
	for i := 0; i < len(segs); i += segmentLen {
		sector := binary.LittleEndian.Uint64(segs[i:])
		count := uint64(binary.LittleEndian.Uint32(segs[i+8:]))
		flags := binary.LittleEndian.Uint32(segs[i+12:])
		unmap := flags&1 != 0
		if flags&^1 != 0 || (!zeroes && unmap) {
			return statusUnsupp
		}
		if count > MaxDiscardSectors || !d.inRange(sector, count*SectorSize) {
			return statusIOErr
		}
		off, length := int64(sector*SectorSize), int64(count*SectorSize)
		var err error
		if zeroes {
			err = d.cfg.Image.WriteZeroes(off, length, unmap)
		} else {
			err = d.cfg.Image.Discard(off, length)
		}
		if err != nil {
			d.logf("virtio-blk %s: discard/write-zeroes %d bytes at %#x: %v", d.cfg.Name, length, off, err)
			return statusIOErr
		}
	}
	if zeroes && d.cfg.Cache == CacheWritethrough {
		return d.flush()
	}
	return statusOK
}

// coversSector0 reports whether a discard or write-zeroes segment list
// (read out of guest memory already) names sector 0.
func coversSector0(segs []byte) bool {
	for i := 0; i+segmentLen <= len(segs); i += segmentLen {
		if binary.LittleEndian.Uint64(segs[i:]) == 0 && binary.LittleEndian.Uint32(segs[i+8:]) > 0 {
			return true
		}
	}
	return false
}
