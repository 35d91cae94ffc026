package qcow2

import (
	"encoding/binary"
	"fmt"
)

// RepairMode selects what Check repairs.
type RepairMode int

const (
	// RepairNone only reports.
	RepairNone RepairMode = iota
	// RepairLeaks lowers refcounts that exceed the references (always
	// safe: those clusters only become free).
	RepairLeaks
	// RepairAll also rebuilds the refcount structures when refcounts are
	// too low, fixes COPIED flags, and clears the corrupt bit once the
	// image is consistent.
	RepairAll
)

// CheckResult is the outcome of Check, with the same counters as
// `qemu-img check`.
type CheckResult struct {
	Corruptions int
	Leaks       int
	CheckErrors int
	// FlagErrors is the part of Corruptions that are COPIED flags not
	// matching the refcount: harmless for data (paddock derives
	// ownership from the refcount when the flag is clear), left by a
	// crash during a snapshot operation, repaired by RepairAll.
	FlagErrors         int
	CorruptionsFixed   int
	LeaksFixed         int
	ImageEndOffset     int64
	TotalClusters      int64 // guest clusters
	AllocatedClusters  int64
	FragmentedClusters int64
	CompressedClusters int64
	// Messages has one line per problem found or fixed, up to
	// maxCheckMessages; then a last line says that more were counted.
	Messages []string
	// Unlisted counts the problems beyond maxCheckMessages, which are in
	// the counters but not in Messages.
	Unlisted int
}

// maxCheckMessages bounds Messages: a damaged or hostile image can have a
// problem in every cluster of a large sparse file, and the counters say
// how many there are.
const maxCheckMessages = 10000

// note records one problem's message, or counts it once Messages is full.
func (res *CheckResult) note(msg string) {
	switch {
	case len(res.Messages) < maxCheckMessages:
		res.Messages = append(res.Messages, msg)
	case res.Unlisted == 0:
		res.Messages = append(res.Messages, fmt.Sprintf("further problems are counted but not listed (more than %d)", maxCheckMessages))
		fallthrough
	default:
		res.Unlisted++
	}
}

// maxCheckClusters bounds the in-memory reference table of a check.
const maxCheckClusters = 1 << 28

// refTable counts references per host cluster during a check.
type refTable struct {
	refs []uint32
	res  *CheckResult
	cs   int64
}

// inc counts one reference to each cluster in [off, off+n).
func (r *refTable) inc(off, n int64, what string) { r.incBy(off, n, what, 1) }

// incBy counts times references to each cluster in [off, off+n).
func (r *refTable) incBy(off, n int64, what string, times int64) {
	if n <= 0 {
		return
	}
	if off < 0 || off > int64(len(r.refs))*r.cs {
		r.errorf("%s at %#x is past the end of the file", what, uint64(off))
		return
	}
	first, last := off/r.cs, (off+n-1)/r.cs
	for c := first; c <= last; c++ {
		if c >= int64(len(r.refs)) {
			r.res.Corruptions++
			r.res.note(fmt.Sprintf("ERROR %s at %#x is past the end of the file", what, c*r.cs))
			return
		}
		r.refs[c] = uint32(min(int64(r.refs[c])+times, int64(^uint32(0))))
	}
}

func (r *refTable) errorf(format string, args ...any) {
	r.res.Corruptions++
	r.res.note("ERROR " + fmt.Sprintf(format, args...))
}

// Check verifies that every cluster's refcount equals the number of
// references to it and that the active tables' COPIED flags are exact,
// optionally repairing. It waits for in-flight requests and flushes
// first. Repairs need a writable image.
func (img *Image) Check(mode RepairMode) (*CheckResult, error) {
	release := img.quiesce()
	defer release()
	if err := img.usable(); err != nil {
		return nil, err
	}
	if mode != RepairNone {
		if err := img.writable(); err != nil {
			return nil, err
		}
	}
	if !img.ro {
		if err := img.flushLocked(true); err != nil {
			return nil, err
		}
	}
	res, r, low, copiedBad, err := img.scan()
	if err != nil {
		return nil, err
	}
	flagged := img.hdr.IncompatibleFeatures&(IncompatCorrupt|IncompatDirty) != 0
	if mode == RepairNone || (res.Corruptions+res.Leaks == 0 && !(mode == RepairAll && flagged)) {
		return res, nil
	}
	switch {
	case mode == RepairAll && low > 0:
		if _, err := img.rebuildRefcountsLocked(); err != nil {
			return res, err
		}
		res.note("Rebuilt the refcount structures")
		img.checkCopied(res, true)
	case res.Leaks > 0:
		if _, err := img.fixLeaks(r); err != nil {
			return res, err
		}
		if mode == RepairAll && copiedBad > 0 {
			img.checkCopied(res, true)
		}
	case mode == RepairAll && copiedBad > 0:
		img.checkCopied(res, true)
	}
	if err := img.flushLocked(false); err != nil {
		return res, err
	}
	// Check again: what was fixed is what is gone.
	after, _, _, _, err := img.scan()
	if err != nil {
		return res, err
	}
	res.LeaksFixed = max(0, res.Leaks-after.Leaks)
	res.CorruptionsFixed = max(0, res.Corruptions-after.Corruptions)
	if mode == RepairAll && after.Corruptions == 0 && img.hdr.IncompatibleFeatures&(IncompatCorrupt|IncompatDirty) != 0 {
		img.hdr.IncompatibleFeatures &^= IncompatCorrupt | IncompatDirty
		if err := img.writeHeaderLocked(); err != nil {
			return res, err
		}
		if err := img.sync(); err != nil {
			return res, err
		}
		img.broken = nil
	}
	return res, nil
}

