package qcow2

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// decompressor turns compressed clusters into data. It keeps the last few
// decompressed clusters, since guests and convert read a compressed
// cluster in several pieces. Safe for concurrent use.
type decompressor struct {
	mu    sync.Mutex
	cache [8]struct {
		off  int64
		data []byte
	}
	next  int
	flate []io.ReadCloser
	zstd  []*zstd.Decoder
}

// cluster returns the decompressed cluster whose compressed stream starts
// at host offset off (n bytes may be read). The result must not be
// modified.
func (d *decompressor) cluster(img *Image, off, n int64) ([]byte, error) {
	d.mu.Lock()
	for _, c := range d.cache {
		if c.data != nil && c.off == off {
			d.mu.Unlock()
			return c.data, nil
		}
	}
	d.mu.Unlock()
	if off >= img.fileSizeSnapshot() {
		return nil, img.errf(ErrCorrupt, "compressed cluster at %#x is past the end of the file", off)
	}
	in := make([]byte, n)
	if err := img.readFull(in, off); err != nil {
		return nil, img.errf(err, "read compressed cluster at %#x", off)
	}
	out := make([]byte, img.g.cs)
	var err error
	if img.hdr.CompressionType == CompressionZstd {
		err = d.inflateZstd(in, out)
	} else {
		err = d.inflateDeflate(in, out)
	}
	if err != nil {
		return nil, img.errf(ErrCorrupt, "decompress cluster at %#x: %v", off, err)
	}
	d.mu.Lock()
	d.cache[d.next].off, d.cache[d.next].data = off, out
	d.next = (d.next + 1) % len(d.cache)
	d.mu.Unlock()
	return out, nil
}

// inflateDeflate decodes a raw deflate stream (no zlib header, as QEMU
// writes it) until out is full.
func (d *decompressor) inflateDeflate(in, out []byte) error {
	d.mu.Lock()
	var r io.ReadCloser
	if k := len(d.flate); k > 0 {
		r, d.flate = d.flate[k-1], d.flate[:k-1]
	}
	d.mu.Unlock()
	if r == nil {
		r = flate.NewReader(bytes.NewReader(in))
	} else if err := r.(flate.Resetter).Reset(bytes.NewReader(in), nil); err != nil {
		return err
	}
	_, err := io.ReadFull(r, out)
	d.mu.Lock()
	d.flate = append(d.flate, r)
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("deflate stream ends before a full cluster: %w", err)
	}
	return nil
}

// inflateZstd decodes zstd frames until out is full. Bytes after that
// (the next compressed cluster sharing the sector) are never parsed.
func (d *decompressor) inflateZstd(in, out []byte) error {
	d.mu.Lock()
	var z *zstd.Decoder
	if k := len(d.zstd); k > 0 {
		z, d.zstd = d.zstd[k-1], d.zstd[:k-1]
	}
	d.mu.Unlock()
	if z == nil {
		var err error
		z, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(4*len(out))+(1<<20)))
		if err != nil {
			return err
		}
	}
	err := z.Reset(bytes.NewReader(in))
	if err == nil {
		_, err = io.ReadFull(z, out)
	}
	d.mu.Lock()
	d.zstd = append(d.zstd, z)
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("zstd stream ends before a full cluster: %w", err)
	}
	return nil
}

// close releases the pooled decoders.
func (d *decompressor) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, z := range d.zstd {
		z.Close()
	}
	d.zstd = nil
	d.flate = nil
	for i := range d.cache {
		d.cache[i].data = nil
	}
}

// invalidate drops cached clusters (their host space may be reused).
func (d *decompressor) invalidate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.cache {
		d.cache[i].data = nil
	}
}

// fileSizeSnapshot returns the file size under mu.
func (img *Image) fileSizeSnapshot() int64 {
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.fileSize
}

// compressor encodes clusters, reusing encoders (a deflate or zstd
// encoder costs far more to set up than to run on one cluster). Safe for
// concurrent use.
type compressor struct {
	mu    sync.Mutex
	flate []*flate.Writer
	zstd  []*zstd.Encoder
}

