package blk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

const diskSize = 8 << 20

// Request types and statuses, as a driver writes and reads them.
const (
	tIn          = 0
	tOut         = 1
	tFlush       = 4
	tGetID       = 8
	tGetLifetime = 10
	tDiscard     = 11
	tWriteZeroes = 13

	sOK     = 0
	sIOErr  = 1
	sUnsupp = 2
)

// counting wraps an image: it counts flushes and writes in progress,
// notes writes that start after sealed is set, and fails writes while
// failWrites is set.
type counting struct {
	disk.Image
	flushes    atomic.Int64
	failWrites atomic.Bool
	inFlight   atomic.Int64
	sealed     atomic.Bool
	late       atomic.Int64
}

func (c *counting) Flush() error {
	c.flushes.Add(1)
	return c.Image.Flush()
}

func (c *counting) WriteAt(p []byte, off int64) (int, error) {
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	if c.sealed.Load() {
		c.late.Add(1)
	}
	if c.failWrites.Load() {
		return 0, errors.New("simulated media error")
	}
	return c.Image.WriteAt(p, off)
}

type rig struct {
	path string
	img  *counting
	dev  *blk.Device
	pci  *virtio.PCI
	mem  *virtiotest.Memory
	drv  *virtiotest.Driver
	irq  *virtiotest.Interrupts
	mark uint64 // test memory in use once the queues are set up
}

