package qcow2

import (
	"encoding/binary"
	"errors"
)

// ErrShrink reports a resize that would discard data and was not allowed
// to (see Resize's allowShrink).
var ErrShrink = errors.New("shrinking discards the data past the new end")

// Resize changes the virtual size. Shrinking discards everything past the
// new end and needs allowShrink (like `qemu-img resize --shrink`); it is
// refused while internal snapshots exist. The caller must not run
// requests concurrently with a shrink that they might still address.
func (img *Image) Resize(size int64, allowShrink bool) error {
	release := img.quiesce()
	defer release()
	if err := img.writable(); err != nil {
		return err
	}
	g := &img.g
	old := img.Size()
	if size < 0 || uint64(size) > maxVirtualSize(g.clusterBits, g.l2Bits) {
		return img.failf("size %d is outside 0..%d for %d-byte clusters", size, maxVirtualSize(g.clusterBits, g.l2Bits), g.cs)
	}
	if size < old {
		if !allowShrink {
			return img.errf(ErrShrink, "resize from %d to %d bytes", old, size)
		}
		if len(img.snaps) > 0 {
			return img.errf(errShrinkSnapshots, "resize")
		}
		if err := img.shrinkLocked(size); err != nil {
			return err
		}
	}
	// Snapshots without a recorded disk size implicitly have the current
	// one: record it before it changes.
	for _, s := range img.snaps {
		if !s.hasDiskSize {
			if err := img.writeSnapshotTableLocked(img.snaps); err != nil {
				return err
			}
			break
		}
	}
	need := int64(l1EntriesFor(uint64(size), g.clusterBits, g.l2Bits))
	if need > int64(len(img.l1)) {
		if err := img.growL1Locked(need); err != nil {
			return err
		}
	}
	img.hdr.Size = uint64(size)
	if err := img.writeHeaderLocked(); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	img.size.Store(size)
	return nil
}

// shrinkLocked unmaps every guest cluster at or after the one containing
// byte size, frees L2 tables that map nothing below size, and makes the
// change durable. Precondition: mu is held; no request is running.
func (img *Image) shrinkLocked(size int64) error {
	g := &img.g
	firstGC := (size + g.cs - 1) / g.cs
	walked := map[int64]bool{}
	for l1i := range img.l1 {
		tableStart := int64(l1i) << g.l2Bits
		if tableStart+g.l2Entries <= firstGC || img.l1[l1i]&l1OffsetMask == 0 {
			continue
		}
		if tableStart >= firstGC {
			// Whole table past the end: drop every mapping and the table.
			if err := img.freeTableEntriesOnce(img.l1[l1i], walked); err != nil {
				return err
			}
			off := int64(img.l1[l1i] & l1OffsetMask)
			if t := img.l2c.m[off]; t != nil && t.pin == 0 {
				img.l2c.remove(t)
			}
			img.freeLater(off / g.cs)
			img.clearL1(int64(l1i))
			continue
		}
		t, err := img.writableL2(int64(l1i))
		if err != nil {
			return err
		}
		for i := firstGC - tableStart; i < g.l2Entries; i++ {
			le := g.readL2Entry(t.data, i)
			img.freeEntryLater(le)
			g.writeL2Entry(t.data, i, l2Entry{})
		}
		img.l2c.setDirty(t)
	}
	img.reindexL1()
	// The new mappings must be durable before the header shrinks and the
	// clusters are freed.
	return img.flushLocked(true)
}

// growL1Locked moves the active L1 table to a larger copy with n entries.
// Precondition: mu is held; no request is running.
func (img *Image) growL1Locked(n int64) error {
	g := &img.g
	if n*8 > maxL1Bytes {
		return img.errf(ErrRange, "L1 table of %d entries exceeds the 32 MiB limit", n)
	}
	// Dirty L2 tables and L1 entries go to their current places first.
	if err := img.writeBackLocked(); err != nil {
		return err
	}
	clusters := alignUp(n*8, g.cs) / g.cs
	saved := img.freeHint
	img.freeHint = img.allocEnd // contiguous, at the end
	first, got, _, err := img.allocRun(clusters)
	img.freeHint = min(saved, img.freeHint)
	if err != nil {
		return err
	}
	if got != clusters {
		return img.errf(ErrCorrupt, "could not allocate %d contiguous clusters for the L1 table", clusters)
	}
	l1 := make([]uint64, n)
	copy(l1, img.l1)
	buf := make([]byte, clusters*g.cs)
	for i, v := range l1 {
		binary.BigEndian.PutUint64(buf[i*8:], v)
	}
	if _, err := img.writeRefBlocks(); err != nil {
		return err
	}
	if err := img.writeMeta(buf, first*g.cs, "L1 table"); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	oldOff, oldN := int64(img.hdr.L1TableOffset), int64(len(img.l1))
	img.hdr.L1TableOffset = uint64(first * g.cs)
	img.hdr.L1Size = uint32(n)
	if err := img.writeHeaderLocked(); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	img.setL1Table(l1)
	img.l1DirtyLo, img.l1DirtyHi = 0, 0
	if oldN > 0 && oldOff != 0 {
		for c := oldOff / g.cs; c < alignUp(oldOff+oldN*8, g.cs)/g.cs; c++ {
			if _, err := img.addRefcount(c, -1); err != nil {
				return err
			}
		}
	}
	return nil
}
