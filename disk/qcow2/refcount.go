package qcow2

import (
	"encoding/binary"
	"fmt"
)

// Refcount bookkeeping and host cluster allocation. Every function here
// requires mu to be held.

// refBlock returns the cached refcount block with index bi, loading it from
// disk. It returns nil when the refcount table has no block there (all
// refcounts in its range are zero).
func (img *Image) refBlock(bi int64) (*cacheEntry, error) {
	if bi < 0 || bi >= int64(len(img.rt)) {
		return nil, nil
	}
	off := int64(img.rt[bi] & rtOffsetMask)
	if off == 0 {
		return nil, nil
	}
	if e := img.rbc.get(off); e != nil {
		return e, nil
	}
	if off <= 0 || off%img.g.cs != 0 || off >= img.fileSize {
		return nil, img.errf(ErrCorrupt, "refcount block %d at %#x is unaligned or past the end of the file", bi, uint64(off))
	}
	if what := img.fixedMetadataAt(off); what != "" {
		return nil, img.errf(ErrCorrupt, "refcount block %d at %#x overlaps %s", bi, off, what)
	}
	if _, ok := img.l2Set.overlapping(off, img.g.cs, img.g.cs); ok {
		return nil, img.errf(ErrCorrupt, "refcount block %d at %#x is also an active L2 table", bi, off)
	}
	buf := make([]byte, img.g.cs)
	if err := img.readFull(buf, off); err != nil {
		return nil, img.errf(err, "read refcount block at %#x", off)
	}
	if err := img.makeRoom(img.rbc); err != nil {
		return nil, err
	}
	return img.rbc.insert(off, buf), nil
}

// refcount returns the refcount of host cluster c.
func (img *Image) refcount(c int64) (uint64, error) {
	e, err := img.refBlock(c / img.g.refPerBlock)
	if err != nil || e == nil {
		return 0, err
	}
	return refcountGet(e.data, c%img.g.refPerBlock, img.g.refOrder), nil
}

// setRefcount stores the refcount of host cluster c, creating the refcount
// block (and growing the refcount table) if needed.
func (img *Image) setRefcount(c int64, v uint64) error {
	if v > img.g.maxRefcount() {
		return img.errf(ErrUnsupported, "refcount of cluster %d would overflow %d-bit refcounts", c, img.g.refBits)
	}
	bi := c / img.g.refPerBlock
	e, err := img.refBlock(bi)
	if err != nil {
		return err
	}
	if e == nil {
		if v == 0 {
			return nil
		}
		if err := img.createRefBlock(bi); err != nil {
			return err
		}
		if e, err = img.refBlock(bi); err != nil {
			return err
		}
		if e == nil {
			return img.errf(ErrCorrupt, "refcount block %d vanished after creation", bi)
		}
	}
	refcountSet(e.data, c%img.g.refPerBlock, img.g.refOrder, v)
	img.rbc.setDirty(e)
	if v != 0 && c >= img.allocEnd {
		img.allocEnd = c + 1
	}
	if v == 0 && c < img.freeHint {
		img.freeHint = c
	}
	return nil
}

// addRefcount adds delta to the refcount of host cluster c and returns the
// new value. Underflow and overflow are corruption errors.
func (img *Image) addRefcount(c int64, delta int64) (uint64, error) {
	v, err := img.refcount(c)
	if err != nil {
		return 0, err
	}
	nv := int64(v) + delta
	if delta < 0 && uint64(-delta) > v {
		return 0, img.errf(ErrCorrupt, "refcount of cluster %d (offset %#x) would drop below zero", c, c*img.g.cs)
	}
	if delta > 0 && uint64(delta) > img.g.maxRefcount()-v {
		return 0, img.errf(ErrUnsupported, "refcount of cluster %d would overflow %d-bit refcounts", c, img.g.refBits)
	}
	if err := img.setRefcount(c, uint64(nv)); err != nil {
		return 0, err
	}
	if nv == 0 {
		img.forgetCluster(c)
	}
	return uint64(nv), nil
}

// forgetCluster drops what paddock remembers about a host cluster that
// just became free: a cached table that lived there (it must not shadow
// whatever the cluster is reused for), and the compressed-data cursor.
// Precondition: mu is held.
func (img *Image) forgetCluster(c int64) {
	off := c * img.g.cs
	if e := img.l2c.m[off]; e != nil && e.pin == 0 {
		img.l2c.remove(e)
	}
	if e := img.rbc.m[off]; e != nil && e.pin == 0 {
		img.rbc.remove(e)
	}
	if img.compCursor != 0 && img.compCursor%img.g.cs != 0 && c == img.compCursor/img.g.cs {
		img.compCursor = 0 // never pack into a cluster that may be reused
	}
}