// scan counts the references and compares them with the refcounts and
// the COPIED flags. It returns the result, the counted references, how
// many refcounts are too low and how many flags are wrong.
func (img *Image) scan() (*CheckResult, *refTable, int, int, error) {
	res := &CheckResult{}
	r, err := img.countRefs(res, true)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	low := img.compareRefs(r)
	copiedBad := img.checkCopied(res, false)
	return res, r, low, copiedBad, nil
}

// countRefs walks every structure that references clusters and counts the
// references. withRefStructs includes the refcount table and blocks
// themselves (a rebuild leaves them out: it replaces them).
func (img *Image) countRefs(res *CheckResult, withRefStructs bool) (*refTable, error) {
	g := &img.g
	n := alignUp(img.fileSize, g.cs) / g.cs
	if n > maxCheckClusters {
		return nil, img.errf(ErrUnsupported, "file too large to check (%d clusters)", n)
	}
	r := &refTable{refs: make([]uint32, n), res: res, cs: g.cs}
	r.inc(0, g.cs, "header")
	res.TotalClusters = (img.Size() + g.cs - 1) / g.cs
	// Every L1 table first, the active one and the snapshots': each entry
	// is one reference to an L2 table. Then each distinct L2 table is
	// walked once, its references counted as many times as L1 entries
	// point to it: the counts qemu-img gets by walking it once per entry,
	// with work bounded by the file however often the L1 tables repeat
	// one table. The active tables come first, with the statistics.
	var tables l2Tally
	r.inc(int64(img.hdr.L1TableOffset), int64(len(img.l1))*8, "L1 table")
	img.tallyL1(r, &tables, img.l1)
	active := len(tables.refs)
	for _, s := range img.snaps {
		r.inc(int64(s.l1Offset), int64(s.l1Size)*8, fmt.Sprintf("L1 table of snapshot %q", s.name))
		l1, err := img.readTable(int64(s.l1Offset), int64(s.l1Size), "snapshot L1 table")
		if err != nil {
			res.CheckErrors++
			res.note(err.Error())
			continue
		}
		img.tallyL1(r, &tables, l1)
	}
	prevHost := int64(-1)
	for i, ref := range tables.refs {
		img.countL2(r, ref, i < active, &prevHost)
	}
	if img.hdr.NbSnapshots > 0 {
		r.inc(int64(img.hdr.SnapshotsOffset), img.snapTableLen, "snapshot table")
	}
	if withRefStructs {
		r.inc(int64(img.hdr.RefcountTableOffset), int64(img.hdr.RefcountTableClusters)*g.cs, "refcount table")
		for bi, e := range img.rt {
			off := int64(e & rtOffsetMask)
			if off == 0 {
				continue
			}
			if off%g.cs != 0 {
				r.errorf("refcount block %d at %#x is not cluster aligned", bi, off)
				continue
			}
			r.inc(off, g.cs, fmt.Sprintf("refcount block %d", bi))
			// Counted last: any other reference to a refcount block's
			// cluster (an L2 entry, a table) is corruption, which qemu-img
			// check reports as such, besides the refcount mismatch.
			if c := off / g.cs; off > 0 && c < int64(len(r.refs)) && r.refs[c] != 1 {
				r.errorf("refcount block %d refcount=%d", bi, r.refs[c])
			}
		}
	}
	if err := img.countBitmaps(r); err != nil {
		res.CheckErrors++
		res.note(err.Error())
	}
	for i := len(r.refs) - 1; i >= 0; i-- {
		if r.refs[i] != 0 {
			res.ImageEndOffset = int64(i+1) * g.cs
			break
		}
	}
	return r, nil
}

