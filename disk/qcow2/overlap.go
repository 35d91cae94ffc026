package qcow2

import "fmt"

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
// QEMU's "cached" overlap check. It costs a pass over the L1 and refcount
// tables, so it guards allocation, where only an image with wrong
// refcounts can hand out a cluster in use. Precondition: mu is held.
func (img *Image) metadataIn(off, n int64) string {
	if what := img.fixedMetadataIn(off, n); what != "" {
		return what
	}
	cs := img.g.cs
	for _, e := range img.l1 {
		if t := int64(e & l1OffsetMask); overlaps(off, n, t, cs) {
			return fmt.Sprintf("the L2 table at %#x", t)
		}
	}
	for _, e := range img.rt[:img.rtUsed] {
		if b := int64(e & rtOffsetMask); overlaps(off, n, b, cs) {
			return fmt.Sprintf("the refcount block at %#x", b)
		}
	}
	for _, s := range img.snaps {
		if overlaps(off, n, int64(s.l1Offset), int64(s.l1Size)*8) {
			return fmt.Sprintf("the L1 table of snapshot %q", s.name)
		}
	}
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

// overlaps reports whether the host ranges [a, a+an) and [b, b+bn)
// overlap. A structure at offset 0 or of length 0 is absent and overlaps
// nothing.
func overlaps(a, an, b, bn int64) bool {
	return bn > 0 && b != 0 && a < b+bn && b < a+an
}

// checkDataTarget refuses to write guest data over metadata or past the
// end of the file: only a corrupt image maps guest clusters there. This is
// QEMU's "overlap check" (main header, active tables, refcount table,
// snapshot tables and cached tables). Precondition: mu is held.
func (img *Image) checkDataTarget(h int64) error {
	what := img.fixedMetadataAt(h)
	switch {
	case what != "":
	case h >= img.fileSize:
		what = "the space past the end of the file"
	case img.l2c.m[h] != nil:
		what = "an L2 table"
	case img.rbc.m[h] != nil:
		what = "a refcount block"
	}
	if what == "" {
		for _, s := range img.snaps {
			if overlaps(h, img.g.cs, int64(s.l1Offset), int64(s.l1Size)*8) {
				what = "a snapshot L1 table"
				break
			}
		}
	}
	if what == "" {
		return nil
	}
	return img.markCorrupt(img.errf(ErrCorrupt, "refusing to write guest data at host offset %#x, over %s", h, what))
}
