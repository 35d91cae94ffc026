package qcow2

import (
	"fmt"
	"slices"
)

// Metadata overlap checks: paddock never writes guest data, and never
// allocates a cluster, over the image's own metadata, even when a damaged
// or hostile image points there. Every function here requires mu to be
// held.

// fixedMetadataAt names the header-referenced structure (header, active
// L1 table, refcount table, snapshot table) overlapping the cluster at
// off, or returns "". Precondition: mu is held.
func (img *Image) fixedMetadataAt(off int64) string {
	return img.fixedMetadataIn(off, img.g.cs)
}

// fixedMetadataIn is fixedMetadataAt for the host range [off, off+n).
func (img *Image) fixedMetadataIn(off, n int64) string {
	switch {
	case off < img.g.cs:
		return "the header"
	case overlaps(off, n, int64(img.hdr.L1TableOffset), int64(len(img.l1))*8):
		return "the active L1 table"
	case overlaps(off, n, int64(img.hdr.RefcountTableOffset), int64(img.hdr.RefcountTableClusters)*img.g.cs):
		return "the refcount table"
	case img.hdr.NbSnapshots > 0 && overlaps(off, n, int64(img.hdr.SnapshotsOffset), img.snapTableLen):
		return "the snapshot table"
	}
	return ""
}

// metadataIn names any metadata in the host range [off, off+n): the
// header-referenced structures, the active L2 tables, the refcount blocks,
// the snapshots' L1 tables and any cached table; or returns "". This is
// QEMU's default ("cached") overlap check, which needs no I/O: the active
// L2 tables and the refcount blocks come from the index (l2Set, rbSet)
// kept beside the L1 and refcount tables, whether or not the tables
// themselves are cached. It guards every allocation and every guest data
// write. Precondition: mu is held.
func (img *Image) metadataIn(off, n int64) string {
	if what := img.liveMetadataIn(off, n); what != "" {
		return what
	}
	cs := img.g.cs
	for c := alignDown(off, cs); c < off+n; c += cs {
		switch {
		case img.l2c.m[c] != nil:
			return fmt.Sprintf("the cached L2 table at %#x", c)
		case img.rbc.m[c] != nil:
			return fmt.Sprintf("the cached refcount block at %#x", c)
		}
	}
	return ""
}

// liveMetadataIn is metadataIn without the cached tables: only what the
// header, the L1 table, the refcount table and the snapshot table
// reference now. (A cached table may be one just dropped from the L1
// table, whose cluster is about to be freed.)
func (img *Image) liveMetadataIn(off, n int64) string {
	if what := img.fixedMetadataIn(off, n); what != "" {
		return what
	}
	cs := img.g.cs
	if t, ok := img.l2Set.overlapping(off, n, cs); ok {
		return fmt.Sprintf("the L2 table at %#x", t)
	}
	if b, ok := img.rbSet.overlapping(off, n, cs); ok {
		return fmt.Sprintf("the refcount block at %#x", b)
	}
	for _, s := range img.snaps {
		if overlaps(off, n, int64(s.l1Offset), int64(s.l1Size)*8) {
			return fmt.Sprintf("the L1 table of snapshot %q", s.name)
		}
	}
	return ""
}

// overlaps reports whether the host ranges [a, a+an) and [b, b+bn)
// overlap. A structure at offset 0 or of length 0 is absent and overlaps
// nothing.
func overlaps(a, an, b, bn int64) bool {
	return bn > 0 && b != 0 && a < b+bn && b < a+an
}

// checkDataTarget refuses to write guest data into the host cluster at h
// when it holds metadata (metadataIn) or lies past the end of the file:
// only a corrupt or hostile image maps guest clusters there. Like QEMU
// ("Preventing invalid write on metadata"), the image is marked corrupt.
// Precondition: mu is held.
func (img *Image) checkDataTarget(h int64) error {
	what := img.metadataIn(h, img.g.cs)
	if what == "" && h >= img.fileSize {
		what = "the space past the end of the file"
	}
	if what == "" {
		return nil
	}
	return img.markCorrupt(img.errf(ErrCorrupt, "refusing to write guest data at host offset %#x, over %s", h, what))
}

// clusterSet is a multiset of cluster-aligned host offsets: where the
// active L2 tables, or the refcount blocks, live. The distinct offsets are
// kept sorted, each with how many times the tables name it (a damaged
// image may name one cluster many times; dropping one mention keeps the
// others). Lookups are binary searches. Adding or dropping a distinct
// offset shifts the slice, which happens once per new or freed table, not
// per write; code that changes many L1 entries at once rebuilds the set.
type clusterSet struct {
	offs   []int64
	counts []int64
}

// newClusterSet returns the set of the offsets in entries selected by
// mask (zero offsets are absent tables).
func newClusterSet(entries []uint64, mask uint64) clusterSet {
	var all []int64
	for _, e := range entries {
		if off := int64(e & mask); off != 0 {
			all = append(all, off)
		}
	}
	slices.Sort(all)
	var s clusterSet
	for _, off := range all {
		if k := len(s.offs) - 1; k >= 0 && s.offs[k] == off {
			s.counts[k]++
			continue
		}
		s.offs = append(s.offs, off)
		s.counts = append(s.counts, 1)
	}
	return s
}

// add inserts one mention of off.
func (s *clusterSet) add(off int64) {
	i, ok := slices.BinarySearch(s.offs, off)
	if ok {
		s.counts[i]++
		return
	}
	s.offs = slices.Insert(s.offs, i, off)
	s.counts = slices.Insert(s.counts, i, 1)
}

// remove drops one mention of off, if there is one.
func (s *clusterSet) remove(off int64) {
	i, ok := slices.BinarySearch(s.offs, off)
	if !ok {
		return
	}
	if s.counts[i]--; s.counts[i] == 0 {
		s.offs = slices.Delete(s.offs, i, i+1)
		s.counts = slices.Delete(s.counts, i, i+1)
	}
}

// overlapping returns an offset of the set whose cluster [o, o+cs)
// overlaps the host range [off, off+n).
func (s *clusterSet) overlapping(off, n, cs int64) (int64, bool) {
	i, _ := slices.BinarySearch(s.offs, off-cs+1)
	if i < len(s.offs) && s.offs[i] < off+n {
		return s.offs[i], true
	}
	return 0, false
}

// setL1 stores entry i of the active L1 table and marks it dirty, keeping
// the index of active L2 tables in step. Every change of the active L1
// table goes through it, or through setL1Table, or clears entries with
// clearL1 and rebuilds the index once (reindexL1).
func (img *Image) setL1(i int64, v uint64) {
	old, nw := int64(img.l1[i]&l1OffsetMask), int64(v&l1OffsetMask)
	if old != nw {
		if old != 0 {
			img.l2Set.remove(old)
		}
		if nw != 0 {
			img.l2Set.add(nw)
		}
	}
	img.l1[i] = v
	img.markL1Dirty(i)
}

// setL1Table installs l1 as the active L1 table and indexes its L2 tables.
func (img *Image) setL1Table(l1 []uint64) {
	img.l1 = l1
	img.reindexL1()
}

// clearL1 clears entry i of the active L1 table without updating the
// index: for loops that clear many entries, then call reindexL1 once.
func (img *Image) clearL1(i int64) {
	img.l1[i] = 0
	img.markL1Dirty(i)
}

// reindexL1 rebuilds the index of the active L2 tables.
func (img *Image) reindexL1() {
	img.l2Set = newClusterSet(img.l1, l1OffsetMask)
}