// tallyL1 counts the references of an L1 table to L2 tables, reporting
// the entries that cannot point to one.
func (img *Image) tallyL1(r *refTable, tables *l2Tally, l1 []uint64) {
	g := &img.g
	for l1i, l1e := range l1 {
		off := int64(l1e & l1OffsetMask)
		if off == 0 {
			continue
		}
		if off%g.cs != 0 {
			r.errorf("L1 entry %d (%#016x) is not cluster aligned", l1i, l1e)
			continue
		}
		if off >= img.fileSize {
			r.errorf("L2 table at %#x is past the end of the file", off)
			continue
		}
		r.inc(off, g.cs, "L2 table")
		tables.add(off, int64(l1i))
	}
}

// countL2 counts the data clusters one L2 table references, ref.refs
// times. active adds the allocation statistics (prevHost carries the
// fragmentation count from table to table).
func (img *Image) countL2(r *refTable, ref l2Ref, active bool, prevHost *int64) {
	g := &img.g
	res := r.res
	t, err := img.l2Table(uint64(ref.off))
	if err != nil {
		res.CheckErrors++
		res.note(err.Error())
		return
	}
	t.pin++
	defer func() { t.pin-- }()
	for i := int64(0); i < g.l2Entries; i++ {
		gc := ref.l1i*g.l2Entries + i
		le := g.readL2Entry(t.data, i)
		if err := g.validateL2(le, gc); err != nil {
			r.errorf("%v", err)
			continue
		}
		switch {
		case isCompressed(le.e):
			coff, n := g.compressedRange(le.e)
			first, count := g.compressedClusters(le.e)
			for c := first; c < first+count; c++ {
				r.incBy(c*g.cs, 1, "compressed cluster", ref.refs)
			}
			if active {
				res.AllocatedClusters++
				res.CompressedClusters++
				if *prevHost >= 0 && coff != *prevHost {
					res.FragmentedClusters++
				}
				*prevHost = coff + n
			}
		case hostCluster(le.e) != 0:
			h := hostCluster(le.e)
			r.incBy(h, g.cs, "data cluster", ref.refs)
			if active {
				res.AllocatedClusters++
				if *prevHost >= 0 && h != *prevHost {
					res.FragmentedClusters++
				}
				*prevHost = h + g.cs
			}
		}
	}
}

// countBitmaps counts the clusters of persistent dirty bitmaps, when the
// bitmaps extension is marked consistent (autoclear bit 0).
func (img *Image) countBitmaps(r *refTable) error {
	if img.hdr.AutoclearFeatures&AutoclearBitmaps == 0 {
		return nil
	}
	var be bitmapsExt
	found := false
	for _, e := range img.exts {
		if e.Type == extBitmaps {
			var err error
			if be, err = parseBitmapsExt(e.Data); err != nil {
				return img.errf(err, "bitmaps extension")
			}
			found = true
		}
	}
	if !found {
		return nil
	}
	g := &img.g
	if be.dirSize > 64<<20 || be.dirOffset%uint64(g.cs) != 0 || be.dirOffset > uint64(img.fileSize) || be.dirSize > uint64(img.fileSize)-be.dirOffset {
		return img.errf(ErrFormat, "bitmap directory at %#x (%d bytes) is invalid", be.dirOffset, be.dirSize)
	}
	r.inc(int64(be.dirOffset), int64(be.dirSize), "bitmap directory")
	dir := make([]byte, be.dirSize)
	if err := img.readFull(dir, int64(be.dirOffset)); err != nil {
		return img.errf(err, "read bitmap directory")
	}
	var tablesBytes int64
	for off, i := 0, uint32(0); i < be.nbBitmaps; i++ {
		if off+24 > len(dir) {
			return img.errf(ErrFormat, "bitmap directory entry %d is truncated", i)
		}
		tOff := int64(binary.BigEndian.Uint64(dir[off:]))
		tSize := int64(binary.BigEndian.Uint32(dir[off+8:]))
		gBits := uint(dir[off+17])
		nameLen := int(binary.BigEndian.Uint16(dir[off+18:]))
		extra := int(binary.BigEndian.Uint32(dir[off+20:]))
		off += int(alignUp(int64(24+extra+nameLen), 8))
		if tOff <= 0 || tOff%g.cs != 0 || tOff > img.fileSize || tSize*8 > img.fileSize-tOff {
			return img.errf(ErrFormat, "bitmap table %d at %#x is invalid", i, tOff)
		}
		// A bitmap has one bit per granule of the disk and its table one
		// entry per cluster of bits: no more entries than that (QEMU's
		// granularities are 512 B to 2 GiB), and tables that, being
		// distinct clusters, fit in the file together. Otherwise a header
		// field would size what is read and allocated here.
		if gBits < 9 || gBits > 31 {
			return img.errf(ErrFormat, "bitmap %d has granularity 2^%d bytes (2^9 to 2^31 are valid)", i, gBits)
		}
		bits := (img.Size() + int64(1)<<gBits - 1) >> gBits
		if need := (bits + g.cs*8 - 1) / (g.cs * 8); tSize > need {
			return img.errf(ErrFormat, "bitmap table %d has %d entries, a bitmap of this disk needs %d", i, tSize, need)
		}
		if tablesBytes += tSize * 8; tablesBytes > img.fileSize {
			return img.errf(ErrFormat, "the bitmap tables add up to more than the %d-byte file", img.fileSize)
		}
		r.inc(tOff, tSize*8, "bitmap table")
		tbl, err := img.readTable(tOff, tSize, "bitmap table")
		if err != nil {
			return err
		}
		for _, e := range tbl {
			if d := int64(e & l2OffsetMask); d != 0 {
				r.inc(d, g.cs, "bitmap data")
			}
		}
	}
	return nil
}

