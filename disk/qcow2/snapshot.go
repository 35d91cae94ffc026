package qcow2

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"time"
)

// ErrNoSnapshot is returned for an unknown snapshot ID or name.
var ErrNoSnapshot = errors.New("no such snapshot")

// ErrSnapshotExists is returned for a new snapshot whose name is taken.
var ErrSnapshotExists = errors.New("a snapshot of that name already exists")

// SnapshotInfo describes an internal snapshot.
type SnapshotInfo struct {
	ID          string
	Name        string
	Date        time.Time
	VMClock     time.Duration // guest run time when taken
	VMStateSize int64         // bytes of saved VM state (0: disk only)
	DiskSize    int64         // virtual disk size when taken
}

// SnapshotOptions are the optional parts of a new snapshot.
type SnapshotOptions struct {
	// Date defaults to now.
	Date time.Time
	// VMClock is the guest run time to record.
	VMClock time.Duration
	// VMStateSize is the size of the VM state written with WriteVMState
	// beforehand; the snapshot keeps it and the active image drops it.
	VMStateSize int64
}

// Snapshots lists the internal snapshots in table order.
func (img *Image) Snapshots() []SnapshotInfo {
	img.mu.Lock()
	defer img.mu.Unlock()
	out := make([]SnapshotInfo, len(img.snaps))
	for i := range img.snaps {
		out[i] = img.snapInfo(&img.snaps[i])
	}
	return out
}

func (img *Image) snapInfo(s *snapshotEntry) SnapshotInfo {
	ds := int64(s.diskSize)
	if !s.hasDiskSize {
		ds = img.Size()
	}
	return SnapshotInfo{
		ID:          s.id,
		Name:        s.name,
		Date:        s.date(),
		VMClock:     time.Duration(s.vmClockNsec),
		VMStateSize: int64(s.vmStateSize),
		DiskSize:    ds,
	}
}

// findSnapshot returns the index of the snapshot with this ID, or else
// this name, as QEMU looks them up. Precondition: mu is held.
func (img *Image) findSnapshot(idOrName string) (int, error) {
	for i, s := range img.snaps {
		if s.id == idOrName {
			return i, nil
		}
	}
	for i, s := range img.snaps {
		if s.name == idOrName {
			return i, nil
		}
	}
	return -1, img.errf(ErrNoSnapshot, "snapshot %q", idOrName)
}

// vmStateOffset is where VM state lives in the guest address space: the
// first L1 entry past the disk. Precondition: mu is held.
func (img *Image) vmStateOffset() int64 {
	g := &img.g
	return int64(l1EntriesFor(img.hdr.Size, g.clusterBits, g.l2Bits)) << (g.clusterBits + g.l2Bits)
}

