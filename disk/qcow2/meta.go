package qcow2

import (
	"encoding/binary"
	"errors"
)

// Metadata I/O: loading L2 tables, write-back in crash-safe order, header
// updates. Every function here requires mu to be held unless it says
// otherwise.

func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// l2Table returns the cached L2 table an L1 entry points to, loading it,
// or nil if the entry is unallocated.
func (img *Image) l2Table(l1e uint64) (*cacheEntry, error) {
	off := int64(l1e & l1OffsetMask)
	if off == 0 {
		return nil, nil
	}
	if e := img.l2c.get(off); e != nil {
		return e, nil
	}
	if off%img.g.cs != 0 || off >= img.fileSize {
		return nil, img.errf(ErrCorrupt, "L1 entry %#016x points to an unaligned L2 table or past the end of the file", l1e)
	}
	if what := img.fixedMetadataAt(off); what != "" {
		return nil, img.errf(ErrCorrupt, "L1 entry %#016x points to an L2 table overlapping %s", l1e, what)
	}
	if _, ok := img.rbSet.overlapping(off, img.g.cs, img.g.cs); ok {
		return nil, img.errf(ErrCorrupt, "L1 entry %#016x points to an L2 table on a refcount block", l1e)
	}
	buf := make([]byte, img.g.cs)
	if err := img.readFull(buf, off); err != nil {
		return nil, img.errf(err, "read L2 table at %#x", off)
	}
	if err := img.makeRoom(img.l2c); err != nil {
		return nil, err
	}
	return img.l2c.insert(off, buf), nil
}

// makeRoom evicts entries until c has room for one more. Dirty L2 tables
// are written back (in order, after the refcounts) before eviction; dirty
// refcount blocks can be written at any time.
func (img *Image) makeRoom(c *tableCache) error {
	for len(c.m) >= c.max {
		v := c.victim()
		if v == nil {
			var err error
			if c == img.l2c {
				err = img.writeBackLocked()
			} else {
				_, err = img.writeRefBlocks()
			}
			if err != nil {
				return err
			}
			if v = c.victim(); v == nil {
				return nil // everything pinned: grow past the limit
			}
		}
		c.remove(v)
	}
	return nil
}

// writeMeta writes a metadata buffer; a failure breaks the image, since
// memory and disk may now disagree.
func (img *Image) writeMeta(buf []byte, off int64, what string) error {
	if _, err := img.f.WriteAt(buf, off); err != nil {
		img.broken = img.errf(err, "write %s at %#x", what, off)
		return img.broken
	}
	return nil
}

// sync is the write barrier between dependent metadata writes.
func (img *Image) sync() error {
	if err := img.f.Sync(); err != nil {
		img.broken = img.errf(err, "sync")
		return img.broken
	}
	return nil
}

// writeRefBlocks writes every dirty refcount block and reports whether it
// wrote any.
func (img *Image) writeRefBlocks() (bool, error) {
	dirty := img.rbc.dirtyEntries()
	for _, e := range dirty {
		if err := img.writeMeta(e.data, e.off, "refcount block"); err != nil {
			return false, err
		}
		img.rbc.setClean(e)
	}
	return len(dirty) > 0, nil
}

// writeBackLocked writes all dirty metadata in dependency order (see the
// package documentation): refcount blocks, then the refcount table entries
// that point to new blocks, then L2 tables, then the L1 table, with a
// barrier before each level that depends on the previous one. The barrier
// before the L2 tables also makes all guest data written so far durable,
// which orders data before the mappings that expose it.
func (img *Image) writeBackLocked() error {
	wrote, err := img.writeRefBlocks()
	if err != nil {
		return err
	}
	if img.rtDirtyLo < img.rtDirtyHi {
		if wrote {
			if err := img.sync(); err != nil {
				return err
			}
		}
		if err := img.writeTableRange(img.rt, img.rtDirtyLo, img.rtDirtyHi, int64(img.hdr.RefcountTableOffset), "refcount table"); err != nil {
			return err
		}
		img.rtDirtyLo, img.rtDirtyHi = 0, 0
	}
	l2Dirty := img.l2c.dirtyEntries()
	l1Dirty := img.l1DirtyLo < img.l1DirtyHi
	if len(l2Dirty) == 0 && !l1Dirty {
		return nil
	}
	if err := img.sync(); err != nil {
		return err
	}
	for _, e := range l2Dirty {
		if err := img.writeMeta(e.data, e.off, "L2 table"); err != nil {
			return err
		}
		img.l2c.setClean(e)
	}
	if l1Dirty {
		if len(l2Dirty) > 0 {
			if err := img.sync(); err != nil {
				return err
			}
		}
		if err := img.writeTableRange(img.l1, img.l1DirtyLo, img.l1DirtyHi, int64(img.hdr.L1TableOffset), "L1 table"); err != nil {
			return err
		}
		img.l1DirtyLo, img.l1DirtyHi = 0, 0
	}
	return nil
}