// compareRefs compares the stored refcounts with the counted references,
// reporting leaks and corruptions. It returns the number of clusters
// whose refcount is too low.
func (img *Image) compareRefs(r *refTable) int {
	res := r.res
	low := 0
	_ = img.eachRefcount(r, func(c int64, have, want uint64, err error) error {
		switch {
		case err != nil:
			res.CheckErrors++
			res.note(err.Error())
		case have < want:
			low++
			r.errorf("cluster %d refcount=%d reference=%d", c, have, want)
		case have > want:
			res.Leaks++
			res.note(fmt.Sprintf("Leaked cluster %d refcount=%d reference=%d", c, have, want))
		}
		return nil
	})
	return low
}

// fixLeaks lowers refcounts to the counted references where they exceed
// them.
func (img *Image) fixLeaks(r *refTable) (int, error) {
	fixed := 0
	err := img.eachRefcount(r, func(c int64, have, want uint64, err error) error {
		if err != nil || have <= want {
			return err
		}
		fixed++
		return img.setRefcount(c, want)
	})
	return fixed, err
}

// eachRefcount calls fn with the stored and the counted refcount of every
// cluster that has either. A block that cannot be read is reported once
// (err set) and skipped. fn's error stops the walk.
func (img *Image) eachRefcount(r *refTable, fn func(c int64, have, want uint64, err error) error) error {
	g := &img.g
	n := max(int64(len(r.refs)), img.allocEnd)
	for c := int64(0); c < n; c++ {
		var want uint64
		if c < int64(len(r.refs)) {
			want = uint64(r.refs[c])
		}
		have, err := img.refcount(c)
		if err := fn(c, have, want, err); err != nil {
			return err
		}
		if err != nil {
			c = (c/g.refPerBlock+1)*g.refPerBlock - 1 // skip the rest of the block
		}
	}
	return nil
}

// checkCopied verifies (and with fix, corrects) the COPIED flags of the
// active L1 and L2 tables: set exactly when the refcount is 1. It returns
// the number of wrong flags.
func (img *Image) checkCopied(res *CheckResult, fix bool) int {
	g := &img.g
	bad := 0
	for l1i, l1e := range img.l1 {
		off := int64(l1e & l1OffsetMask)
		if off == 0 || off%g.cs != 0 || off >= img.fileSize {
			continue
		}
		rc, err := img.refcount(off / g.cs)
		if err != nil {
			continue
		}
		if (rc == 1) != (l1e&oflagCopied != 0) {
			bad++
			img.copiedMessage(res, fix, fmt.Sprintf("OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d", l1i, l1e, rc))
			if fix {
				img.setL1(int64(l1i), img.l1[l1i]^oflagCopied)
			}
		}
	}
	// Each distinct table once (see l2Tally).
	for _, ref := range distinctL2(img.l1) {
		if ref.off%g.cs != 0 || ref.off >= img.fileSize {
			continue
		}
		if _, err := img.refcount(ref.off / g.cs); err != nil {
			continue
		}
		t, err := img.l2Table(uint64(ref.off))
		if err != nil {
			continue
		}
		for i := int64(0); i < g.l2Entries; i++ {
			le := g.readL2Entry(t.data, i)
			h := hostCluster(le.e)
			if isCompressed(le.e) || h == 0 || h%g.cs != 0 {
				continue
			}
			rc, err := img.refcount(h / g.cs)
			if err != nil {
				continue
			}
			if (rc == 1) != (le.e&oflagCopied != 0) {
				bad++
				img.copiedMessage(res, fix, fmt.Sprintf("OFLAG_COPIED data cluster: l2_entry=%x refcount=%d", le.e, rc))
				if fix {
					le.e ^= oflagCopied
					g.writeL2Entry(t.data, i, le)
					img.l2c.setDirty(t)
				}
			}
		}
	}
	if !fix {
		res.Corruptions += bad
		res.FlagErrors += bad
	}
	return bad
}