// WriteVMState writes VM state at offset off of the state area of the
// active image; CreateSnapshot then keeps it with the snapshot.
func (img *Image) WriteVMState(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, img.errf(ErrRange, "VM state offset %d", off)
	}
	release := img.quiesce()
	if err := img.writable(); err != nil {
		release()
		return 0, err
	}
	g := &img.g
	start := img.vmStateOffset() + off
	need := g.l1Index(start+int64(len(p))-1) + 1
	if need > int64(len(img.l1)) {
		if err := img.growL1Locked(need); err != nil {
			release()
			return 0, err
		}
	}
	release()
	img.gate.RLock()
	defer img.gate.RUnlock()
	if err := img.writeRange(p, start); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadVMState reads VM state of the active image (after ApplySnapshot, the
// state saved with that snapshot).
func (img *Image) ReadVMState(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, img.errf(ErrRange, "VM state offset %d", off)
	}
	img.mu.Lock()
	start := img.vmStateOffset() + off
	img.mu.Unlock()
	img.gate.RLock()
	defer img.gate.RUnlock()
	if err := img.readRange(nil, p, start, true); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CreateSnapshot records the current disk contents (and any VM state
// written with WriteVMState) as an internal snapshot. Names must be
// unique.
//
// Order: the refcounts of everything the active tables reach are raised
// and the active tables lose their COPIED flags (durable, refcounts
// first); then the L1 copy and the new snapshot table are written; one
// header write publishes them. A crash before that leaks clusters only.
func (img *Image) CreateSnapshot(name string, o SnapshotOptions) (SnapshotInfo, error) {
	release := img.quiesce()
	defer release()
	if err := img.writable(); err != nil {
		return SnapshotInfo{}, err
	}
	if name == "" || len(name) > maxSnapshotNameLen {
		return SnapshotInfo{}, img.failf("a snapshot name must be 1 to %d bytes long", maxSnapshotNameLen)
	}
	for _, s := range img.snaps {
		if s.name == name {
			return SnapshotInfo{}, img.errf(ErrSnapshotExists, "create snapshot %q", name)
		}
	}
	if len(img.snaps) >= maxSnapshots {
		return SnapshotInfo{}, img.errf(ErrUnsupported, "too many snapshots (%d)", len(img.snaps))
	}
	if err := img.flushLocked(true); err != nil {
		return SnapshotInfo{}, err
	}
	if err := img.adjustTree(img.l1, +1); err != nil {
		return SnapshotInfo{}, err
	}
	if err := img.fixCopied(img.l1, true); err != nil {
		return SnapshotInfo{}, err
	}
	if err := img.writeBackLocked(); err != nil {
		return SnapshotInfo{}, err
	}
	l1Off, err := img.writeL1Copy(img.l1)
	if err != nil {
		return SnapshotInfo{}, err
	}
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	s := snapshotEntry{
		l1Offset:    uint64(l1Off),
		l1Size:      uint32(len(img.l1)),
		id:          img.newSnapshotID(),
		name:        name,
		dateSec:     uint32(date.Unix()),
		dateNsec:    uint32(date.Nanosecond()),
		vmClockNsec: uint64(o.VMClock),
		vmStateSize: uint64(max(0, o.VMStateSize)),
		diskSize:    img.hdr.Size,
		hasDiskSize: true,
		icount:      ^uint64(0),
	}
	snaps := append(append([]snapshotEntry(nil), img.snaps...), s)
	if err := img.writeSnapshotTableLocked(snaps); err != nil {
		return SnapshotInfo{}, err
	}
	// The VM state now belongs to the snapshot: drop it from the active
	// image, as QEMU does.
	if err := img.dropActiveFrom(img.vmStateOffset()); err != nil {
		return SnapshotInfo{}, err
	}
	if err := img.flushLocked(true); err != nil {
		return SnapshotInfo{}, err
	}
	return img.snapInfo(&img.snaps[len(img.snaps)-1]), nil
}

// newSnapshotID returns one more than the largest numeric ID, as QEMU.
func (img *Image) newSnapshotID() string {
	maxID := 0
	for _, s := range img.snaps {
		if n, err := strconv.Atoi(s.id); err == nil && n > maxID {
			maxID = n
		}
	}
	return strconv.Itoa(maxID + 1)
}

// ApplySnapshot reverts the disk (and its size) to a snapshot; the
// snapshot's VM state becomes readable with ReadVMState.
//
// Order: the snapshot tree's refcounts are raised first (durable), then
// the active L1 table is overwritten with the snapshot's, and only then
// are the old tree's refcounts lowered. A crash at any point leaks
// clusters only.
func (img *Image) ApplySnapshot(idOrName string) error {
	release := img.quiesce()
	defer release()
	i, snapL1, err := img.prepareSnapshotOp(idOrName)
	if err != nil {
		return err
	}
	s := img.snaps[i]
	if err := img.adjustTree(snapL1, +1); err != nil {
		return err
	}
	if err := img.writeBackLocked(); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	if int64(len(snapL1)) > int64(len(img.l1)) {
		if err := img.growL1Locked(int64(len(snapL1))); err != nil {
			return err
		}
	}
	oldL1 := append([]uint64(nil), img.l1...)
	newL1 := make([]uint64, len(img.l1))
	copy(newL1, snapL1)
	img.setL1Table(newL1)
	if err := img.writeTableRange(img.l1, 0, int64(len(img.l1)), int64(img.hdr.L1TableOffset), "L1 table"); err != nil {
		return err
	}
	img.l1DirtyLo, img.l1DirtyHi = 0, 0
	if err := img.sync(); err != nil {
		return err
	}
	if s.hasDiskSize && s.diskSize != img.hdr.Size {
		img.hdr.Size = s.diskSize
		if err := img.writeHeaderLocked(); err != nil {
			return err
		}
		if err := img.sync(); err != nil {
			return err
		}
		img.size.Store(int64(s.diskSize))
	}
	if err := img.adjustTree(oldL1, -1); err != nil {
		return err
	}
	img.dec.invalidate()
	if err := img.fixCopied(img.l1, true); err != nil {
		return err
	}
	return img.flushLocked(false)
}

// DeleteSnapshot removes a snapshot and frees what only it referenced.
//
// Order: the new snapshot table is published first; then the snapshot
// tree's refcounts are lowered and the active tables regain COPIED flags
// where their refcount dropped to one.
func (img *Image) DeleteSnapshot(idOrName string) error {
	release := img.quiesce()
	defer release()
	i, snapL1, err := img.prepareSnapshotOp(idOrName)
	if err != nil {
		return err
	}
	s := img.snaps[i]
	snaps := append(append([]snapshotEntry(nil), img.snaps[:i]...), img.snaps[i+1:]...)
	if err := img.writeSnapshotTableLocked(snaps); err != nil {
		return err
	}
	if err := img.adjustTree(snapL1, -1); err != nil {
		return err
	}
	g := &img.g
	for c := int64(s.l1Offset) / g.cs; c < alignUp(int64(s.l1Offset)+int64(s.l1Size)*8, g.cs)/g.cs; c++ {
		if _, err := img.addRefcount(c, -1); err != nil {
			return err
		}
	}
	img.dec.invalidate()
	if err := img.fixCopied(img.l1, true); err != nil {
		return err
	}
	return img.flushLocked(false)
}

// prepareSnapshotOp starts an operation on an existing snapshot: the
// image must be writable, its metadata is flushed, and the snapshot's
// index and L1 table are returned. Precondition: quiesced.
func (img *Image) prepareSnapshotOp(idOrName string) (int, []uint64, error) {
	if err := img.writable(); err != nil {
		return 0, nil, err
	}
	i, err := img.findSnapshot(idOrName)
	if err != nil {
		return 0, nil, err
	}
	if err := img.flushLocked(true); err != nil {
		return 0, nil, err
	}
	s := img.snaps[i]
	l1, err := img.readTable(int64(s.l1Offset), int64(s.l1Size), "snapshot L1 table")
	return i, l1, err
}

// adjustTree adds delta to the refcount of every L2 table and data
// cluster reachable from l1, once per L1 entry that reaches it; each
// distinct table is walked once (see l2Tally). Precondition: mu is held;
// no request is running.
func (img *Image) adjustTree(l1 []uint64, delta int64) error {
	g := &img.g
	for _, ref := range distinctL2(l1) {
		d := delta * ref.refs
		t, err := img.l2Table(uint64(ref.off))
		if err != nil {
			return err
		}
		t.pin++
		for i := int64(0); i < g.l2Entries; i++ {
			le := g.readL2Entry(t.data, i)
			if isCompressed(le.e) {
				first, n := g.compressedClusters(le.e)
				for c := first; c < first+n; c++ {
					if _, err := img.addRefcount(c, d); err != nil {
						t.pin--
						return err
					}
				}
			} else if h := hostCluster(le.e); h != 0 {
				if _, err := img.addRefcount(h/g.cs, d); err != nil {
					t.pin--
					return err
				}
			}
		}
		t.pin--
		if _, err := img.addRefcount(ref.off/g.cs, d); err != nil {
			return err
		}
	}
	return nil
}

// fixCopied sets the COPIED flag of every entry of l1 and of the L2
// tables it reaches exactly when the refcount is one. active marks the L1
// entries dirty (l1 is img.l1). Precondition: mu is held.
func (img *Image) fixCopied(l1 []uint64, active bool) error {
	g := &img.g
	for l1i, l1e := range l1 {
		off := int64(l1e & l1OffsetMask)
		if off == 0 {
			continue
		}
		rc, err := img.refcount(off / g.cs)
		if err != nil {
			return err
		}
		ne := l1e &^ oflagCopied
		if rc == 1 {
			ne |= oflagCopied
		}
		if ne != l1e {
			l1[l1i] = ne
			if active {
				img.markL1Dirty(int64(l1i))
			}
		}
	}
	for _, ref := range distinctL2(l1) {
		t, err := img.l2Table(uint64(ref.off))
		if err != nil {
			return err
		}
		changed := false
		for i := int64(0); i < g.l2Entries; i++ {
			le := g.readL2Entry(t.data, i)
			h := hostCluster(le.e)
			if isCompressed(le.e) || h == 0 {
				continue
			}
			rc, err := img.refcount(h / g.cs)
			if err != nil {
				return err
			}
			want := le.e &^ oflagCopied
			if rc == 1 {
				want |= oflagCopied
			}
			if want != le.e {
				le.e = want
				g.writeL2Entry(t.data, i, le)
				changed = true
			}
		}
		if changed {
			img.l2c.setDirty(t)
		}
	}
	return nil
}

// dropActiveFrom unmaps every guest cluster of the active image at or
// after guest offset from (which is L1-entry aligned). The freed clusters
// are released by the next flush. Precondition: mu is held.
func (img *Image) dropActiveFrom(from int64) error {
	g := &img.g
	walked := map[int64]bool{}
	for l1i := from >> (g.clusterBits + g.l2Bits); l1i < int64(len(img.l1)); l1i++ {
		l1e := img.l1[l1i]
		off := int64(l1e & l1OffsetMask)
		if off == 0 {
			continue
		}
		if err := img.freeTableEntriesOnce(l1e, walked); err != nil {
			return err
		}
		img.freeLater(off / g.cs)
		img.clearL1(l1i)
	}
	img.reindexL1()
	return nil
}

// freeTableEntriesOnce queues the clusters the L2 table of L1 entry l1e
// references for freeing, unless walked says that table was done: a
// table several L1 entries name (only a damaged image has one) gives up
// its clusters once, which at worst leaks them, and is walked once.
func (img *Image) freeTableEntriesOnce(l1e uint64, walked map[int64]bool) error {
	off := int64(l1e & l1OffsetMask)
	if walked[off] {
		return nil
	}
	walked[off] = true
	t, err := img.l2Table(l1e)
	if err != nil {
		return err
	}
	for i := int64(0); i < img.g.l2Entries; i++ {
		img.freeEntryLater(img.g.readL2Entry(t.data, i))
	}
	return nil
}

// allocContiguous allocates n contiguous clusters after every used one
// and makes their refcounts durable-ready (written, not yet synced).
// Precondition: mu is held.
func (img *Image) allocContiguous(n int64) (int64, error) {
	saved := img.freeHint
	img.freeHint = img.allocEnd
	first, got, _, err := img.allocRun(n)
	img.freeHint = min(saved, img.freeHint)
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, img.errf(ErrCorrupt, "could not allocate %d contiguous clusters", n)
	}
	if _, err := img.writeRefBlocks(); err != nil {
		return 0, err
	}
	return first * img.g.cs, nil
}

// writeL1Copy writes a copy of an L1 table to new clusters and returns
// its offset.
func (img *Image) writeL1Copy(l1 []uint64) (int64, error) {
	g := &img.g
	if len(l1) == 0 {
		return 0, nil
	}
	off, err := img.allocContiguous(alignUp(int64(len(l1))*8, g.cs) / g.cs)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, len(l1)*8)
	for i, v := range l1 {
		binary.BigEndian.PutUint64(buf[i*8:], v)
	}
	if err := img.writeMeta(buf, off, "snapshot L1 table"); err != nil {
		return 0, err
	}
	return off, nil
}