// createRefBlock creates refcount block bi. No cluster in its range is in
// use (they would need this block for their refcounts), so the block is
// placed in the first cluster of its own range and counts itself.
func (img *Image) createRefBlock(bi int64) error {
	if bi >= int64(len(img.rt)) {
		if err := img.growRefTable(bi + 1); err != nil {
			return err
		}
		if img.rt[bi]&rtOffsetMask != 0 {
			return nil // the growth placed a block here
		}
	}
	p := bi * img.g.refPerBlock
	if p == 0 {
		return img.errf(ErrCorrupt, "refcount table has no block for the header cluster")
	}
	off := p * img.g.cs
	if what := img.metadataIn(off, img.g.cs); what != "" {
		return img.markCorrupt(img.errf(ErrCorrupt, "refusing to create refcount block %d at %#x over %s: the refcount table has no block for it", bi, off, what))
	}
	if err := img.growFile(off + img.g.cs); err != nil {
		return err
	}
	buf := make([]byte, img.g.cs)
	refcountSet(buf, 0, img.g.refOrder, 1)
	if err := img.makeRoom(img.rbc); err != nil {
		return err
	}
	e := img.rbc.insert(off, buf)
	img.rbc.setDirty(e)
	img.rt[bi] = uint64(off)
	img.rbSet.add(off)
	img.rtUsed = max(img.rtUsed, bi+1)
	img.markRTDirty(bi)
	if p+1 > img.allocEnd {
		img.allocEnd = p + 1
	}
	img.noteWritten(off)
	return nil
}

// setRefTable installs rt as the refcount table and indexes its blocks.
func (img *Image) setRefTable(rt []uint64) {
	img.rt, img.rtUsed = rt, int64(len(rt))
	img.rbSet = newClusterSet(rt, rtOffsetMask)
	for img.rtUsed > 0 && rt[img.rtUsed-1]&rtOffsetMask == 0 {
		img.rtUsed--
	}
}

// markRTDirty records that refcount table entry i changed.
func (img *Image) markRTDirty(i int64) { extendRange(&img.rtDirtyLo, &img.rtDirtyHi, i) }

// growRefTable replaces the refcount table by a larger one holding at
// least minEntries entries. The new table and the refcount blocks that
// cover it are placed after every used cluster; the header switches to the
// new table only once it and its blocks are durable.
func (img *Image) growRefTable(minEntries int64) error {
	g := &img.g
	perCluster := g.cs / 8
	oldN := int64(len(img.rt))
	newN := max(minEntries, oldN+oldN/2, oldN+perCluster)
	newN = alignUp(newN, perCluster)
	start := img.allocEnd
	var tableClusters int64
	var newBlocks []int64 // block indices created here
	for {
		if newN*8 > maxRefTableBytes {
			return img.errf(ErrUnsupported, "image too large: the refcount table would exceed %d bytes", maxRefTableBytes)
		}
		tableClusters = newN / perCluster
		// Blocks for the table's own clusters and for the new blocks.
		newBlocks = newBlocks[:0]
		for {
			end := start + tableClusters + int64(len(newBlocks))
			var need []int64
			for bi := start / g.refPerBlock; bi <= (end-1)/g.refPerBlock; bi++ {
				if bi >= oldN || img.rt[bi]&rtOffsetMask == 0 {
					need = append(need, bi)
				}
			}
			if len(need) == len(newBlocks) {
				break
			}
			newBlocks = need
		}
		maxBI := int64(-1)
		if len(newBlocks) > 0 {
			maxBI = newBlocks[len(newBlocks)-1]
		}
		if maxBI < newN && minEntries <= newN {
			break
		}
		newN = alignUp(max(maxBI+1, minEntries), perCluster)
	}
	total := tableClusters + int64(len(newBlocks))
	if what := img.metadataIn(start*g.cs, total*g.cs); what != "" {
		return img.markCorrupt(img.errf(ErrCorrupt, "refusing to place a new refcount table at %#x over %s, which has refcount 0", start*g.cs, what))
	}
	if err := img.growFile((start + total) * g.cs); err != nil {
		return err
	}
	rt := make([]uint64, newN)
	copy(rt, img.rt)
	blocks := make(map[int64][]byte)
	for i, bi := range newBlocks {
		rt[bi] = uint64((start + tableClusters + int64(i)) * g.cs)
		blocks[bi] = make([]byte, g.cs)
	}
	// Refcounts of the new clusters: in new blocks directly, or in
	// existing blocks through the cache.
	for c := start; c < start+total; c++ {
		bi := c / g.refPerBlock
		if b, ok := blocks[bi]; ok {
			refcountSet(b, c%g.refPerBlock, g.refOrder, 1)
			continue
		}
		// An existing block: the old table has the same entry.
		if err := img.setRefcount(c, 1); err != nil {
			return err
		}
	}
	// Write: existing dirty blocks, new blocks, the table; barrier; header.
	if _, err := img.writeRefBlocks(); err != nil {
		return err
	}
	for i, bi := range newBlocks {
		off := (start + tableClusters + int64(i)) * g.cs
		if err := img.writeMeta(blocks[bi], off, "refcount block"); err != nil {
			return err
		}
	}
	tbuf := make([]byte, newN*8)
	for i, v := range rt {
		binary.BigEndian.PutUint64(tbuf[i*8:], v)
	}
	if err := img.writeMeta(tbuf, start*g.cs, "refcount table"); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	oldOff, oldClusters := int64(img.hdr.RefcountTableOffset), int64(img.hdr.RefcountTableClusters)
	img.hdr.RefcountTableOffset = uint64(start * g.cs)
	img.hdr.RefcountTableClusters = uint32(tableClusters)
	if err := img.writeHeaderLocked(); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	img.setRefTable(rt)
	img.rtDirtyLo, img.rtDirtyHi = 0, 0
	for i, bi := range newBlocks {
		off := (start + tableClusters + int64(i)) * g.cs
		if err := img.makeRoom(img.rbc); err != nil {
			return err
		}
		img.rbc.insert(off, blocks[bi])
	}
	img.allocEnd = max(img.allocEnd, start+total)
	img.noteWritten((start + total - 1) * g.cs)
	// The old table is unreferenced now that the header is durable.
	for c := oldOff / g.cs; c < oldOff/g.cs+oldClusters; c++ {
		if _, err := img.addRefcount(c, -1); err != nil {
			return err
		}
	}
	return nil
}