// compress encodes one cluster with the given compression type. It
// returns nil if compression does not save at least a sector.
func (c *compressor) compress(data []byte, typ uint8) ([]byte, error) {
	var out []byte
	switch typ {
	case CompressionZstd:
		c.mu.Lock()
		var enc *zstd.Encoder
		if k := len(c.zstd); k > 0 {
			enc, c.zstd = c.zstd[k-1], c.zstd[:k-1]
		}
		c.mu.Unlock()
		if enc == nil {
			var err error
			enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
			if err != nil {
				return nil, err
			}
		}
		out = enc.EncodeAll(data, nil)
		c.mu.Lock()
		c.zstd = append(c.zstd, enc)
		c.mu.Unlock()
	default:
		var b bytes.Buffer
		c.mu.Lock()
		var w *flate.Writer
		if k := len(c.flate); k > 0 {
			w, c.flate = c.flate[k-1], c.flate[:k-1]
		}
		c.mu.Unlock()
		if w == nil {
			var err error
			if w, err = flate.NewWriter(&b, flate.DefaultCompression); err != nil {
				return nil, err
			}
		} else {
			w.Reset(&b)
		}
		_, err := w.Write(data)
		if err == nil {
			err = w.Close()
		}
		c.mu.Lock()
		c.flate = append(c.flate, w)
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		out = b.Bytes()
	}
	if len(out) > len(data)-512 {
		return nil, nil
	}
	return out, nil
}

// close releases the pooled encoders.
func (c *compressor) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.zstd {
		e.Close()
	}
	c.zstd, c.flate = nil, nil
}

// WriteCompressed writes one whole cluster at the cluster-aligned guest
// offset off as a compressed cluster (zlib or zstd, per the image), the
// way `qemu-img convert -c` does. Data that does not compress is written
// normally. The last cluster of a disk whose size is not cluster aligned
// may be short. The old contents of the cluster are replaced.
func (img *Image) WriteCompressed(p []byte, off int64) error {
	g := &img.g
	if off < 0 || off%g.cs != 0 {
		return img.errf(ErrRange, "compressed write at %#x is not cluster aligned", off)
	}
	size := img.Size()
	want := min(g.cs, size-off)
	if off >= size || int64(len(p)) != want {
		return img.errf(ErrRange, "compressed write of %d bytes at %#x (must be one whole cluster inside the %d-byte disk)", len(p), off, size)
	}
	data := p
	if int64(len(p)) < g.cs {
		data = make([]byte, g.cs)
		copy(data, p)
	}
	comp, err := img.comp.compress(data, img.hdr.CompressionType)
	if err != nil {
		return img.errf(err, "compress cluster at %#x", off)
	}
	if comp == nil {
		_, err := img.WriteAt(p, off)
		return err
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return err
	}
	gc := off >> g.clusterBits
	for img.isInflight(gc) {
		img.cond.Wait()
	}
	t, err := img.writableL2(g.l1Index(off))
	if err != nil {
		return err
	}
	host, err := img.allocBytes(int64(len(comp)))
	if err != nil {
		return err
	}
	if _, err := img.f.WriteAt(comp, host); err != nil {
		// The bytes stay counted: a leak, never a dangling reference.
		return img.errf(err, "write compressed cluster at %#x", host)
	}
	ci := g.l2Index(off)
	old := g.readL2Entry(t.data, ci)
	g.writeL2Entry(t.data, ci, l2Entry{e: g.compressedEntry(host, int64(len(comp)))})
	img.l2c.setDirty(t)
	img.freeEntryLater(old)
	return nil
}

// allocBytes reserves n bytes for compressed data, packing compressed
// clusters back to back as QEMU does. Each host cluster the bytes touch
// gets one reference. Precondition: mu is held; n <= cluster size.
func (img *Image) allocBytes(n int64) (int64, error) {
	g := &img.g
	cur := img.compCursor
	if cur != 0 && cur%g.cs != 0 {
		// The current cluster takes one more reference only if its
		// refcount has room (1-bit refcounts hold just one).
		if rc, err := img.refcount(cur / g.cs); err != nil {
			return 0, err
		} else if rc >= img.g.maxRefcount() {
			cur = 0
		}
	}
	if cur != 0 && cur%g.cs != 0 && cur+n <= alignUp(cur, g.cs) {
		// Fits in the current cluster.
		if _, err := img.addRefcount(cur/g.cs, 1); err != nil {
			return 0, err
		}
		img.compCursor = cur + n
		return cur, nil
	}
	if cur != 0 && cur%g.cs != 0 {
		// Spill into the next cluster if it can be allocated right after
		// the current one.
		next := alignUp(cur, g.cs) / g.cs
		if next == img.allocEnd && img.freeHint >= img.allocEnd {
			c, k, _, err := img.allocRun(1)
			if err != nil {
				return 0, err
			}
			if c == next && k == 1 {
				if _, err := img.addRefcount(cur/g.cs, 1); err != nil {
					return 0, err
				}
				img.compCursor = cur + n
				return cur, nil
			}
			// Got something else: start the stream there.
			img.compCursor = c*g.cs + n
			return c * g.cs, nil
		}
	}
	c, _, _, err := img.allocRun(1)
	if err != nil {
		return 0, err
	}
	img.compCursor = c*g.cs + n
	return c * g.cs, nil
}
