package qcow2

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Vectored I/O: a guest request arrives scattered over many buffers
// (Linux sends a virtio-blk request as a page or a few per segment).
// ReadvAt and WritevAt move data clusters straight between those buffers
// and the file with one preadv/pwritev per contiguous host range, where
// ReadAt and WriteAt would need the request copied into one buffer first.
// Everything else (zeros, compressed clusters, the backing file,
// allocating writes) takes the same paths as ReadAt and WriteAt.

// iov is a cursor over a list of buffers taken as one byte sequence.
type iov struct {
	bufs  [][]byte
	total int64
	// idx and base remember where the last pieces call started (bufs[idx]
	// begins at byte base), so that calls moving forward through the
	// sequence cost O(buffers) in all rather than each.
	idx  int
	base int64
	// Scratch for pieces, reused by each call.
	scratch [][]byte
}

func newIOV(bufs [][]byte) *iov {
	v := &iov{bufs: bufs}
	for _, b := range bufs {
		v.total += int64(len(b))
	}
	return v
}

// pieces returns the sub-slices covering bytes [from, from+n) of the
// sequence. The result is valid until the next call.
func (v *iov) pieces(from, n int64) [][]byte {
	if from < v.base {
		v.idx, v.base = 0, 0
	}
	for v.idx < len(v.bufs) && v.base+int64(len(v.bufs[v.idx])) <= from {
		v.base += int64(len(v.bufs[v.idx]))
		v.idx++
	}
	out := v.scratch[:0]
	from -= v.base
	for _, b := range v.bufs[v.idx:] {
		if n == 0 {
			break
		}
		if take := min(int64(len(b))-from, n); take > 0 {
			out = append(out, b[from:from+take])
			n -= take
		}
		from = 0
	}
	v.scratch = out
	return out
}

// scatter copies src into bytes [from, from+len(src)) of the sequence.
func (v *iov) scatter(src []byte, from int64) {
	for _, b := range v.pieces(from, int64(len(src))) {
		src = src[copy(b, src):]
	}
}

// gather copies bytes [from, from+len(dst)) of the sequence into dst.
func (v *iov) gather(dst []byte, from int64) {
	for _, b := range v.pieces(from, int64(len(dst))) {
		dst = dst[copy(dst, b):]
	}
}

// vecStage holds the buffers that ReadvAt reads anything but plain data
// into, and WritevAt gathers allocating writes into.
var vecStage = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// ReadvAt reads into bufs, in order, from guest offset off, as ReadAt
// would into one buffer of their total size (io.EOF past the end of the
// disk, with the count of bytes that exist).
func (img *Image) ReadvAt(bufs [][]byte, off int64) (int, error) {
	v := newIOV(bufs)
	n, eof := img.clipRead(off, v.total)
	if n == 0 {
		return 0, eof
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	vr, _ := img.f.(vectorReader)
	for pos := int64(0); pos < n; {
		img.mu.Lock()
		if err := img.usable(); err != nil {
			img.mu.Unlock()
			return 0, err
		}
		m, err := img.mapLocked(img.l1, off+pos, n-pos)
		img.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if m.Kind == KindData && vr != nil {
			if err := readVec(vr, v.pieces(pos, m.Length), m.Host); err != nil {
				return 0, img.errf(err, "read data at host offset %#x", m.Host)
			}
		} else if err := img.readvMapping(v, pos, m); err != nil {
			return 0, err
		}
		pos += m.Length
	}
	return int(n), eof
}

// readvMapping reads mapping m into bytes [pos, pos+m.Length) of v
// through a staging buffer, a piece of at most its size at a time: one
// read of the backing file, say, instead of one per guest buffer.
func (img *Image) readvMapping(v *iov, pos int64, m Mapping) error {
	sp := vecStage.Get().(*[]byte)
	defer vecStage.Put(sp)
	for at := int64(0); at < m.Length; {
		sub := m
		sub.Offset += at
		sub.Length = min(int64(len(*sp)), m.Length-at)
		if m.Kind == KindData {
			sub.Host += at
		}
		chunk := (*sp)[:sub.Length]
		if err := img.readMapping(sub, chunk, false); err != nil {
			return err
		}
		v.scatter(chunk, pos+at)
		at += sub.Length
	}
	return nil
}

// readVec fills bufs from the file at off; a range past the end of the
// file reads as zeros, as readFull does.
func readVec(vr vectorReader, bufs [][]byte, off int64) error {
	n, err := vr.ReadVecAt(bufs, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var want int64
	for _, b := range bufs {
		want += int64(len(b))
	}
	if int64(n) == want {
		return nil
	}
	if n == 0 && want > 0 {
		return fmt.Errorf("offset %#x is past the end of the file: %w", off, io.ErrUnexpectedEOF)
	}
	skip := int64(n)
	for _, b := range bufs {
		if skip >= int64(len(b)) {
			skip -= int64(len(b))
			continue
		}
		clear(b[skip:])
		skip = 0
	}
	return nil
}

// WritevAt writes bufs, in order, at guest offset off, as WriteAt would
// write one buffer of their total size.
func (img *Image) WritevAt(bufs [][]byte, off int64) (int, error) {
	v := newIOV(bufs)
	size := img.Size()
	if off < 0 || off > size || v.total > size-off {
		return 0, img.errf(ErrRange, "write of %d bytes at %#x outside the %d-byte disk", v.total, off, size)
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	vw, _ := img.f.(vectorWriter)
	for pos := int64(0); pos < v.total; {
		img.mu.Lock()
		if err := img.writable(); err != nil {
			img.mu.Unlock()
			return 0, err
		}
		host, n, err := img.inPlaceLocked(off+pos, v.total-pos)
		img.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if n > 0 && vw != nil {
			if _, err := vw.WriteVecAt(v.pieces(pos, n), host); err != nil {
				return 0, img.errf(err, "write data at host offset %#x", host)
			}
			pos += n
			continue
		}
		// Allocation (or a store without pwritev): gather what one
		// step can take and write it as WriteAt does.
		sp := vecStage.Get().(*[]byte)
		chunk := (*sp)[:min(int64(len(*sp)), v.total-pos)]
		v.gather(chunk, pos)
		n, err = img.writeStep(chunk, off+pos)
		vecStage.Put(sp)
		if err != nil {
			return 0, err
		}
		pos += n
	}
	return int(v.total), nil
}

// vectorReader is implemented by stores that can read several buffers
// from consecutive offsets in one call (preadv).
type vectorReader interface {
	ReadVecAt(bufs [][]byte, off int64) (int, error)
}