// allocRun allocates up to n (at least one) contiguous free host clusters,
// sets their refcounts to 1 and returns the first index, the count, and
// whether the clusters are known to read as zeros.
func (img *Image) allocRun(n int64) (first, count int64, fresh bool, err error) {
	g := &img.g
	for {
		c := img.freeHint
		if c >= img.allocEnd {
			c = img.allocEnd
			// Make sure blocks exist for the whole run; creating one
			// uses the first cluster of its range, so retry after.
			created := false
			for bi := c / g.refPerBlock; bi <= (c+n-1)/g.refPerBlock && !created; bi++ {
				if _, created, err = img.refBlockOrCreate(bi); err != nil {
					return 0, 0, false, err
				}
			}
			if created {
				continue
			}
			return img.claim(c, n)
		}
		bi := c / g.refPerBlock
		e, created, err := img.refBlockOrCreate(bi)
		if err != nil {
			return 0, 0, false, err
		}
		if created {
			continue // the block took the range's first cluster: rescan
		}
		// Scan this block for a free cluster.
		i := c % g.refPerBlock
		for ; i < g.refPerBlock && bi*g.refPerBlock+i < img.allocEnd; i++ {
			if refcountGet(e.data, i, g.refOrder) == 0 {
				break
			}
		}
		c = bi*g.refPerBlock + i
		if i == g.refPerBlock || c >= img.allocEnd {
			img.freeHint = c
			continue
		}
		k := int64(1)
		for k < n && i+k < g.refPerBlock && c+k < img.allocEnd && refcountGet(e.data, i+k, g.refOrder) == 0 {
			k++
		}
		return img.claim(c, k)
	}
}

// refBlockOrCreate returns refcount block bi, creating it (in the first
// cluster of its range) if it does not exist; created reports that, and
// then e is nil and the caller must look again.
func (img *Image) refBlockOrCreate(bi int64) (e *cacheEntry, created bool, err error) {
	if e, err = img.refBlock(bi); err != nil || e != nil {
		return e, false, err
	}
	return nil, true, img.createRefBlock(bi)
}

// claim marks clusters [c, c+n) used. Precondition: they are free and
// their refcount blocks exist.
func (img *Image) claim(c, n int64) (int64, int64, bool, error) {
	g := &img.g
	if what := img.metadataIn(c*g.cs, n*g.cs); what != "" {
		return 0, 0, false, img.markCorrupt(img.errf(ErrCorrupt, "refusing to allocate %s, which holds %s but has refcount 0", img.describeCluster(c), what))
	}
	if err := img.growFile((c + n) * g.cs); err != nil {
		return 0, 0, false, err
	}
	for i := int64(0); i < n; i++ {
		if err := img.setRefcount(c+i, 1); err != nil {
			return 0, 0, false, err
		}
	}
	fresh := c*g.cs >= img.zeroFrom
	img.noteWritten((c + n - 1) * g.cs)
	img.freeHint = c + n
	return c, n, fresh, nil
}

// noteWritten records that the cluster at off may be written, so it no
// longer counts as known zeros.
func (img *Image) noteWritten(off int64) {
	if end := off + img.g.cs; end > img.zeroFrom {
		img.zeroFrom = end
	}
}