func (img *Image) copiedMessage(res *CheckResult, fix bool, s string) {
	if fix {
		res.note("Repairing " + s)
	} else {
		res.note("ERROR " + s)
	}
}

// rebuildRefcountsLocked replaces the refcount table and blocks with new
// ones computed from the references, placed after the end of the file,
// and switches the header to them in one sector write (which also clears
// the dirty bit). Precondition: mu is held; no request is running.
func (img *Image) rebuildRefcountsLocked() (*CheckResult, error) {
	g := &img.g
	res := &CheckResult{}
	r, err := img.countRefs(res, false)
	if err != nil {
		return res, err
	}
	refs := r.refs
	start := alignUp(img.fileSize, g.cs) / g.cs
	var tableClusters, nBlocks int64 = 1, 0
	var blockIdx []int64
	for {
		end := start + tableClusters + nBlocks
		nIdx := (end + g.refPerBlock - 1) / g.refPerBlock
		blockIdx = blockIdx[:0]
		for bi := int64(0); bi < nIdx; bi++ {
			lo, hi := bi*g.refPerBlock, (bi+1)*g.refPerBlock
			used := hi > start && lo < end
			for c := lo; !used && c < hi && c < int64(len(refs)); c++ {
				used = refs[c] != 0
			}
			if used {
				blockIdx = append(blockIdx, bi)
			}
		}
		t2 := max(1, (nIdx*8+g.cs-1)/g.cs)
		if t2 == tableClusters && int64(len(blockIdx)) == nBlocks {
			break
		}
		tableClusters, nBlocks = t2, int64(len(blockIdx))
	}
	if tableClusters*g.cs > maxRefTableBytes {
		return res, img.errf(ErrUnsupported, "refcount table would exceed %d bytes", maxRefTableBytes)
	}
	end := start + tableClusters + nBlocks
	if err := img.growFile(end * g.cs); err != nil {
		return res, err
	}
	rt := make([]uint64, tableClusters*g.cs/8)
	for k, bi := range blockIdx {
		off := (start + tableClusters + int64(k)) * g.cs
		rt[bi] = uint64(off)
		blk := make([]byte, g.cs)
		for i := int64(0); i < g.refPerBlock; i++ {
			c := bi*g.refPerBlock + i
			var v uint64
			if c < int64(len(refs)) {
				v = uint64(refs[c])
			}
			if c >= start && c < end {
				v = 1
			}
			if v > g.maxRefcount() {
				return res, img.errf(ErrUnsupported, "cluster %d has %d references, more than %d-bit refcounts hold", c, v, g.refBits)
			}
			refcountSet(blk, i, g.refOrder, v)
		}
		if err := img.writeMeta(blk, off, "refcount block"); err != nil {
			return res, err
		}
	}
	tbuf := make([]byte, len(rt)*8)
	for i, v := range rt {
		binary.BigEndian.PutUint64(tbuf[i*8:], v)
	}
	if err := img.writeMeta(tbuf, start*g.cs, "refcount table"); err != nil {
		return res, err
	}
	if err := img.sync(); err != nil {
		return res, err
	}
	img.hdr.RefcountTableOffset = uint64(start * g.cs)
	img.hdr.RefcountTableClusters = uint32(tableClusters)
	img.hdr.IncompatibleFeatures &^= IncompatDirty
	if err := img.writeHeaderLocked(); err != nil {
		return res, err
	}
	if err := img.sync(); err != nil {
		return res, err
	}
	img.setRefTable(rt)
	img.rtDirtyLo, img.rtDirtyHi = 0, 0
	img.rbc.clear()
	img.pendingFree = nil
	img.freeHint = 0
	img.allocEnd = end
	img.noteWritten((end - 1) * g.cs)
	if img.compCursor != 0 {
		img.compCursor = 0
	}
	return res, nil
}