// newImage creates an empty image of the format ("raw" or "qcow2").
func newImage(t *testing.T, format string) string {
	t.Helper()
	path := filepath.Join(qemutest.TempDir(t), "disk."+format)
	var err error
	if format == disk.FormatRaw {
		err = disk.CreateRaw(path, diskSize)
	} else {
		err = qcow2.Create(path, qcow2.CreateOptions{Size: diskSize})
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func newRig(t testing.TB, path string, cfg blk.Config, features uint64) *rig {
	t.Helper()
	img, err := disk.Open(path, disk.Options{ReadOnly: cfg.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{Image: img}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	r := newRigOn(t, c, cfg, features)
	r.path, r.img = path, c
	return r
}

// newRigOn is a device on img (which the caller closes) with a driver
// that accepted features (0: all offered).
func newRigOn(t testing.TB, img disk.Image, cfg blk.Config, features uint64) *rig {
	t.Helper()
	r := &rig{}
	cfg.Image = img
	var err error
	if r.dev, err = blk.New(cfg); err != nil {
		t.Fatal(err)
	}
	if r.mem, err = virtiotest.NewMemory(0x100000, 64<<20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.mem.Close() })
	r.irq = virtiotest.NewInterrupts(blk.MaxQueues + 1)
	if r.pci, err = virtio.NewPCI(virtio.PCIConfig{Device: r.dev, Memory: r.mem, MSIX: r.irq, INTx: devicestest.NewLine()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.pci.Close(); err != nil {
			t.Error(err)
		}
	})
	if r.drv, err = virtiotest.New(r.pci, r.mem, r.irq, nil); err != nil {
		t.Fatal(err)
	}
	if features == 0 {
		features = r.drv.DeviceFeatures()
	}
	if err := r.drv.Init(virtiotest.Options{Features: features, MSIX: true}); err != nil {
		t.Fatal(err)
	}
	r.mark = r.mem.Mark()
	return r
}

// request is one virtio-blk request as a driver lays it out.
type request struct {
	typ    uint32
	sector uint64
	out    []byte // data for the device (write, discard segments)
	in     int    // room for data from the device
	// noStatus leaves out the status byte; short cuts the header.
	noStatus bool
	short    bool
}

// add lays r out in queue qi (data split into two buffers to exercise
// scatter-gather) and returns the head and where the answer goes.
func (g *rig) add(t *testing.T, qi int, r request, indirect bool) (head uint16, in, status uint64) {
	t.Helper()
	bufs, in, status := g.buffers(r)
	q := g.drv.Queues[qi]
	var err error
	if indirect {
		head, err = q.AddIndirect(bufs)
	} else {
		head, err = q.Add(bufs)
	}
	if err != nil {
		t.Fatal(err)
	}
	return head, in, status
}

// buffers lays out r's header, data and status in guest memory and
// returns the chain's buffers and where its input and status go.
func (g *rig) buffers(r request) (bufs []virtiotest.Buf, in, status uint64) {
	hdr := make([]byte, 16)
	binary.LittleEndian.PutUint32(hdr[0:], r.typ)
	binary.LittleEndian.PutUint64(hdr[8:], r.sector)
	if r.short {
		hdr = hdr[:10]
	}
	bufs = []virtiotest.Buf{{Addr: g.mem.Put(hdr), Len: uint32(len(hdr))}}
	split := func(addr uint64, n int, write bool) {
		if n == 0 {
			return
		}
		first := n / 3
		if first == 0 {
			first = n
		}
		bufs = append(bufs, virtiotest.Buf{Addr: addr, Len: uint32(first), Write: write})
		if n > first {
			bufs = append(bufs, virtiotest.Buf{Addr: addr + uint64(first), Len: uint32(n - first), Write: write})
		}
	}
	if len(r.out) > 0 {
		split(g.mem.Put(r.out), len(r.out), false)
	}
	in = g.mem.Alloc(uint64(r.in), 8)
	split(in, r.in, true)
	if !r.noStatus {
		status = g.mem.Put([]byte{0xaa})
		bufs = append(bufs, virtiotest.Buf{Addr: status, Len: 1, Write: true})
	}
	return bufs, in, status
}

// do runs one request on queue 0 and returns its status, data and used
// length.
func (g *rig) do(t *testing.T, r request) (byte, []byte, uint32) {
	t.Helper()
	head, in, status := g.add(t, 0, r, r.sector%2 == 1)
	g.drv.Kick(0)
	u, err := g.drv.Queues[0].WaitUsed()
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != head {
		t.Fatalf("used id %d, want %d", u.ID, head)
	}
	g.mem.Release(g.mark) // every buffer of this request is done
	return g.mem.Read(status, 1)[0], g.mem.Read(in, uint64(r.in)), u.Len
}

func (g *rig) mustDo(t *testing.T, r request, want byte) []byte {
	t.Helper()
	st, data, n := g.do(t, r)
	if st != want {
		t.Fatalf("request %+v: status %d, want %d", r, st, want)
	}
	if st == sOK && (r.typ == tIn || r.typ == tGetID) {
		if int(n) != r.in+1 && r.typ == tIn {
			t.Fatalf("read: used length %d, want %d", n, r.in+1)
		}
	} else if n != 1 && !r.noStatus {
		t.Fatalf("request %+v: used length %d, want 1", r, n)
	}
	return data
}

func pattern(n int, seed int64) []byte {
	b := make([]byte, n)
	qemutest.FillPattern(b, seed)
	return b
}

func segment(sector uint64, count, flags uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, sector)
	binary.LittleEndian.PutUint32(b[8:], count)
	binary.LittleEndian.PutUint32(b[12:], flags)
	return b
}

func TestConfigSpace(t *testing.T) {
	tests := []struct {
		name string
		cfg  blk.Config
		has  uint64
		not  uint64
	}{
		{"writeback", blk.Config{Serial: "x"}, blk.FeatureFlush | blk.FeatureDiscard | blk.FeatureWriteZeroes | blk.FeatureBlkSize | blk.FeatureSegMax | blk.FeatureSizeMax | blk.FeatureTopology, blk.FeatureRO | blk.FeatureMQ},
		{"read-only", blk.Config{ReadOnly: true}, blk.FeatureRO | blk.FeatureFlush, blk.FeatureDiscard | blk.FeatureWriteZeroes},
		{"writethrough", blk.Config{Cache: blk.CacheWritethrough}, blk.FeatureDiscard, blk.FeatureFlush},
		{"multiqueue", blk.Config{Queues: 4}, blk.FeatureMQ, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, newImage(t, disk.FormatQcow2), tc.cfg, 0)
			f := r.drv.DeviceFeatures()
			if f&tc.has != tc.has || f&tc.not != 0 {
				t.Fatalf("features %#x: want %#x set and %#x clear", f, tc.has, tc.not)
			}
			c := r.drv.ReadConfig(0, 60)
			le := binary.LittleEndian
			if got := le.Uint64(c); got != diskSize/512 {
				t.Errorf("capacity %d sectors, want %d", got, diskSize/512)
			}
			if got := le.Uint32(c[20:]); got != 512 {
				t.Errorf("blk_size %d", got)
			}
			if got := le.Uint32(c[12:]); got != blk.DefaultQueueSize-2 {
				t.Errorf("seg_max %d", got)
			}
			if got := le.Uint32(c[28:]); got != (64<<10)/512 {
				t.Errorf("opt_io_size %d blocks, want the cluster size", got)
			}
			queues := max(tc.cfg.Queues, 1)
			if got := le.Uint16(c[34:]); int(got) != queues {
				t.Errorf("num_queues %d, want %d", got, queues)
			}
			if got := r.drv.NumQueues(); got != queues {
				t.Errorf("transport num_queues %d", got)
			}
			if got := le.Uint32(c[44:]); got != (64<<10)/512 {
				t.Errorf("discard_sector_alignment %d", got)
			}
		})
	}
}

