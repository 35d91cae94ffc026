package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"testing"
)

// Fuzz targets for every parser of untrusted bytes. The seed corpus is in
// testdata/fuzz (images made by qemu-img, see testdata/README) plus the
// images f.Add builds below. In CI they run as regular tests over the
// corpus, and briefly as fuzzers (make fuzz, which prints each target's
// executions per second); fuzz locally with e.g.
//
//	go test -run '^$' -fuzz FuzzOpenImage -fuzztime 200000x -fuzzminimizetime 100x ./disk/qcow2
//
// Bound -fuzzminimizetime: Go's default minimizes each new interesting
// image for up to 60 s, one removed byte per execution, during which the
// target makes no progress.

// seedImages returns small images of several layouts made by paddock.
func seedImages(f *testing.F) [][]byte { return seedImagesT(f) }

func seedImagesT(f testing.TB) [][]byte {
	f.Helper()
	var out [][]byte
	for _, o := range []CreateOptions{
		{ClusterSize: 512},
		{ClusterSize: 512, Version: 2},
		{ClusterSize: 16384, ExtendedL2: true},
		{ClusterSize: 4096, RefcountBits: 2, Compression: "zstd"},
		{ClusterSize: 4096, RefcountBits: 1},
	} {
		ms := &memStorage{}
		o.Size = 256 << 10
		o.Storage = ms
		if err := Create("seed.qcow2", o); err != nil {
			f.Fatal(err)
		}
		img, err := Open("seed.qcow2", Options{Storage: ms})
		if err != nil {
			f.Fatal(err)
		}
		p := bytes.Repeat([]byte("seed data "), 2000)
		if _, err := img.WriteAt(p[:5000], 1000); err != nil {
			f.Fatal(err)
		}
		cs := img.ClusterSize()
		if err := img.WriteCompressed(p[:cs], 64<<10); err != nil {
			f.Fatal(err)
		}
		if o.RefcountBits != 1 { // 1-bit refcounts cannot share clusters
			if _, err := img.CreateSnapshot("s", SnapshotOptions{}); err != nil {
				f.Fatal(err)
			}
		}
		if err := img.WriteZeroes(0, cs, false); err != nil {
			f.Fatal(err)
		}
		if err := img.Close(); err != nil {
			f.Fatal(err)
		}
		out = append(out, bytes.Clone(ms.data))
	}
	return out
}

func FuzzParseHeader(f *testing.F) {
	for _, img := range seedImages(f) {
		f.Add(img[:min(len(img), 512)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			return
		}
		_ = h.ValidateLayout(int64(len(data)) * 1024)
		again, err := ParseHeader(h.Marshal())
		if err != nil {
			t.Fatalf("re-parse of a marshalled header: %v", err)
		}
		if again.Size != h.Size || again.L1TableOffset != h.L1TableOffset || again.IncompatibleFeatures != h.IncompatibleFeatures ||
			again.HeaderLength != h.HeaderLength || again.CompressionType != h.CompressionType || !bytes.Equal(again.Tail, h.Tail) {
			t.Fatalf("header round trip: %+v != %+v", again, h)
		}
	})
}

func FuzzParseExtensions(f *testing.F) {
	for _, img := range seedImages(f) {
		f.Add(img[:min(len(img), 4096)], uint16(112), uint16(4096))
	}
	f.Fuzz(func(t *testing.T, data []byte, start, end uint16) {
		if int(start) > len(data) {
			return
		}
		exts, err := ParseExtensions(data, int(start), int(end))
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses the same.
		enc := marshalExtensions(exts)
		again, err := ParseExtensions(enc, 0, len(enc))
		if err != nil || len(again) != len(exts) {
			t.Fatalf("extension round trip: %v, %d != %d", err, len(again), len(exts))
		}
		for _, e := range exts {
			switch e.Type {
			case extFeatureTable:
				parseFeatureTable(e.Data)
			case extBitmaps:
				_, _ = parseBitmapsExt(e.Data)
			}
		}
	})
}