// writeSnapshotTableLocked publishes a new snapshot table: written to new
// clusters, then switched to by one header write; the old table is freed.
// Precondition: mu is held; no request is running.
func (img *Image) writeSnapshotTableLocked(snaps []snapshotEntry) error {
	g := &img.g
	buf := marshalSnapshotTable(snaps, img.hdr.Size)
	var off int64
	if len(snaps) > 0 {
		if int64(len(buf)) > maxSnapshotTableBytes {
			return img.errf(ErrUnsupported, "snapshot table would exceed %d bytes", maxSnapshotTableBytes)
		}
		var err error
		if off, err = img.allocContiguous(alignUp(int64(len(buf)), g.cs) / g.cs); err != nil {
			return err
		}
		if err := img.writeMeta(buf, off, "snapshot table"); err != nil {
			return err
		}
	}
	if err := img.sync(); err != nil {
		return err
	}
	oldOff, oldLen := int64(img.hdr.SnapshotsOffset), img.snapTableLen
	oldN := img.hdr.NbSnapshots
	img.hdr.NbSnapshots = uint32(len(snaps))
	img.hdr.SnapshotsOffset = uint64(off)
	if err := img.writeHeaderLocked(); err != nil {
		return err
	}
	if err := img.sync(); err != nil {
		return err
	}
	img.snaps = snaps
	img.snapTableLen = int64(len(buf))
	if oldN > 0 && oldOff != 0 {
		for c := oldOff / g.cs; c < alignUp(oldOff+oldLen, g.cs)/g.cs; c++ {
			if _, err := img.addRefcount(c, -1); err != nil {
				return err
			}
		}
	}
	return nil
}