func TestReadWrite(t *testing.T) {
	for _, format := range []string{disk.FormatRaw, disk.FormatQcow2} {
		t.Run(format, func(t *testing.T) {
			path := newImage(t, format)
			r := newRig(t, path, blk.Config{}, 0)
			ref := make([]byte, diskSize)
			writes := []struct {
				sector uint64
				n      int
			}{{0, 512}, {1, 4096}, {100, 65536 + 512}, {diskSize/512 - 8, 4096}, {2000, 300 << 10}}
			for i, w := range writes {
				data := pattern(w.n, int64(i))
				r.mustDo(t, request{typ: tOut, sector: w.sector, out: data}, sOK)
				copy(ref[w.sector*512:], data)
			}
			for _, w := range writes {
				got := r.mustDo(t, request{typ: tIn, sector: w.sector, in: w.n}, sOK)
				qemutest.SameBytes(t, fmt.Sprintf("read of sector %d", w.sector), got, ref[w.sector*512:w.sector*512+uint64(w.n)])
			}
			// Never-written space reads as zeros.
			if got := r.mustDo(t, request{typ: tIn, sector: 5000, in: 8192}, sOK); !bytes.Equal(got, make([]byte, 8192)) {
				t.Fatal("unwritten sectors are not zero")
			}
			r.mustDo(t, request{typ: tFlush}, sOK)
			if r.img.flushes.Load() != 1 {
				t.Fatalf("%d image flushes for one FLUSH", r.img.flushes.Load())
			}
			if s := r.dev.Stats(); s.Writes != uint64(len(writes)) || s.Reads != uint64(len(writes))+1 || s.Flushes != 1 {
				t.Errorf("stats %+v", s)
			}
			// After FLUSH another process (QEMU, with -U: the device
			// holds the image's write lock) sees the data in the file,
			// and the image is consistent: the flush wrote it out.
			if format == disk.FormatQcow2 {
				qemutest.Check(t, path, "-U")
			}
			qemutest.SameBytes(t, "QEMU's view of the image", qemutest.Raw(t, path, "-U", "-f", format), ref)
		})
	}
}