func FuzzParseSnapshotTable(f *testing.F) {
	entries := []snapshotEntry{
		{l1Offset: 0x30000, l1Size: 2, id: "1", name: "first", icount: ^uint64(0), hasDiskSize: true, diskSize: 1 << 20},
		{l1Offset: 0x40000, l1Size: 2, id: "2", name: "second", vmStateSize: 1234, extraTail: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}
	f.Add(marshalSnapshotTable(entries, 1<<20), uint16(2))
	f.Add(marshalSnapshotTable(entries[:1], 1<<20), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		snaps, used, err := parseSnapshotTable(data, int(n))
		if err != nil {
			return
		}
		if used > len(data) || len(snaps) != int(n) {
			t.Fatalf("parsed %d entries using %d of %d bytes", len(snaps), used, len(data))
		}
		enc := marshalSnapshotTable(snaps, 1<<20)
		again, _, err := parseSnapshotTable(enc, int(n))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		for i := range snaps {
			if again[i].id != snaps[i].id || again[i].name != snaps[i].name || again[i].l1Offset != snaps[i].l1Offset ||
				again[i].vmStateSize != snaps[i].vmStateSize || !bytes.Equal(again[i].extraTail, snaps[i].extraTail) {
				t.Fatalf("entry %d round trip: %+v != %+v", i, again[i], snaps[i])
			}
		}
	})
}

func FuzzL2Entry(f *testing.F) {
	f.Add(uint64(0x8000000000050000), uint64(0), uint8(16), false)
	f.Add(uint64(0x4000000000012345), uint64(0), uint8(12), false)
	f.Add(uint64(0x8000000000050000), uint64(0x0000ffff0000ffff), uint8(16), true)
	f.Add(uint64(1), uint64(0), uint8(9), false)
	f.Fuzz(func(t *testing.T, e, bitmap uint64, cb uint8, ext bool) {
		bits := uint32(minClusterBits) + uint32(cb)%(maxClusterBits-minClusterBits+1)
		if ext && bits < minExtL2Bits {
			bits = minExtL2Bits
		}
		h := Header{Version: 3, ClusterBits: bits, RefcountOrder: 4}
		if ext {
			h.IncompatibleFeatures = IncompatExtendedL2
		}
		g := newGeometry(&h)
		le := l2Entry{e: e}
		if ext {
			le.bitmap = bitmap
		}
		if err := g.validateL2(le, 0); err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("validation error does not wrap ErrFormat: %v", err)
			}
			return
		}
		total := 0
		for u := 0; u < g.units; {
			k, n := g.unitRun(le, u, g.units)
			if n < 1 || u+n > g.units {
				t.Fatalf("unit run %d+%d out of %d", u, n, g.units)
			}
			for j := u; j < u+n; j++ {
				if g.unitKind(le, j) != k {
					t.Fatalf("run kind mismatch at unit %d", j)
				}
			}
			if k == KindData && hostCluster(e) == 0 {
				t.Fatal("data without a host cluster")
			}
			u += n
			total += n
		}
		if isCompressed(e) {
			off, n := g.compressedRange(e)
			if n <= 0 || n > 2*g.cs || off < 0 {
				t.Fatalf("compressed range %#x+%d", off, n)
			}
			if _, c := g.compressedClusters(e); c < 1 || c > 3 {
				t.Fatalf("compressed data touches %d clusters", c)
			}
			// Encoding a range and decoding it back is exact.
			re := g.compressedEntry(off, n)
			if o2, n2 := g.compressedRange(re); o2 != off || n2 != n {
				t.Fatalf("compressed descriptor round trip %#x+%d -> %#x+%d", off, n, o2, n2)
			}
		}
	})
}

func FuzzRefcount(f *testing.F) {
	f.Add(make([]byte, 512), uint8(4), uint16(7), uint64(3))
	f.Add(bytes.Repeat([]byte{0xff}, 512), uint8(0), uint16(4095), uint64(0))
	f.Fuzz(func(t *testing.T, block []byte, order uint8, idx uint16, v uint64) {
		o := uint32(order) % (maxRefcountOrder + 1)
		if len(block) < 512 {
			return
		}
		block = block[:512]
		entries := int64(512*8) >> o
		i := int64(idx) % entries
		bits := uint32(1) << o
		if bits < 64 {
			v &= uint64(1)<<bits - 1
		}
		before := bytes.Clone(block)
		refcountSet(block, i, o, v)
		if got := refcountGet(block, i, o); got != v {
			t.Fatalf("order %d entry %d: set %d, got %d", o, i, v, got)
		}
		for j := int64(0); j < entries; j++ {
			if j != i && refcountGet(block, j, o) != refcountGet(before, j, o) {
				t.Fatalf("order %d: setting entry %d changed entry %d", o, i, j)
			}
		}
	})
}

