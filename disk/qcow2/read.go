package qcow2

import (
	"errors"
	"fmt"
	"io"
)

// Mapping describes how one contiguous guest range is stored in this
// image layer. Metadata code produces mappings; the I/O code acts on them.
type Mapping struct {
	Offset int64 // guest offset
	Length int64
	Kind   Kind
	// Host is the host offset of Offset for KindData, and of the start of
	// the compressed stream for KindCompressed.
	Host int64
	// CompressedLen is how many bytes to read at Host (KindCompressed).
	CompressedLen int64
}

// mapLocked returns the mapping of the longest range starting at off, at
// most max bytes, that has one kind (and, for data, contiguous host
// offsets), looking it up in the L1 table l1. It never crosses an L2 table.
// Precondition: mu is held.
func (img *Image) mapLocked(l1 []uint64, off, max int64) (Mapping, error) {
	g := &img.g
	m := Mapping{Offset: off, Kind: KindUnallocated}
	l1i := g.l1Index(off)
	span := int64(1) << (g.clusterBits + g.l2Bits) // guest bytes per L2 table
	tableEnd := (l1i + 1) * span
	max = min(max, tableEnd-off)
	if l1i >= int64(len(l1)) || l1[l1i]&l1OffsetMask == 0 {
		m.Length = max
		return m, nil
	}
	t, err := img.l2Table(l1[l1i])
	if err != nil {
		return m, err
	}
	ci := g.l2Index(off)
	gc := off >> g.clusterBits
	le := g.readL2Entry(t.data, ci)
	if err := g.validateL2(le, gc); err != nil {
		return m, img.errf(err, "L2 table at %#x", t.off)
	}
	inCluster := off & (g.cs - 1)
	unit := int(inCluster >> g.unitBits)
	kind, n := g.unitRun(le, unit, g.units)
	m.Kind = kind
	m.Length = min(max, int64(unit+n)<<g.unitBits-inCluster)
	switch kind {
	case KindCompressed:
		m.Host, m.CompressedLen = g.compressedRange(le.e)
		return m, nil
	case KindData:
		h := hostCluster(le.e)
		if h >= img.fileSize {
			return m, img.errf(ErrCorrupt, "guest cluster %d maps to %#x, past the end of the file", gc, h)
		}
		m.Host = h + inCluster
	}
	// Extend the run over following clusters of the same kind.
	for unit+n == g.units && m.Length < max {
		ci++
		gc++
		if ci >= g.l2Entries {
			break
		}
		le = g.readL2Entry(t.data, ci)
		if err := g.validateL2(le, gc); err != nil {
			return m, img.errf(err, "L2 table at %#x", t.off)
		}
		k2, n2 := g.unitRun(le, 0, g.units)
		if k2 != kind || kind == KindCompressed {
			break
		}
		if kind == KindData && hostCluster(le.e) != m.Host+m.Length {
			break
		}
		if kind == KindData && hostCluster(le.e) >= img.fileSize {
			break // reported when the run reaches it
		}
		unit, n = 0, n2
		m.Length = min(max, m.Length+int64(n2)<<g.unitBits)
	}
	return m, nil
}

// ReadAt reads len(p) bytes of the virtual disk at off. Reads past the end
// of the disk return io.EOF with the bytes that exist.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	n, eof := img.clipRead(off, int64(len(p)))
	if n == 0 {
		return 0, eof
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	if err := img.readRange(nil, p[:n], off, false); err != nil {
		return 0, err
	}
	return int(n), eof
}

// clipRead limits a read of n bytes at off to the disk. It returns how
// many bytes to read, with io.EOF when the read reaches past the end; 0
// bytes with an error for a read that cannot start.
func (img *Image) clipRead(off, n int64) (int64, error) {
	if off < 0 {
		return 0, img.errf(ErrRange, "read at negative offset %d", off)
	}
	size := img.Size()
	switch {
	case n == 0:
		return 0, nil
	case off >= size:
		return 0, io.EOF
	case n > size-off:
		return size - off, io.EOF
	}
	return n, nil
}

// ErrRange reports an access outside the virtual disk.
var ErrRange = errors.New("access outside the disk")

// readRange reads p at guest offset off through the L1 table view (nil:
// the active one). zeroUnalloc makes unallocated ranges read as zeros
// instead of falling through to the backing file (VM state).
// Precondition: gate is read-locked.
func (img *Image) readRange(view []uint64, p []byte, off int64, zeroUnalloc bool) error {
	for len(p) > 0 {
		img.mu.Lock()
		if err := img.usable(); err != nil {
			img.mu.Unlock()
			return err
		}
		l1 := view
		if l1 == nil {
			l1 = img.l1
		}
		m, err := img.mapLocked(l1, off, int64(len(p)))
		img.mu.Unlock()
		if err != nil {
			return err
		}
		if err := img.readMapping(m, p[:m.Length], zeroUnalloc); err != nil {
			return err
		}
		p = p[m.Length:]
		off += m.Length
	}
	return nil
}

// readMapping reads the guest bytes described by m into p (len(p) ==
// m.Length). zeroUnalloc makes unallocated ranges read as zeros.
func (img *Image) readMapping(m Mapping, p []byte, zeroUnalloc bool) error {
	switch m.Kind {
	case KindZero:
		clear(p)
	case KindUnallocated:
		if zeroUnalloc {
			clear(p)
			return nil
		}
		return img.readBacking(p, m.Offset)
	case KindData:
		if err := img.readFull(p, m.Host); err != nil {
			return img.errf(err, "read data at host offset %#x", m.Host)
		}
	case KindCompressed:
		data, err := img.dec.cluster(img, m.Host, m.CompressedLen)
		if err != nil {
			return err
		}
		copy(p, data[m.Offset&(img.g.cs-1):])
	default:
		return fmt.Errorf("qcow2: internal error: mapping kind %d", m.Kind)
	}
	return nil
}

// readBacking reads guest range [off, off+len(p)) from the backing file;
// bytes beyond it (or without one) read as zeros.
func (img *Image) readBacking(p []byte, off int64) error {
	b := img.backing
	if b == nil {
		clear(p)
		return nil
	}
	bsize := b.Size()
	if off >= bsize {
		clear(p)
		return nil
	}
	n := min(int64(len(p)), bsize-off)
	got, err := b.ReadAt(p[:n], off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("qcow2: %s: read backing file at %#x: %w", img.path, off, err)
		}
		clear(p[got:n])
	}
	clear(p[n:])
	return nil
}