// View reads the disk contents and VM state of one snapshot without
// applying it (like `qemu-img convert -l`). It stays valid until the
// snapshot is deleted or the image closed.
type View struct {
	img  *Image
	l1   []uint64
	info SnapshotInfo
}

// SnapshotView opens a read-only view of a snapshot.
func (img *Image) SnapshotView(idOrName string) (*View, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	i, err := img.findSnapshot(idOrName)
	if err != nil {
		return nil, err
	}
	s := img.snaps[i]
	l1, err := img.readTable(int64(s.l1Offset), int64(s.l1Size), "snapshot L1 table")
	if err != nil {
		return nil, err
	}
	if len(l1) == 0 {
		l1 = []uint64{0} // non-nil: readRange treats nil as the active table
	}
	return &View{img: img, l1: l1, info: img.snapInfo(&s)}, nil
}

// Info describes the snapshot.
func (v *View) Info() SnapshotInfo { return v.info }

// Size is the snapshot's virtual disk size.
func (v *View) Size() int64 { return v.info.DiskSize }

// ReadAt reads the snapshot's disk contents.
func (v *View) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, v.img.errf(ErrRange, "read at negative offset %d", off)
	}
	return v.read(p, off, v.info.DiskSize, 0, false)
}

// ReadVMState reads the snapshot's saved VM state.
func (v *View) ReadVMState(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.EOF
	}
	g := &v.img.g
	base := int64(l1EntriesFor(uint64(v.info.DiskSize), g.clusterBits, g.l2Bits)) << (g.clusterBits + g.l2Bits)
	return v.read(p, off, v.info.VMStateSize, base, true)
}

// read reads p at off of an area of limit bytes starting at guest offset
// base, with io.ReaderAt's rules at the end of the area.
func (v *View) read(p []byte, off, limit, base int64, zeroUnalloc bool) (int, error) {
	if off >= limit {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(int64(len(p)), limit-off)
	v.img.gate.RLock()
	defer v.img.gate.RUnlock()
	if err := v.img.readRange(v.l1, p[:n], base+off, zeroUnalloc); err != nil {
		return 0, err
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}
