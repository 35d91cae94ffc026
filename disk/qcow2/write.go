package qcow2

import (
	"bytes"
)

// maxPlanBytes bounds how much guest data one allocating step covers.
const maxPlanBytes = 8 << 20

// WriteAt writes p at guest offset off. The write is durable after the
// next Flush.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	size := img.Size()
	if off < 0 || off > size || int64(len(p)) > size-off {
		return 0, img.errf(ErrRange, "write of %d bytes at %#x outside the %d-byte disk", len(p), off, size)
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	if err := img.writeRange(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeRange writes p at guest offset off, which may lie beyond the disk
// (VM state) as long as the L1 table covers it. Precondition: gate is
// read-locked.
func (img *Image) writeRange(p []byte, off int64) error {
	for len(p) > 0 {
		n, err := img.writeStep(p, off)
		if err != nil {
			return err
		}
		p = p[n:]
		off += n
	}
	return nil
}

// writeStep writes a prefix of p and returns its length: either a run of
// clusters that can be overwritten in place, or one allocation plan.
func (img *Image) writeStep(p []byte, off int64) (int64, error) {
	img.mu.Lock()
	if err := img.writable(); err != nil {
		img.mu.Unlock()
		return 0, err
	}
	host, n, err := img.inPlaceLocked(off, int64(len(p)))
	if err != nil {
		img.mu.Unlock()
		return 0, err
	}
	if n > 0 {
		img.mu.Unlock()
		if _, err := img.f.WriteAt(p[:n], host); err != nil {
			return 0, img.errf(err, "write data at host offset %#x", host)
		}
		return n, nil
	}
	pl, err := img.planLocked(off, int64(len(p)))
	img.mu.Unlock()
	if err != nil || pl == nil {
		return 0, err // nil plan: waited for another request; retry
	}
	ioErr := img.execute(pl, p[:pl.length], off)
	img.mu.Lock()
	err = img.commitLocked(pl, ioErr)
	img.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return pl.length, nil
}

// inPlaceLocked returns the host offset and length of the longest prefix
// of [off, off+max) that is stored in clusters owned only by the active
// image (refcount 1), in allocated units, with contiguous host offsets:
// that prefix can simply be overwritten. Length 0 means the first cluster
// needs the allocation path. Precondition: mu is held.
func (img *Image) inPlaceLocked(off, max int64) (int64, int64, error) {
	g := &img.g
	l1i := g.l1Index(off)
	if l1i >= int64(len(img.l1)) {
		return 0, 0, nil
	}
	l1e := img.l1[l1i]
	if l1e&l1OffsetMask == 0 {
		return 0, 0, nil
	}
	if l1e&oflagCopied == 0 {
		rc, err := img.refcount(int64(l1e&l1OffsetMask) / g.cs)
		if err != nil || rc != 1 {
			return 0, 0, err
		}
		img.setL1(l1i, img.l1[l1i]|oflagCopied)
	}
	t, err := img.l2Table(img.l1[l1i])
	if err != nil {
		return 0, 0, err
	}
	var host0, total int64
	ci := g.l2Index(off)
	gc := off >> g.clusterBits
	for total < max && ci < g.l2Entries {
		if img.isInflight(gc) {
			break
		}
		le := g.readL2Entry(t.data, ci)
		if err := g.validateL2(le, gc); err != nil {
			return 0, 0, img.errf(err, "L2 table at %#x", t.off)
		}
		h := hostCluster(le.e)
		if isCompressed(le.e) || h == 0 || (!g.extL2 && le.e&oflagZero != 0) {
			break
		}
		inCluster := (off + total) & (g.cs - 1)
		n := min(max-total, g.cs-inCluster)
		if g.extL2 {
			u0 := int(inCluster >> g.unitBits)
			u1 := int((inCluster + n - 1) >> g.unitBits)
			m := unitMask(u0, u1-u0+1)
			if allocBits(le.bitmap)&m != m {
				break
			}
		}
		if total > 0 && h+inCluster != host0+total {
			break
		}
		if le.e&oflagCopied == 0 {
			rc, err := img.refcount(h / g.cs)
			if err != nil {
				return 0, 0, err
			}
			if rc != 1 {
				break
			}
			le.e |= oflagCopied
			g.writeL2Entry(t.data, ci, le)
			img.l2c.setDirty(t)
		}
		if err := img.checkDataTarget(h); err != nil {
			return 0, 0, err
		}
		if total == 0 {
			host0 = h + inCluster
		}
		total += n
		ci++
		gc++
	}
	return host0, total, nil
}

// plan is one allocating write: guest clusters whose mapping changes, with
// their target host clusters. Its clusters are marked in flight.
type plan struct {
	l1i      int64
	clusters []clusterPlan
	length   int64 // guest bytes covered, from the write's offset
}

// clusterPlan is the planned change of one guest cluster.
type clusterPlan struct {
	gc      int64   // guest cluster index
	old     l2Entry // mapping before the write
	host    int64   // target host cluster offset
	newHost bool    // host was allocated by this plan
	fresh   bool    // target is known to read as zeros
	ws, we  int64   // written byte range within the cluster
}

// planLocked plans an allocating write of a prefix of [off, off+max):
// it makes the L2 table writable, allocates target clusters and marks the
// guest clusters in flight. It returns nil (and no error) after waiting
// for a conflicting request, to make the caller start over.
// Precondition: mu is held.
func (img *Image) planLocked(off, max int64) (*plan, error) {
	g := &img.g
	gc := off >> g.clusterBits
	if img.isInflight(gc) {
		img.cond.Wait()
		return nil, nil
	}
	l1i := g.l1Index(off)
	if l1i >= int64(len(img.l1)) {
		return nil, img.errf(ErrRange, "offset %#x is beyond the L1 table", off)
	}
	t, err := img.writableL2(l1i)
	if err != nil {
		return nil, err
	}
	t.pin++
	defer func() { t.pin-- }()
	end := off + max
	lastGC := (end - 1) >> g.clusterBits
	lastGC = min(lastGC, (l1i+1)*g.l2Entries-1, gc+max64(1, maxPlanBytes/g.cs)-1)
	pl := &plan{l1i: l1i}
	for c := gc; c <= lastGC; c++ {
		if c != gc && img.isInflight(c) {
			break
		}
		le := g.readL2Entry(t.data, c&(g.l2Entries-1))
		if err := g.validateL2(le, c); err != nil {
			return nil, img.errf(err, "L2 table at %#x", t.off)
		}
		base := c << g.clusterBits
		cp := clusterPlan{gc: c, old: le, ws: max64(off, base) - base, we: min(end, base+g.cs) - base}
		h := hostCluster(le.e)
		if !isCompressed(le.e) && h != 0 {
			owned := le.e&oflagCopied != 0
			if !owned {
				rc, err := img.refcount(h / g.cs)
				if err != nil {
					return nil, err
				}
				if rc == 0 {
					return nil, img.markCorrupt(img.errf(ErrCorrupt, "guest cluster %d maps to free %s", c, img.describeCluster(h/g.cs)))
				}
				owned = rc == 1
			}
			if owned {
				if c != gc && img.unitsAllocated(le, cp.ws, cp.we) {
					break // plain overwrite: leave it to the fast path
				}
				if err := img.checkDataTarget(h); err != nil {
					return nil, err
				}
				cp.host = h
			}
		}
		pl.clusters = append(pl.clusters, cp)
		pl.length += cp.we - cp.ws
	}
	// Allocate targets, in contiguous runs where possible.
	for i := 0; i < len(pl.clusters); {
		if pl.clusters[i].host != 0 {
			i++
			continue
		}
		j := i
		for j < len(pl.clusters) && pl.clusters[j].host == 0 {
			j++
		}
		for i < j {
			first, count, fresh, err := img.allocRun(int64(j - i))
			if err != nil {
				img.rollbackAlloc(pl)
				return nil, err
			}
			for k := int64(0); k < count; k++ {
				cp := &pl.clusters[i+int(k)]
				cp.host, cp.newHost, cp.fresh = (first+k)*g.cs, true, fresh
			}
			i += int(count)
		}
	}
	for _, cp := range pl.clusters {
		img.inflight[cp.gc] = struct{}{}
	}
	return pl, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// unitsAllocated reports whether every unit touched by [ws, we) of a
// cluster is allocated data (so the write needs no mapping change).
func (img *Image) unitsAllocated(le l2Entry, ws, we int64) bool {
	g := &img.g
	if !g.extL2 {
		return le.e&oflagZero == 0
	}
	u0, u1 := int(ws>>g.unitBits), int((we-1)>>g.unitBits)
	m := unitMask(u0, u1-u0+1)
	return allocBits(le.bitmap)&m == m
}

// rollbackAlloc returns the clusters a failed plan allocated. They were
// never referenced, so they are freed at once. Precondition: mu is held.
func (img *Image) rollbackAlloc(pl *plan) {
	for _, cp := range pl.clusters {
		if cp.newHost {
			// A failure here only leaks the cluster.
			_, _ = img.addRefcount(cp.host/img.g.cs, -1)
		}
	}
}

// segment is one host write.
type segment struct {
	host int64
	buf  []byte
}

// execute performs the data I/O of a plan: guest data plus the old
// contents (copy-on-write) of the parts of partially written units, and
// of units that move to a new host cluster. p holds the plan's guest bytes
// starting at off. Precondition: gate is read-locked; mu is not held.
func (img *Image) execute(pl *plan, p []byte, off int64) error {
	g := &img.g
	var segs []segment
	for i := range pl.clusters {
		cp := &pl.clusters[i]
		base := cp.gc << g.clusterBits
		data := p[base+cp.ws-off : base+cp.we-off]
		u0, u1 := int(cp.ws>>g.unitBits), int((cp.we-1)>>g.unitBits)
		for u := 0; u < g.units; u++ {
			us := int64(u) << g.unitBits
			ue := us + g.unitSize
			switch {
			case u >= u0 && u <= u1:
				ds, de := max64(cp.ws, us), min(cp.we, ue)
				if err := img.oldSegment(cp, us, ds, &segs); err != nil {
					return err
				}
				segs = appendSegment(segs, segment{cp.host + ds, data[ds-cp.ws : de-cp.ws]})
				if err := img.oldSegment(cp, de, ue, &segs); err != nil {
					return err
				}
			case cp.newHost:
				if k := g.unitKind(cp.old, u); k == KindData || k == KindCompressed {
					if err := img.oldSegment(cp, us, ue, &segs); err != nil {
						return err
					}
				}
			}
		}
	}
	return img.writeSegments(segs)
}

// appendSegment appends s, extending the previous segment instead when s
// continues it both on disk and in memory.
func appendSegment(segs []segment, s segment) []segment {
	if k := len(segs) - 1; k >= 0 && len(s.buf) > 0 {
		p := &segs[k]
		n := len(p.buf)
		if p.host+int64(n) == s.host && cap(p.buf) >= n+len(s.buf) && &p.buf[:n+1][n] == &s.buf[0] {
			p.buf = p.buf[:n+len(s.buf)]
			return segs
		}
	}
	return append(segs, s)
}

// oldSegment appends a segment that rewrites bytes [a, b) of a planned
// cluster with their old contents. Nothing is written when they read as
// zeros and the target already reads as zeros.
func (img *Image) oldSegment(cp *clusterPlan, a, b int64, segs *[]segment) error {
	if a >= b {
		return nil
	}
	g := &img.g
	goff := cp.gc<<g.clusterBits + a
	kind := g.unitKind(cp.old, int(a>>g.unitBits))
	if cp.fresh && (kind == KindZero || (kind == KindUnallocated && (goff >= img.Size() || !img.backingCovers(goff)))) {
		return nil
	}
	buf := make([]byte, b-a)
	m := Mapping{Offset: goff, Length: b - a, Kind: kind}
	switch kind {
	case KindData:
		m.Host = hostCluster(cp.old.e) + a
	case KindCompressed:
		m.Host, m.CompressedLen = g.compressedRange(cp.old.e)
	}
	if err := img.readMapping(m, buf, goff >= img.Size()); err != nil { // VM state has no backing
		return err
	}
	*segs = append(*segs, segment{cp.host + a, buf})
	return nil
}

// backingCovers reports whether guest offset off lies inside the backing
// file.
func (img *Image) backingCovers(off int64) bool {
	return img.backing != nil && off < img.backing.Size()
}

// writeSegments writes segments, merging host-contiguous neighbours into
// one vectored write.
func (img *Image) writeSegments(segs []segment) error {
	vw, _ := img.f.(vectorWriter)
	for i := 0; i < len(segs); {
		j := i + 1
		end := segs[i].host + int64(len(segs[i].buf))
		for j < len(segs) && segs[j].host == end {
			end += int64(len(segs[j].buf))
			j++
		}
		var err error
		switch {
		case j-i == 1:
			_, err = img.f.WriteAt(segs[i].buf, segs[i].host)
		case vw != nil:
			bufs := make([][]byte, 0, j-i)
			for _, s := range segs[i:j] {
				bufs = append(bufs, s.buf)
			}
			_, err = vw.WriteVecAt(bufs, segs[i].host)
		default:
			for _, s := range segs[i:j] {
				if _, err = img.f.WriteAt(s.buf, s.host); err != nil {
					break
				}
			}
		}
		if err != nil {
			return img.errf(err, "write data at host offset %#x", segs[i].host)
		}
		i = j
	}
	return nil
}

// commitLocked installs a plan's new mappings after its data is written,
// or rolls the allocation back if the write failed. Either way the
// clusters leave the in-flight set. Precondition: mu is held.
func (img *Image) commitLocked(pl *plan, ioErr error) error {
	defer func() {
		for _, cp := range pl.clusters {
			delete(img.inflight, cp.gc)
		}
		img.cond.Broadcast()
	}()
	if ioErr != nil {
		img.rollbackAlloc(pl)
		return ioErr
	}
	t, err := img.l2Table(img.l1[pl.l1i])
	if err != nil {
		img.rollbackAlloc(pl)
		return err
	}
	g := &img.g
	for _, cp := range pl.clusters {
		ci := cp.gc & (g.l2Entries - 1)
		g.writeL2Entry(t.data, ci, img.newEntry(&cp))
		if cp.newHost {
			img.freeEntryLater(cp.old)
		}
	}
	img.l2c.setDirty(t)
	return nil
}

// newEntry computes a planned cluster's L2 entry after its write.
func (img *Image) newEntry(cp *clusterPlan) l2Entry {
	g := &img.g
	e := uint64(cp.host) | oflagCopied
	if !g.extL2 {
		return l2Entry{e: e}
	}
	u0, u1 := int(cp.ws>>g.unitBits), int((cp.we-1)>>g.unitBits)
	touched := unitMask(u0, u1-u0+1)
	old := cp.old
	var alloc, zero uint32
	switch {
	case isCompressed(old.e):
		alloc = ^uint32(0)
	case hostCluster(old.e) != 0:
		alloc = allocBits(old.bitmap) | touched
		zero = zeroBits(old.bitmap) &^ touched
	default:
		alloc = touched
		zero = zeroBits(old.bitmap) &^ touched
	}
	return l2Entry{e: e, bitmap: makeBitmap(alloc, zero)}
}

// isInflight reports whether guest cluster gc's mapping is being changed.
// Precondition: mu is held.
func (img *Image) isInflight(gc int64) bool {
	_, ok := img.inflight[gc]
	return ok
}

// writableL2 returns the L2 table for L1 index l1i, owned by the active
// image only: it allocates a new table or copies a shared one (after a
// snapshot) as needed. Precondition: mu is held.
func (img *Image) writableL2(l1i int64) (*cacheEntry, error) {
	g := &img.g
	if l1i >= int64(len(img.l1)) {
		return nil, img.errf(ErrRange, "L1 index %d beyond the L1 table", l1i)
	}
	l1e := img.l1[l1i]
	off := int64(l1e & l1OffsetMask)
	if off == 0 {
		c, _, _, err := img.allocRun(1)
		if err != nil {
			return nil, err
		}
		if err := img.makeRoom(img.l2c); err != nil {
			return nil, err
		}
		e := img.l2c.insert(c*g.cs, make([]byte, g.cs))
		img.l2c.setDirty(e)
		img.setL1(l1i, uint64(c*g.cs)|oflagCopied)
		return e, nil
	}
	t, err := img.l2Table(l1e)
	if err != nil {
		return nil, err
	}
	if l1e&oflagCopied != 0 {
		return t, nil
	}
	rc, err := img.refcount(off / g.cs)
	if err != nil {
		return nil, err
	}
	switch rc {
	case 0:
		return nil, img.markCorrupt(img.errf(ErrCorrupt, "L2 table at %#x has refcount 0", off))
	case 1:
		img.setL1(l1i, img.l1[l1i]|oflagCopied)
		return t, nil
	}
	// Shared with a snapshot: copy it. The data clusters keep their
	// refcounts (one per L1 tree that reaches them), so every entry of
	// the copy is shared too and loses its COPIED flag.
	t.pin++
	c, _, _, err := img.allocRun(1)
	t.pin--
	if err != nil {
		return nil, err
	}
	buf := bytes.Clone(t.data)
	for i := int64(0); i < g.l2Entries; i++ {
		le := g.readL2Entry(buf, i)
		le.e &^= oflagCopied
		g.writeL2Entry(buf, i, le)
	}
	if err := img.makeRoom(img.l2c); err != nil {
		return nil, err
	}
	e := img.l2c.insert(c*g.cs, buf)
	img.l2c.setDirty(e)
	img.setL1(l1i, uint64(c*g.cs)|oflagCopied)
	img.freeLater(off / g.cs)
	return e, nil
}