// FuzzOpenImage opens arbitrary bytes as an image, reads it, maps it,
// checks it, and writes to it: errors are fine, panics, hangs and huge
// allocations are not.
func FuzzOpenImage(f *testing.F) {
	for _, img := range seedImages(f) {
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		exerciseImage(t, data)
	})
}

// exerciseImage is FuzzOpenImage's body, shared with the hostile-image
// tests.
func exerciseImage(t *testing.T, data []byte) {
	for _, ro := range []bool{true, false} {
		st := newSparseStorage(data)
		img, err := Open("fuzz.qcow2", Options{Storage: st, ReadOnly: ro, NoBacking: true, L2CacheBytes: 1 << 20})
		if err != nil {
			continue
		}
		size := img.Size()
		buf := make([]byte, 64<<10)
		// Read the start, the end and a few places in between.
		for _, off := range []int64{0, size / 3, size / 2, max(0, size-int64(len(buf)))} {
			if _, err := img.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				break
			}
		}
		_, _ = img.Map(0, min(size, 1<<30))
		for _, s := range img.Snapshots() {
			if v, err := img.SnapshotView(s.ID); err == nil {
				_, _ = v.ReadAt(buf, 0)
			}
		}
		_, _ = img.Check(RepairNone)
		if !ro {
			_, _ = img.WriteAt(buf[:4096], min(size/2, max(0, size-4096)))
			_ = img.WriteZeroes(0, min(size, 1<<20), true)
			_ = img.Flush()
			if st.stored() > len(data)+64<<20 {
				t.Fatalf("image grew from %d to %d bytes", len(data), st.stored())
			}
		}
		img.Close()
	}
}

// sparseStorage is an in-memory Storage that grows like a sparse host
// file: Truncate past the stored bytes only records the new length, and
// the bytes between the last write and that length read as zeros. The
// fuzz body uses it because allocation grows an image's file by 8 MiB at
// a time (fileGrowChunk): a memStorage would allocate and clear those
// 8 MiB for every writable input, which made each execution cost
// milliseconds.
type sparseStorage struct {
	memStorage
	size int64
}

func newSparseStorage(data []byte) *sparseStorage {
	s := &sparseStorage{size: int64(len(data))}
	s.data = bytes.Clone(data)
	return s
}

func (s *sparseStorage) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	k := 0
	if off < int64(len(s.data)) {
		k = copy(p[:n], s.data[off:])
	}
	clear(p[k:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *sparseStorage) WriteAt(p []byte, off int64) (int, error) {
	n, err := s.memStorage.WriteAt(p, off)
	s.mu.Lock()
	s.size = max(s.size, int64(len(s.data)))
	s.mu.Unlock()
	return n, err
}

func (s *sparseStorage) Truncate(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size < int64(len(s.data)) {
		s.data = s.data[:size]
	}
	s.size = size
	return nil
}

func (s *sparseStorage) Size() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, nil
}

// stored returns how many bytes the storage holds in memory.
func (s *sparseStorage) stored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

// be32put is a test helper to patch big-endian fields.
func be32put(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
func be64put(b []byte, off int, v uint64) { binary.BigEndian.PutUint64(b[off:], v) }

// TestMutatedImages is a short, deterministic fuzzing pass that runs in
// CI with the regular tests: seed images with random bytes changed,
// mostly in their metadata, go through the same exercise as
// FuzzOpenImage.
func TestMutatedImages(t *testing.T) {
	seeds := seedImagesT(t)
	r := rand.New(rand.NewSource(42))
	for i := 0; i < scaled(scaled(1200)); i++ {
		img := bytes.Clone(seeds[r.Intn(len(seeds))])
		for k := 0; k < 1+r.Intn(6); k++ {
			// Metadata lives in the first clusters: aim there mostly.
			p := r.Intn(min(len(img), 64<<10))
			if r.Intn(4) == 0 {
				p = r.Intn(len(img))
			}
			switch r.Intn(3) {
			case 0:
				img[p] = byte(r.Intn(256))
			case 1:
				img[p] ^= 1 << uint(r.Intn(8))
			default:
				binary.BigEndian.PutUint32(img[p-p%4:], r.Uint32())
			}
		}
		exerciseImage(t, img)
	}
}
