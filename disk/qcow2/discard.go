package qcow2

// zeroMode selects what zeroRange does to whole clusters.
type zeroMode int

const (
	modeDiscard  zeroMode = iota // unmap; contents become unspecified
	modeZeroFree                 // read as zeros, host cluster freed
	modeZeroKeep                 // read as zeros, host cluster kept
)

// Discard tells the image that [off, off+n) is no longer needed. Whole
// clusters are unmapped and their host clusters freed (once the change is
// durable); they then read as zeros, or as the backing file where version 2
// images have no zero flag. Parts of clusters are left alone: discard is
// advisory. The granularity is ClusterSize.
func (img *Image) Discard(off, n int64) error {
	if err := img.checkRange(off, n); err != nil {
		return err
	}
	g := &img.g
	start, end := alignUp(off, g.cs), alignDown(off+n, g.cs)
	if end == off+n && off+n == img.Size() {
		end = alignUp(off+n, g.cs) // the partial last cluster is whole
	}
	if start >= end {
		return nil
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	return img.zeroClusters(start, end, modeDiscard)
}

// WriteZeroes makes [off, off+n) read as zeros. Whole clusters become
// zero clusters (version 3) without data I/O; with unmap their host
// clusters are freed, otherwise kept for later overwrites. With extended
// L2 entries whole subclusters are handled the same way. The rest is
// written as zero data.
func (img *Image) WriteZeroes(off, n int64, unmap bool) error {
	if err := img.checkRange(off, n); err != nil {
		return err
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	g := &img.g
	mode := modeZeroKeep
	if unmap {
		mode = modeZeroFree
	}
	end := off + n
	size := img.Size()
	gran := g.unitSize
	if img.hdr.Version < 3 && img.backing != nil {
		gran = 0 // no zero flag: zeros must be written as data
	}
	if gran == 0 {
		return img.writeZeroData(off, end)
	}
	zs, ze := alignUp(off, gran), alignDown(end, gran)
	if end == size {
		ze = alignUp(end, gran) // the disk's partial last unit is whole
	}
	if zs >= ze {
		return img.writeZeroData(off, end)
	}
	if err := img.writeZeroData(off, zs); err != nil {
		return err
	}
	cs, ce := alignUp(zs, g.cs), alignDown(ze, g.cs)
	if end == size {
		ce = alignUp(ze, g.cs)
	}
	if cs >= ce {
		if err := img.zeroUnitRange(zs, ze); err != nil {
			return err
		}
	} else {
		if err := img.zeroUnitRange(zs, cs); err != nil {
			return err
		}
		if err := img.zeroClusters(cs, ce, mode); err != nil {
			return err
		}
		if err := img.zeroUnitRange(ce, ze); err != nil {
			return err
		}
	}
	if ze < end {
		return img.writeZeroData(ze, end)
	}
	return nil
}

// zeroUnitRange zeroes the whole units in [from, to), cluster by cluster.
func (img *Image) zeroUnitRange(from, to int64) error {
	for from < to {
		next := min(to, alignDown(from, img.g.cs)+img.g.cs)
		if err := img.zeroUnits(from, next); err != nil {
			return err
		}
		from = next
	}
	return nil
}

// checkRange validates a request range.
func (img *Image) checkRange(off, n int64) error {
	size := img.Size()
	if off < 0 || n < 0 || off > size || n > size-off {
		return img.errf(ErrRange, "range %#x+%d outside the %d-byte disk", off, n, size)
	}
	return nil
}

// writeZeroData writes zero bytes over [from, to). Precondition: gate is
// read-locked.
func (img *Image) writeZeroData(from, to int64) error {
	if from >= to {
		return nil
	}
	buf := make([]byte, min(to-from, 1<<20))
	for from < to {
		n := min(to-from, int64(len(buf)))
		if err := img.writeRange(buf[:n], from); err != nil {
			return err
		}
		from += n
	}
	return nil
}

// zeroClusters applies mode to the whole clusters in [start, end).
// Precondition: gate is read-locked; start and end are cluster aligned
// (end may pass the disk size inside the last cluster).
func (img *Image) zeroClusters(start, end int64, mode zeroMode) error {
	g := &img.g
	for gc := start >> g.clusterBits; gc < (end+g.cs-1)>>g.clusterBits; {
		n, err := img.zeroClusterRun(gc, (end+g.cs-1)>>g.clusterBits, mode)
		if err != nil {
			return err
		}
		gc += n
	}
	return nil
}

// zeroClusterRun handles clusters from gc up to end within one L2 table
// and returns how many it handled.
func (img *Image) zeroClusterRun(gc, end int64, mode zeroMode) (int64, error) {
	g := &img.g
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return 0, err
	}
	for img.isInflight(gc) {
		img.cond.Wait()
	}
	l1i := gc >> g.l2Bits
	tableEnd := (l1i + 1) << g.l2Bits
	end = min(end, tableEnd)
	if l1i >= int64(len(img.l1)) {
		return end - gc, nil
	}
	hasBacking := img.backing != nil
	v3 := img.hdr.Version >= 3
	if img.l1[l1i]&l1OffsetMask == 0 && (mode == modeDiscard || !hasBacking) {
		return end - gc, nil // nothing mapped, and unallocated reads as zeros
	}
	t, err := img.writableL2(l1i)
	if err != nil {
		return 0, err
	}
	n := int64(0)
	for c := gc; c < end; c++ {
		if c != gc && img.isInflight(c) {
			break
		}
		ci := c & (g.l2Entries - 1)
		le := g.readL2Entry(t.data, ci)
		if err := g.validateL2(le, c); err != nil {
			return n, img.errf(err, "L2 table at %#x", t.off)
		}
		var ne l2Entry
		keep := false
		h := hostCluster(le.e)
		switch {
		case mode == modeDiscard && !(v3 && hasBacking):
			// unallocated: reads as zeros
		case mode == modeDiscard || mode == modeZeroFree || isCompressed(le.e) || h == 0:
			ne = img.zeroEntry(0)
		default:
			owned := le.e&oflagCopied != 0
			if !owned {
				rc, err := img.refcount(h / g.cs)
				if err != nil {
					return n, err
				}
				owned = rc == 1
			}
			if owned {
				ne, keep = img.zeroEntry(uint64(h)|oflagCopied), true
			} else {
				ne = img.zeroEntry(0)
			}
		}
		if !v3 && !g.extL2 && ne.e != 0 {
			// Version 2 has no zero flag; without a backing file an
			// unallocated cluster reads as zeros.
			ne, keep = l2Entry{}, false
		}
		if ne != le {
			g.writeL2Entry(t.data, ci, ne)
			img.l2c.setDirty(t)
			if !keep {
				img.freeEntryLater(le)
			}
		}
		n++
	}
	return n, nil
}

// zeroEntry returns a zero-cluster L2 entry, keeping host (with COPIED)
// if non-zero.
func (img *Image) zeroEntry(host uint64) l2Entry {
	if img.g.extL2 {
		return l2Entry{e: host, bitmap: makeBitmap(0, ^uint32(0))}
	}
	return l2Entry{e: host | oflagZero}
}

// zeroUnits turns the whole subclusters in [from, to), all inside one
// cluster, into zero subclusters (extended L2 only; otherwise it writes
// zero data). Precondition: gate is read-locked.
func (img *Image) zeroUnits(from, to int64) error {
	g := &img.g
	if !g.extL2 {
		return img.writeZeroData(from, to)
	}
	gc := from >> g.clusterBits
	img.mu.Lock()
	for img.isInflight(gc) {
		img.cond.Wait()
	}
	if err := img.writable(); err != nil {
		img.mu.Unlock()
		return err
	}
	l1i := gc >> g.l2Bits
	t, err := img.writableL2(l1i)
	if err != nil {
		img.mu.Unlock()
		return err
	}
	ci := gc & (g.l2Entries - 1)
	le := g.readL2Entry(t.data, ci)
	if err := g.validateL2(le, gc); err != nil {
		img.mu.Unlock()
		return img.errf(err, "L2 table at %#x", t.off)
	}
	h := hostCluster(le.e)
	owned := le.e&oflagCopied != 0
	if !owned && h != 0 {
		rc, err := img.refcount(h / g.cs)
		if err != nil {
			img.mu.Unlock()
			return err
		}
		owned = rc == 1
	}
	if isCompressed(le.e) || (h != 0 && !owned) {
		// The cluster must be rewritten as a whole first.
		img.mu.Unlock()
		return img.writeZeroData(from, to)
	}
	base := gc << g.clusterBits
	u0 := int((from - base) >> g.unitBits)
	u1 := int((to - base - 1) >> g.unitBits)
	m := unitMask(u0, u1-u0+1)
	le.bitmap = makeBitmap(allocBits(le.bitmap)&^m, zeroBits(le.bitmap)|m)
	g.writeL2Entry(t.data, ci, le)
	img.l2c.setDirty(t)
	img.mu.Unlock()
	return nil
}