// writeTableRange writes entries [lo, hi) of an in-memory table stored at
// base.
func (img *Image) writeTableRange(t []uint64, lo, hi, base int64, what string) error {
	buf := make([]byte, (hi-lo)*8)
	for i := lo; i < hi; i++ {
		binary.BigEndian.PutUint64(buf[(i-lo)*8:], t[i])
	}
	return img.writeMeta(buf, base+lo*8, what)
}

// markL1Dirty records that L1 entry i changed.
func (img *Image) markL1Dirty(i int64) { extendRange(&img.l1DirtyLo, &img.l1DirtyHi, i) }

// extendRange grows the half-open range [*lo, *hi) (empty when equal) to
// include i.
func extendRange(lo, hi *int64, i int64) {
	if *lo == *hi {
		*lo, *hi = i, i+1
		return
	}
	*lo = min(*lo, i)
	*hi = max(*hi, i+1)
}

// flushLocked writes back metadata, makes everything durable and, if
// release is set, applies pending frees. Precondition: mu is held and, if
// release, no guest request is running (gate is write-locked).
func (img *Image) flushLocked(release bool) error {
	if img.ro {
		return nil
	}
	if err := img.writable(); err != nil {
		return err
	}
	n := len(img.pendingFree)
	if err := img.writeBackLocked(); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	if !release || n == 0 {
		return nil
	}
	if err := img.releaseFrees(n); err != nil {
		return err
	}
	// Write the decrements now, so a clean close leaves no leaks.
	if _, err := img.writeRefBlocks(); err != nil {
		return err
	}
	return img.sync()
}

// Flush makes every write that completed before the call durable.
func (img *Image) Flush() error {
	img.flushMu.Lock()
	defer img.flushMu.Unlock()
	img.mu.Lock()
	if err := img.usable(); err != nil || img.ro {
		img.mu.Unlock()
		return err
	}
	if err := img.writable(); err != nil {
		img.mu.Unlock()
		return err
	}
	n := len(img.pendingFree)
	err := img.writeBackLocked()
	img.mu.Unlock()
	if err != nil {
		return err
	}
	// The final barrier runs without mu, so requests proceed meanwhile.
	if err := img.f.Sync(); err != nil {
		img.mu.Lock()
		img.broken = img.errf(err, "sync")
		img.mu.Unlock()
		return img.broken
	}
	if n == 0 {
		return nil
	}
	// The tables that dropped these references are durable. Wait for
	// every request that might still read the old clusters, then free.
	img.gate.Lock()
	img.gate.Unlock() //nolint:staticcheck // empty critical section: a drain barrier
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.releaseFrees(n)
}

// writeHeaderLocked rewrites the fixed header fields. They fit in the
// first sector, which the disk writes atomically.
func (img *Image) writeHeaderLocked() error {
	return img.writeMeta(img.hdr.Marshal(), 0, "header")
}

// buildHeaderCluster encodes the whole header cluster: fixed header,
// extensions, backing file name. It fails if they do not fit.
func buildHeaderCluster(h *Header, exts []Extension, backing string, cs int64) ([]byte, error) {
	fixed := h.Marshal()
	ext := marshalExtensions(exts)
	need := int64(len(fixed)+len(ext)) + int64(len(backing))
	if need > cs {
		return nil, errors.New("header, extensions and backing file name do not fit in one cluster")
	}
	buf := make([]byte, cs)
	copy(buf, fixed)
	copy(buf[len(fixed):], ext)
	if backing != "" {
		off := len(fixed) + len(ext)
		copy(buf[off:], backing)
		binary.BigEndian.PutUint64(buf[8:], uint64(off))
		binary.BigEndian.PutUint32(buf[16:], uint32(len(backing)))
	}
	return buf, nil
}

// rewriteHeaderClusterLocked writes the header cluster with new extensions
// and backing file name (rebase, autoclear bits). Only offline operations
// use it: the multi-sector write is not atomic.
func (img *Image) rewriteHeaderClusterLocked(exts []Extension, backing string) error {
	h := img.hdr
	h.BackingFileOffset, h.BackingFileSize = 0, 0
	buf, err := buildHeaderCluster(&h, exts, backing, img.g.cs)
	if err != nil {
		return img.errf(ErrUnsupported, "%s", err.Error())
	}
	if backing != "" {
		h.BackingFileOffset = be64(buf[8:])
		h.BackingFileSize = be32(buf[16:])
	}
	if err := img.writeMeta(buf, 0, "header cluster"); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	img.hdr = h
	img.exts = exts
	img.backingName = backing
	return nil
}

// markCorrupt sets the corrupt bit (version 3) after paddock found
// metadata that would make a write destroy data, and refuses further
// writes. It returns the error to report.
func (img *Image) markCorrupt(err error) error {
	if img.hdr.Version >= 3 && img.hdr.IncompatibleFeatures&IncompatCorrupt == 0 {
		img.hdr.IncompatibleFeatures |= IncompatCorrupt
		if img.writeHeaderLocked() == nil {
			_ = img.f.Sync()
		}
	}
	img.broken = err
	return err
}
