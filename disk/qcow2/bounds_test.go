package qcow2

import (
	"bytes"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Hostile images whose header fields or tables are each within their caps
// but drive loops or allocations far beyond what the file holds. Each must
// be handled in time proportional to the file (a check, an open for
// writing, a snapshot), not to the repetitions the tables claim.

// finishes fails the test when fn has not returned after a minute: the
// loops these tests guard took hours or days before they were bounded
// (and take milliseconds now), so this is a hang detector, not a timing.
func finishes(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not finish within a minute: a loop driven by the image's tables", what)
	}
}

// bigClusterImage makes an image with 2 MiB clusters and writes one data
// cluster at guest offset 0; it returns the image bytes and layout facts
// (the L2 table and data cluster of guest cluster 0).
func bigClusterImage(t *testing.T, refcountBits int) (data []byte, info *Image, l2, dataCluster int64) {
	t.Helper()
	ms := &memStorage{}
	if err := Create("big.qcow2", CreateOptions{Size: 64 << 20, ClusterSize: 2 << 20, RefcountBits: refcountBits, Storage: ms}); err != nil {
		t.Fatal(err)
	}
	img, err := Open("big.qcow2", Options{Storage: ms})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	info, err = Open("big.qcow2", Options{Storage: &memStorage{data: bytes.Clone(ms.data)}, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { info.Close() })
	l2 = int64(info.l1[0] & l1OffsetMask)
	le := info.g.readL2Entry(mustL2(t, info).data, 0)
	return ms.data, info, l2, hostCluster(le.e)
}

func mustL2(t *testing.T, img *Image) *cacheEntry {
	t.Helper()
	img.mu.Lock()
	defer img.mu.Unlock()
	e, err := img.l2Table(img.l1[0])
	if err != nil || e == nil {
		t.Fatalf("L2 table of guest cluster 0: %v", err)
	}
	return e
}

// TestRefcountTableScanBounded: a refcount table naming one empty block
// 256K times. Opening for writing looks for the last used cluster; it
// used to scan all 16M entries of the block once per mention (4e12
// steps). Now only the blocks that cover the file are read.
func TestRefcountTableScanBounded(t *testing.T) {
	data, info, _, _ := bigClusterImage(t, 1)
	cs := info.g.cs
	empty := int64(len(data))
	data = append(data, make([]byte, cs)...) // an empty block
	rt := int64(info.hdr.RefcountTableOffset)
	for i := int64(1); i < cs/8; i++ {
		be64put(data, int(rt+i*8), uint64(empty))
	}
	ms := &memStorage{data: data}
	var img *Image
	var err error
	finishes(t, "opening for writing", func() { img, err = Open("hostile.qcow2", Options{Storage: ms}) })
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer img.Close()
	// The empty block sits in a cluster its own block calls free: the
	// allocator must refuse to hand it out rather than overwrite it.
	if _, err := img.WriteAt(make([]byte, 4096), 8<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("allocating write: %v, want ErrCorrupt (the free cluster holds a refcount block)", err)
	}
}

// TestRepeatedL2TablesBounded: an L1 table whose 256K entries all name
// one L2 table whose 256K entries all map data. Walking the tree once per
// L1 entry (check, the repair of a dirty image at open, snapshot
// creation) took 7e10 steps; each distinct table is now walked once, its
// references counted as many times as it is named.
func TestRepeatedL2TablesBounded(t *testing.T) {
	for _, bits := range []int{16, 64} {
		data, info, l2, d := bigClusterImage(t, bits)
		cs := info.g.cs
		l1 := int64(info.hdr.L1TableOffset)
		be32put(data, 36, uint32(cs/8)) // L1 size: the whole cluster
		for i := int64(0); i < cs/8; i++ {
			be64put(data, int(l1+i*8), uint64(l2)|oflagCopied)
			be64put(data, int(l2+i*8), uint64(d)|oflagCopied)
		}

		ro, err := Open("hostile.qcow2", Options{Storage: &memStorage{data: bytes.Clone(data)}, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var res *CheckResult
		finishes(t, "check", func() { res, err = ro.Check(RepairNone) })
		ro.Close()
		if err != nil || res.Corruptions == 0 {
			t.Fatalf("%d-bit refcounts: check: %+v, %v; want corruptions found", bits, res, err)
		}

		if bits == 16 {
			// Marked dirty, the image has its refcounts rebuilt when it
			// is opened for writing: they do not fit 16 bits here.
			dirty := bytes.Clone(data)
			dirty[79] |= IncompatDirty
			finishes(t, "opening a dirty image for writing", func() {
				_, err = Open("hostile.qcow2", Options{Storage: &memStorage{data: dirty}})
			})
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("open for the rebuild: %v, want the refcounts refused as too wide", err)
			}
			continue
		}
		img, err := Open("hostile.qcow2", Options{Storage: &memStorage{data: bytes.Clone(data)}})
		if err != nil {
			t.Fatal(err)
		}
		finishes(t, "creating a snapshot", func() { _, err = img.CreateSnapshot("s", SnapshotOptions{}) })
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		img.Close()
	}
}

// TestSnapshotL1TablesBounded: snapshots whose L1 tables each fit the
// file but together are many times its size (a check or a rebuild reads
// them all) are refused at open; each snapshot's table is its own.
func TestSnapshotL1TablesBounded(t *testing.T) {
	base, info := hostileBase(t)
	cs := info.g.cs
	s := info.snaps[0]
	s.l1Offset = uint64(cs)
	s.l1Size = uint32((int64(len(base)) - cs) / 8)
	var many []snapshotEntry
	for i := 0; i < 8; i++ {
		e := s
		e.id, e.name = itoa(int64(i+10)), "copy"+itoa(int64(i))
		many = append(many, e)
	}
	table := marshalSnapshotTable(many, info.hdr.Size)
	data := append(bytes.Clone(base), table...)
	be64put(data, 64, uint64(len(base)))
	be32put(data, 60, uint32(len(many)))
	_, err := Open("hostile.qcow2", Options{Storage: &memStorage{data: data}, ReadOnly: true})
	if !errors.Is(err, ErrFormat) || !bytes.Contains([]byte(err.Error()), []byte("add up to more than")) {
		t.Fatalf("open: %v, want ErrFormat for L1 tables larger than the file together", err)
	}
	// The same entries, each at its own place, are fine: one of them.
	data = append(bytes.Clone(base), marshalSnapshotTable(many[:1], info.hdr.Size)...)
	be64put(data, 64, uint64(len(base)))
	be32put(data, 60, 1)
	img, err := Open("ok.qcow2", Options{Storage: &memStorage{data: data}, ReadOnly: true})
	if err != nil {
		t.Fatalf("one snapshot L1 table as large as the file: %v", err)
	}
	img.Close()
}

// TestBitmapTableBounded: a persistent bitmap whose directory entry claims
// a table of 2^27 entries in a large sparse file. Check used to allocate
// and read 2 GiB for it; the table may not have more entries than a
// bitmap of the disk needs.
func TestBitmapTableBounded(t *testing.T) {
	ms := &memStorage{}
	if err := Create("bitmap.qcow2", CreateOptions{Size: 1 << 20, ClusterSize: 65536, Storage: ms}); err != nil {
		t.Fatal(err)
	}
	img, err := Open("bitmap.qcow2", Options{Storage: ms, NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	cs := img.g.cs
	dirOff := int64(len(ms.data))
	tableOff := dirOff + cs
	ext := make([]byte, 24)
	be32put(ext, 0, 1)               // one bitmap
	be64put(ext, 8, 32)              // directory size
	be64put(ext, 16, uint64(dirOff)) // directory offset
	img.mu.Lock()
	err = img.rewriteHeaderClusterLocked(append(img.exts, Extension{Type: extBitmaps, Data: ext}), "")
	img.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	st := newSparseStorage(ms.data)
	dir := make([]byte, cs)
	be64put(dir, 0, uint64(tableOff)) // bitmap table offset
	be32put(dir, 8, 1<<27)            // bitmap table entries
	dir[17] = 16                      // granularity 64 KiB
	if _, err := st.WriteAt(dir, dirOff); err != nil {
		t.Fatal(err)
	}
	if err := st.Truncate(tableOff + 8<<27 + cs); err != nil {
		t.Fatal(err)
	}
	st.data[95] |= AutoclearBitmaps
	ro, err := Open("bitmap.qcow2", Options{Storage: st, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	res, err := ro.Check(RepairNone)
	runtime.ReadMemStats(&ms1)
	if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 64<<20 {
		t.Fatalf("check allocated %d MiB for the bitmap table", grew>>20)
	}
	if err != nil || res.CheckErrors == 0 || !bytes.Contains([]byte(joinMessages(res)), []byte("bitmap table 0 has 134217728 entries")) {
		t.Fatalf("check: %+v, %v; want the bitmap table reported", res, err)
	}
}

func joinMessages(res *CheckResult) string {
	var b bytes.Buffer
	for _, m := range res.Messages {
		b.WriteString(m)
		b.WriteByte('\n')
	}
	return b.String()
}

// readLog is a Storage that records every byte range read from it.
type readLog struct {
	Storage
	mu    sync.Mutex
	reads [][2]int64
}

func (r *readLog) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.reads = append(r.reads, [2]int64{off, off + int64(len(p))})
	r.mu.Unlock()
	return r.Storage.ReadAt(p, off)
}

// readTwice reports a byte of [lo, hi) that was read more than once.
func (r *readLog) readTwice(lo, hi int64) (int64, bool) {
	seen := map[int64]bool{}
	for _, rd := range r.reads {
		for b := max(rd[0], lo); b < min(rd[1], hi); b++ {
			if seen[b] {
				return b, true
			}
			seen[b] = true
		}
	}
	return 0, false
}

// TestMetadataReadOnce: opening an image reads each byte of the header
// cluster and of the snapshot table once, so that what is validated is
// what is used even if the file changes meanwhile (it used to read the
// header's first 4 KiB, then the whole cluster again; a snapshot entry's
// fixed part, then the whole entry again).
func TestMetadataReadOnce(t *testing.T) {
	ms := &memStorage{}
	if err := Create("m.qcow2", CreateOptions{Size: 1 << 20, ClusterSize: 65536, Storage: ms}); err != nil {
		t.Fatal(err)
	}
	img, err := Open("m.qcow2", Options{Storage: ms})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"one", "two"} {
		if _, err := img.CreateSnapshot(name, SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	log := &readLog{Storage: &memStorage{data: bytes.Clone(ms.data)}}
	img, err = Open("m.qcow2", Options{Storage: log, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if b, twice := log.readTwice(0, img.g.cs); twice {
		t.Errorf("byte %#x of the header cluster was read twice", b)
	}
	st := int64(img.hdr.SnapshotsOffset)
	if b, twice := log.readTwice(st, st+img.snapTableLen); twice {
		t.Errorf("byte %#x of the snapshot table was read twice", b)
	}
}

// TestCheckMessagesBounded: refcount blocks that claim every cluster of
// the file is in use (one block, named by every refcount table entry)
// make every cluster a leak. Check counts them all but lists only the
// first maxCheckMessages: a large sparse file would otherwise give it a
// message per cluster, gigabytes of them.
func TestCheckMessagesBounded(t *testing.T) {
	ms := &memStorage{}
	if err := Create("leaky.qcow2", CreateOptions{Size: 16 << 20, ClusterSize: 512, Storage: ms}); err != nil {
		t.Fatal(err)
	}
	const fileSize = 12 << 20
	data := append(bytes.Clone(ms.data), make([]byte, fileSize-len(ms.data))...)
	block := int64(len(data))
	b := make([]byte, 512)
	for i := 0; i < 256; i++ {
		b[2*i+1] = 1 // 16-bit refcount 1
	}
	data = append(data, b...)
	rt := int64(len(data))
	for i := 0; i < 128; i++ {
		var e [8]byte
		be64put(e[:], 0, uint64(block))
		data = append(data, e[:]...)
	}
	be64put(data, 48, uint64(rt))
	be32put(data, 56, 2)
	img, err := Open("leaky.qcow2", Options{Storage: &memStorage{data: data}, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	res, err := img.Check(RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if res.Leaks < 20000 || len(res.Messages) != maxCheckMessages+1 || res.Unlisted == 0 ||
		!bytes.Contains([]byte(res.Messages[maxCheckMessages]), []byte("not listed")) {
		t.Fatalf("check: %d leaks, %d corruptions, %d messages, %d unlisted; want every leak counted, %d messages and a last line saying more are not listed",
			res.Leaks, res.Corruptions, len(res.Messages), res.Unlisted, maxCheckMessages+1)
	}
}