func TestRequestErrors(t *testing.T) {
	r := newRig(t, newImage(t, disk.FormatQcow2), blk.Config{}, 0)
	last := uint64(diskSize/512 - 1)
	tests := []struct {
		name string
		req  request
		want byte
	}{
		{"read past the end", request{typ: tIn, sector: last, in: 1024}, sIOErr},
		{"read far past the end", request{typ: tIn, sector: 1 << 60, in: 512}, sIOErr},
		{"write past the end", request{typ: tOut, sector: last, out: make([]byte, 1024)}, sIOErr},
		{"sector overflow", request{typ: tOut, sector: ^uint64(0), out: make([]byte, 512)}, sIOErr},
		{"read of a partial sector", request{typ: tIn, sector: 0, in: 100}, sIOErr},
		{"write of a partial sector", request{typ: tOut, sector: 0, out: make([]byte, 700)}, sIOErr},
		{"short header", request{typ: tIn, in: 512, short: true}, sIOErr},
		{"unknown type", request{typ: 99}, sUnsupp},
		{"get lifetime", request{typ: tGetLifetime, in: 8}, sUnsupp},
		{"discard with unmap", request{typ: tDiscard, out: segment(0, 8, 1)}, sUnsupp},
		{"write zeroes with unknown flags", request{typ: tWriteZeroes, out: segment(0, 8, 2)}, sUnsupp},
		{"discard past the end", request{typ: tDiscard, out: segment(last, 8, 0)}, sIOErr},
		{"discard with a partial segment", request{typ: tDiscard, out: make([]byte, 20)}, sIOErr},
		{"discard with no segment", request{typ: tDiscard}, sIOErr},
		{"discard with too many segments", request{typ: tDiscard, out: make([]byte, 16*(blk.MaxDiscardSegments+1))}, sIOErr},
		{"write zeroes too long", request{typ: tWriteZeroes, out: segment(0, blk.MaxDiscardSectors+1, 0)}, sIOErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.mustDo(t, tc.req, tc.want)
		})
	}
	if r.pci.NeedsReset() {
		t.Fatal("a request error put the device into NEEDS_RESET")
	}
	if s := r.dev.Stats(); s.Errors == 0 || s.Unsupported == 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNoStatusByte(t *testing.T) {
	r := newRig(t, newImage(t, disk.FormatRaw), blk.Config{}, 0)
	r.add(t, 0, request{typ: tFlush, noStatus: true}, false)
	r.drv.Kick(0)
	if err := r.drv.WaitConfigInterrupt(); err != nil {
		t.Fatal(err)
	}
	if !r.pci.NeedsReset() {
		t.Fatal("a request without a status byte did not fail the device")
	}
}

func TestHostIOError(t *testing.T) {
	r := newRig(t, newImage(t, disk.FormatRaw), blk.Config{}, 0)
	r.img.failWrites.Store(true)
	r.mustDo(t, request{typ: tOut, sector: 8, out: pattern(4096, 1)}, sIOErr)
	r.img.failWrites.Store(false)
	r.mustDo(t, request{typ: tOut, sector: 8, out: pattern(4096, 1)}, sOK)
}