// growFile makes the file at least end bytes long. It grows in chunks so
// that allocation does not truncate on every cluster; Close trims the
// excess.
func (img *Image) growFile(end int64) error {
	if end <= img.fileSize {
		return nil
	}
	if end > int64(1)<<56 {
		return img.errf(ErrUnsupported, "host offset %#x beyond the 64 PB limit", end)
	}
	n := alignUp(end, fileGrowChunk)
	if err := img.f.Truncate(n); err != nil {
		return img.errf(err, "grow file to %d bytes", n)
	}
	img.fileSize = n
	return nil
}

// freeLater queues host cluster c for a refcount decrement once the tables
// that dropped the reference are durable.
func (img *Image) freeLater(c int64) {
	img.pendingFree = append(img.pendingFree, c)
}

// freeEntryLater queues the host clusters referenced by an L2 entry.
func (img *Image) freeEntryLater(le l2Entry) {
	if isCompressed(le.e) {
		first, n := img.g.compressedClusters(le.e)
		for i := int64(0); i < n; i++ {
			img.freeLater(first + i)
		}
		return
	}
	if h := hostCluster(le.e); h != 0 {
		img.freeLater(h / img.g.cs)
	}
}

// releaseFrees applies the first n queued decrements. Precondition: the
// tables that dropped the references are durable and no request that
// started before they were dropped is still running.
func (img *Image) releaseFrees(n int) error {
	var freed []int64
	for _, c := range img.pendingFree[:n] {
		if err := img.checkFree(c); err != nil {
			img.pendingFree = append([]int64(nil), img.pendingFree[n:]...)
			return err
		}
		v, err := img.addRefcount(c, -1)
		if err != nil {
			img.pendingFree = append([]int64(nil), img.pendingFree[n:]...)
			return err
		}
		if v == 0 {
			freed = append(freed, c)
		}
	}
	img.pendingFree = append([]int64(nil), img.pendingFree[n:]...)
	if len(freed) > 0 {
		img.dec.invalidate()
		img.punchFreed(freed)
	}
	return nil
}

// checkFree refuses to drop the last reference to host cluster c while it
// holds metadata: only a corrupt or hostile image has a guest cluster
// mapped onto a table, and freeing it would make the table's space
// reusable (and punch a hole into it). The image is marked corrupt, as for
// a data write over metadata. Precondition: mu is held.
func (img *Image) checkFree(c int64) error {
	what := img.liveMetadataIn(c*img.g.cs, img.g.cs)
	if what == "" {
		return nil
	}
	if rc, err := img.refcount(c); err != nil || rc > 1 {
		return err
	}
	return img.markCorrupt(img.errf(ErrCorrupt, "refusing to free %s, which holds %s", img.describeCluster(c), what))
}

// punchFreed returns freed clusters' space to the host file system where
// it can. They are then no longer known to hold old data, but paddock
// does not rely on that: reused clusters are always fully written.
func (img *Image) punchFreed(clusters []int64) {
	hp, ok := img.f.(holePuncher)
	if !ok {
		return
	}
	for i := 0; i < len(clusters); {
		j := i + 1
		for j < len(clusters) && clusters[j] == clusters[j-1]+1 {
			j++
		}
		// Best effort: the cluster is free either way.
		_ = hp.punchHole(clusters[i]*img.g.cs, int64(j-i)*img.g.cs)
		i = j
	}
}

// computeAllocEnd finds the end of the last used cluster from the
// refcount blocks. Only clusters inside the file can be in use, so only
// the blocks that cover the file are read, and only their entries for
// clusters inside it: the work is bounded by the file, whatever the
// refcount table says (a damaged table naming one empty block a million
// times once cost a scan of every entry of every one of them).
func (img *Image) computeAllocEnd() error {
	g := &img.g
	fileClusters := max(1, alignUp(img.fileSize, g.cs)/g.cs)
	img.allocEnd = 1
	last := min(int64(len(img.rt)), (fileClusters-1)/g.refPerBlock+1)
	for bi := last - 1; bi >= 0; bi-- {
		e, err := img.refBlock(bi)
		if err != nil {
			return err
		}
		if e == nil {
			continue
		}
		for i := min(g.refPerBlock, fileClusters-bi*g.refPerBlock) - 1; i >= 0; i-- {
			if refcountGet(e.data, i, g.refOrder) != 0 {
				img.allocEnd = bi*g.refPerBlock + i + 1
				return nil
			}
		}
	}
	return nil
}

// describeCluster names a host cluster for messages.
func (img *Image) describeCluster(c int64) string {
	return fmt.Sprintf("cluster %d (offset %#x)", c, c*img.g.cs)
}