func TestGetID(t *testing.T) {
	for _, serial := range []string{"", "disk-1", "12345678901234567890"} {
		r := newRig(t, newImage(t, disk.FormatRaw), blk.Config{Serial: serial}, 0)
		st, data, n := r.do(t, request{typ: tGetID, in: 20})
		if st != sOK || n != 21 {
			t.Fatalf("serial %q: status %d, used %d", serial, st, n)
		}
		want := make([]byte, 20)
		copy(want, serial)
		if !bytes.Equal(data, want) {
			t.Fatalf("GET_ID %q, want %q", data, want)
		}
	}
	if _, err := blk.New(blk.Config{Image: &counting{}, Serial: "123456789012345678901"}); err == nil {
		t.Fatal("a 21-byte serial was accepted")
	}
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	for _, format := range []string{disk.FormatRaw, disk.FormatQcow2} {
		t.Run(format, func(t *testing.T) {
			path := newImage(t, format)
			r := newRig(t, path, blk.Config{}, 0)
			data := pattern(1<<20, 7)
			r.mustDo(t, request{typ: tOut, sector: 0, out: data}, sOK)
			// Zero 64 KiB at 128 KiB (unmapped) and 4 KiB at 512 KiB,
			// in one request; discard the cluster at 768 KiB.
			r.mustDo(t, request{typ: tWriteZeroes, out: append(segment(256, 128, 1), segment(1024, 8, 0)...)}, sOK)
			r.mustDo(t, request{typ: tDiscard, out: segment(1536, 128, 0)}, sOK)
			want := append([]byte(nil), data...)
			clear(want[128<<10 : 192<<10])
			clear(want[512<<10 : 516<<10])
			got := r.mustDo(t, request{typ: tIn, sector: 0, in: 1 << 20}, sOK)
			// Discarded data reads as zeros or as before: both are right.
			disc := got[768<<10 : 832<<10]
			if !bytes.Equal(disc, make([]byte, len(disc))) && !bytes.Equal(disc, data[768<<10:832<<10]) {
				t.Fatal("discarded range reads as neither zeros nor its old data")
			}
			copy(want[768<<10:832<<10], disc)
			qemutest.SameBytes(t, "after write zeroes and discard", got, want)
			r.mustDo(t, request{typ: tFlush}, sOK)
			if format == disk.FormatQcow2 {
				qemutest.Check(t, path, "-U") // the device holds the write lock
			}
			if s := r.dev.Stats(); s.WriteZeroes != 1 || s.Discards != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	path := newImage(t, disk.FormatQcow2)
	{
		r := newRig(t, path, blk.Config{}, 0)
		r.mustDo(t, request{typ: tOut, sector: 0, out: pattern(4096, 3)}, sOK)
		r.mustDo(t, request{typ: tFlush}, sOK)
		r.img.Close() // its write lock would keep the reader out
	}
	before := qemutest.Raw(t, path)
	r := newRig(t, path, blk.Config{ReadOnly: true}, 0)
	if r.drv.Features&blk.FeatureRO == 0 {
		t.Fatal("VIRTIO_BLK_F_RO not negotiated")
	}
	r.mustDo(t, request{typ: tOut, sector: 0, out: make([]byte, 4096)}, sIOErr)
	r.mustDo(t, request{typ: tWriteZeroes, out: segment(0, 8, 0)}, sIOErr)
	r.mustDo(t, request{typ: tDiscard, out: segment(0, 8, 0)}, sIOErr)
	r.mustDo(t, request{typ: tFlush}, sOK)
	got := r.mustDo(t, request{typ: tIn, sector: 0, in: 4096}, sOK)
	qemutest.SameBytes(t, "read-only read", got, pattern(4096, 3))
	qemutest.SameBytes(t, "image after refused writes", qemutest.Raw(t, path), before)
}

func TestCacheModes(t *testing.T) {
	tests := []struct {
		cache        blk.CacheMode
		writeFlushes int64 // image flushes caused by one write
		flushFlushes int64 // by one FLUSH
	}{
		{blk.CacheWriteback, 0, 1},
		{blk.CacheWritethrough, 1, 1},
		{blk.CacheUnsafe, 0, 0},
	}
	for _, tc := range tests {
		t.Run(string(tc.cache), func(t *testing.T) {
			// Accept every offered feature but FLUSH: a driver that
			// sees no FLUSH still sends none, so FLUSH requests are
			// checked separately.
			r := newRig(t, newImage(t, disk.FormatRaw), blk.Config{Cache: tc.cache}, 0)
			r.mustDo(t, request{typ: tOut, sector: 0, out: make([]byte, 512)}, sOK)
			if got := r.img.flushes.Load(); got != tc.writeFlushes {
				t.Fatalf("a write caused %d flushes, want %d", got, tc.writeFlushes)
			}
			r.mustDo(t, request{typ: tFlush}, sOK)
			if got := r.img.flushes.Load() - tc.writeFlushes; got != tc.flushFlushes {
				t.Fatalf("FLUSH caused %d image flushes, want %d", got, tc.flushFlushes)
			}
		})
	}
	if _, err := blk.New(blk.Config{Image: &counting{}, Cache: "directsync"}); err == nil {
		t.Fatal("unknown cache mode accepted")
	}
}

func TestGuardFormat(t *testing.T) {
	r := newRig(t, newImage(t, disk.FormatRaw), blk.Config{GuardFormat: true}, 0)
	hdr := make([]byte, 512)
	copy(hdr, "QFI\xfb")
	r.mustDo(t, request{typ: tOut, sector: 0, out: hdr}, sIOErr)
	r.mustDo(t, request{typ: tOut, sector: 1, out: hdr}, sOK) // elsewhere is fine
	hdr[0] = 'X'
	r.mustDo(t, request{typ: tOut, sector: 0, out: hdr}, sOK)
	if f, err := disk.Detect(r.path); err != nil || f != disk.FormatRaw {
		t.Fatalf("image detected as %q (%v)", f, err)
	}
	// Zeroing sector 0 is allowed (zeros are no header).
	r.mustDo(t, request{typ: tWriteZeroes, out: segment(0, 1, 0)}, sOK)
	r.mustDo(t, request{typ: tDiscard, out: segment(0, 8, 0)}, sOK)
}

// TestGuardFormatLongWrites: a guarded write that starts at sector 0
// and goes on past it writes all its data, whether the image takes
// scattered buffers (pwritev) or one buffer at a time.
func TestGuardFormatLongWrites(t *testing.T) {
	for _, vectored := range []bool{false, true} {
		t.Run(fmt.Sprintf("vectored=%v", vectored), func(t *testing.T) {
			path := newImage(t, disk.FormatRaw)
			var r *rig
			if vectored {
				img, err := disk.OpenRaw(path, false)
				if err != nil {
					t.Fatal(err)
				}
				defer img.Close()
				r = newRigOn(t, img, blk.Config{GuardFormat: true}, 0)
			} else {
				r = newRig(t, path, blk.Config{GuardFormat: true}, 0)
			}
			for _, n := range []int{512, 4096, 300 << 10} {
				data := pattern(n, int64(n))
				data[0] = 'X'
				r.mustDo(t, request{typ: tOut, sector: 0, out: data}, sOK)
				got := r.mustDo(t, request{typ: tIn, sector: 0, in: n}, sOK)
				qemutest.SameBytes(t, fmt.Sprintf("%d bytes written at sector 0", n), got, data)
				copy(data, "QFI\xfb")
				r.mustDo(t, request{typ: tOut, sector: 0, out: data}, sIOErr)
			}
		})
	}
}

// TestConcurrentQueues runs many requests in flight on several queues at
// once: every request completes with its own data.
func TestConcurrentQueues(t *testing.T) {
	path := newImage(t, disk.FormatQcow2)
	const queues, perQueue = 4, 48
	r := newRig(t, path, blk.Config{Queues: queues, QueueSize: 64}, 0)
	type pending struct {
		head, q int
		status  uint64
	}
	var all []pending
	for q := 0; q < queues; q++ {
		for i := 0; i < perQueue; i++ {
			sector := uint64((q*perQueue + i) * 16)
			head, _, status := r.add(t, q, request{typ: tOut, sector: sector, out: pattern(8192, int64(sector))}, true)
			all = append(all, pending{int(head), q, status})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, queues)
	for q := 0; q < queues; q++ {
		r.drv.Kick(q)
	}
	// The driver is single-threaded; collect per queue in turn.
	for q := 0; q < queues; q++ {
		wg.Add(1)
		func() {
			defer wg.Done()
			for i := 0; i < perQueue; i++ {
				if _, err := r.drv.Queues[q].WaitUsed(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, p := range all {
		if st := r.mem.Read(p.status, 1)[0]; st != sOK {
			t.Fatalf("queue %d request %d: status %d", p.q, p.head, st)
		}
	}
	r.mem.Release(r.mark)
	for q := 0; q < queues; q++ {
		for i := 0; i < perQueue; i++ {
			sector := uint64((q*perQueue + i) * 16)
			got := r.mustDo(t, request{typ: tIn, sector: sector, in: 8192}, sOK)
			qemutest.SameBytes(t, fmt.Sprintf("sector %d", sector), got, pattern(8192, int64(sector)))
		}
	}
	r.mustDo(t, request{typ: tFlush}, sOK)
	qemutest.Check(t, path, "-U") // the device holds the write lock
}

func TestResetWaitsForRequests(t *testing.T) {
	r := newRig(t, newImage(t, disk.FormatQcow2), blk.Config{}, 0)
	var statuses []uint64
	for i := 0; i < 40; i++ {
		_, _, st := r.add(t, 0, request{typ: tOut, sector: uint64(i * 128), out: pattern(64<<10, int64(i))}, true)
		statuses = append(statuses, st)
	}
	q := r.drv.Queues[0]
	r.drv.Kick(0)
	if err := r.drv.Reset(); err != nil {
		t.Fatal(err)
	}
	// Reset returned only after every request the device took finished.
	r.img.sealed.Store(true)
	if n := r.img.inFlight.Load(); n != 0 {
		t.Fatalf("%d writes still running after reset", n)
	}
	used := int(q.UsedIdx())
	done := 0
	for _, st := range statuses {
		switch r.mem.Read(st, 1)[0] {
		case sOK:
			done++
		case 0xaa:
		default:
			t.Fatal("a request failed")
		}
	}
	if done != used {
		t.Fatalf("%d requests have a status, %d were used", done, used)
	}
	t.Logf("%d of %d requests completed before the reset", done, len(statuses))
	t.Cleanup(func() {
		if n := r.img.late.Load(); n != 0 {
			t.Errorf("%d writes started after the reset returned", n)
		}
	})
}

func TestStateRoundTrip(t *testing.T) {
	r := newRig(t, newImage(t, disk.FormatRaw), blk.Config{Serial: "s1"}, 0)
	st := r.dev.Save()
	if err := r.dev.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatal(err)
	}
	if got := r.dev.Save(); got != st {
		t.Fatalf("state after restore %+v, want %+v", got, st)
	}
	other := newRig(t, newImage(t, disk.FormatRaw), blk.Config{Serial: "s2"}, 0)
	if err := other.dev.Restore(st); err == nil {
		t.Fatal("restored a state with another serial")
	}
}

// Benchmarks of one request at a time through the device and the Go
// driver, on a qcow2 image.
func BenchmarkRead4K(b *testing.B)  { benchIO(b, tIn, 4096) }
func BenchmarkWrite4K(b *testing.B) { benchIO(b, tOut, 4096) }
func BenchmarkRead1M(b *testing.B)  { benchIO(b, tIn, 1<<20) }
func BenchmarkWrite1M(b *testing.B) { benchIO(b, tOut, 1<<20) }

func benchIO(b *testing.B, typ uint32, n int) { benchIOConfig(b, typ, n, blk.Config{}) }

func benchIOConfig(b *testing.B, typ uint32, n int, cfg blk.Config) {
	path := filepath.Join(b.TempDir(), "bench.qcow2")
	if err := qcow2.Create(path, qcow2.CreateOptions{Size: 64 << 20}); err != nil {
		b.Fatal(err)
	}
	r := newRig(b, path, cfg, 0)
	mem, drv := r.mem, r.drv
	hdr := mem.Alloc(16, 8)
	data := mem.Alloc(uint64(n), 4096)
	status := mem.Alloc(1, 1)
	q := drv.Queues[0]
	sectors := uint64(64<<20-n) / 512
	b.SetBytes(int64(n))
	for i := 0; i < b.N; i++ {
		sector := uint64(i*(n/512)) % sectors
		mem.PutU32(hdr, typ)
		mem.PutU64(hdr+8, sector)
		if _, err := q.Add([]virtiotest.Buf{{Addr: hdr, Len: 16}, {Addr: data, Len: uint32(n), Write: typ == tIn}, {Addr: status, Len: 1, Write: true}}); err != nil {
			b.Fatal(err)
		}
		drv.Kick(0)
		if _, err := q.WaitUsed(); err != nil {
			b.Fatal(err)
		}
	}
}

// disk.Raw moves scattered requests with preadv/pwritev.
var _ blk.Vectored = (*disk.Raw)(nil)

// vectoredRaw counts the vectored calls to a raw image.
type vectoredRaw struct {
	*disk.Raw
	reads, writes atomic.Int64
}

func (v *vectoredRaw) ReadvAt(bufs [][]byte, off int64) (int, error) {
	v.reads.Add(1)
	return v.Raw.ReadvAt(bufs, off)
}

func (v *vectoredRaw) WritevAt(bufs [][]byte, off int64) (int, error) {
	v.writes.Add(1)
	return v.Raw.WritevAt(bufs, off)
}

// TestVectoredImage: with an image that has preadv/pwritev, scattered
// requests go to it in one call each, with the same results.
func TestVectoredImage(t *testing.T) {
	path := newImage(t, disk.FormatRaw)
	img, err := disk.OpenRaw(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := &vectoredRaw{Raw: img}
	r := newRigOn(t, v, blk.Config{}, 0)
	data := pattern(3*4096, 9)
	r.mustDo(t, request{typ: tOut, sector: 16, out: data}, sOK)
	got := r.mustDo(t, request{typ: tIn, sector: 16, in: len(data)}, sOK)
	qemutest.SameBytes(t, "vectored read", got, data)
	if v.reads.Load() != 1 || v.writes.Load() != 1 {
		t.Fatalf("%d vectored reads, %d writes; want 1 each", v.reads.Load(), v.writes.Load())
	}
	onDisk := make([]byte, len(data))
	if _, err := f.ReadAt(onDisk, 16*512); err != nil {
		t.Fatal(err)
	}
	qemutest.SameBytes(t, "the file after a vectored write", onDisk, data)
}

// TestImagesAreVectored: both formats, as disk.Open returns them, move a
// scattered request straight between guest memory and the file.
func TestImagesAreVectored(t *testing.T) {
	for _, format := range []string{disk.FormatRaw, disk.FormatQcow2} {
		img, err := disk.Open(newImage(t, format), disk.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := img.(blk.Vectored); !ok {
			t.Errorf("%s image %T does not implement blk.Vectored", format, img)
		}
		img.Close()
	}
}

// gated is an image whose writes wait for open to be closed, and which
// records how many ran at once.
type gated struct {
	disk.Image
	open          chan struct{}
	mu            sync.Mutex
	running, most int
}

func (g *gated) WriteAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	g.running++
	g.most = max(g.most, g.running)
	g.mu.Unlock()
	<-g.open
	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	return g.Image.WriteAt(p, off)
}

func (g *gated) counts() (running, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.most
}

// TestInFlightBound: a guest that fills a queue with requests gets
// blk.InFlight of them running at once, each with its goroutine and
// staging buffer, not one per request it made available.
func TestInFlightBound(t *testing.T) {
	img, err := disk.Open(newImage(t, disk.FormatRaw), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	g := &gated{Image: img, open: make(chan struct{})}
	r := newRigOn(t, g, blk.Config{}, 0)
	var once sync.Once
	release := func() { once.Do(func() { close(g.open) }) }
	t.Cleanup(release) // before the device's reset, which waits for the writes
	// Every request becomes available at once (one store of the ring's
	// index): made available one by one, the first could be seen alone,
	// and a request with nothing else pending runs inline, blocking the
	// queue's goroutine on the gate.
	const requests = 3 * blk.InFlight
	q := r.drv.Queues[0]
	var idx uint16
	for i := 0; i < requests; i++ {
		bufs, _, _ := r.buffers(request{typ: tOut, sector: uint64(8 * i), out: pattern(4096, int64(i))})
		var err error
		if _, _, idx, err = q.StageIndirect(bufs); err != nil {
			t.Fatal(err)
		}
	}
	q.SetAvailIdx(idx)
	r.drv.Kick(0)
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for n, _ := g.counts(); n < blk.InFlight; n, _ = g.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests running, want %d", n, blk.InFlight)
		}
		time.Sleep(time.Millisecond)
	}
	release()
	for i := 0; i < requests; i++ {
		if _, err := r.drv.Queues[0].WaitUsed(); err != nil {
			t.Fatal(err)
		}
	}
	if _, most := g.counts(); most != blk.InFlight {
		t.Fatalf("%d requests ran at once, want %d", most, blk.InFlight)
	}
}
