package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// Hostile images: damaged or malicious metadata must produce errors, never
// panics, hangs or huge allocations.

// hostileBase builds a small image (4 KiB clusters, data, a snapshot,
// compressed clusters) and returns its bytes and layout facts.
func hostileBase(t *testing.T) ([]byte, *Image) {
	t.Helper()
	ms := &memStorage{}
	if err := Create("base.qcow2", CreateOptions{Size: 4 << 20, ClusterSize: 4096, Storage: ms}); err != nil {
		t.Fatal(err)
	}
	img, err := Open("base.qcow2", Options{Storage: ms})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 64<<10)
	fillPattern(p, 1)
	if _, err := img.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteCompressed(bytes.Repeat([]byte("z"), 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := img.CreateSnapshot("s", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := Open("base.qcow2", Options{Storage: &memStorage{data: bytes.Clone(ms.data)}, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { info.Close() })
	return ms.data, info
}

func TestHostileImages(t *testing.T) {
	base, info := hostileBase(t)
	be := binary.BigEndian
	l1 := int(info.hdr.L1TableOffset)
	// The L2 table of guest cluster 0, and the entry of cluster 0.
	l2 := int(info.l1[0] & l1OffsetMask)
	cases := []struct {
		name    string
		patch   func(b []byte) []byte
		wantErr error // from Open; nil: Open succeeds and I/O must fail
		ioFails bool
	}{
		{"L1 entry past EOF", func(b []byte) []byte {
			be.PutUint64(b[l1:], 1<<50|oflagCopied)
			return b
		}, nil, true},
		{"L1 entry on the header", func(b []byte) []byte {
			be.PutUint64(b[l1:], 0|oflagCopied|512)
			return b
		}, nil, true},
		{"L2 entry past EOF", func(b []byte) []byte {
			be.PutUint64(b[l2:], 1<<50|oflagCopied)
			return b
		}, nil, true},
		{"L2 entry unaligned", func(b []byte) []byte {
			be.PutUint64(b[l2:], uint64(l2)+512|oflagCopied)
			return b
		}, nil, true},
		{"compressed garbage", func(b []byte) []byte {
			be.PutUint64(b[l2:], oflagCompressed|uint64(l1))
			return b
		}, nil, true},
		{"refcount table past EOF", func(b []byte) []byte {
			be.PutUint64(b[48:], 1<<40)
			return b
		}, ErrFormat, false},
		{"huge L1 size", func(b []byte) []byte {
			be.PutUint32(b[36:], 1<<31)
			return b
		}, ErrFormat, false},
		{"L1 smaller than the disk", func(b []byte) []byte {
			be.PutUint32(b[36:], 0)
			return b
		}, ErrFormat, false},
		{"absurd virtual size", func(b []byte) []byte {
			be.PutUint64(b[24:], 1<<62)
			return b
		}, ErrFormat, false},
		{"cluster bits 30", func(b []byte) []byte {
			be.PutUint32(b[20:], 30)
			return b
		}, ErrUnsupported, false},
		{"huge refcount table", func(b []byte) []byte {
			be.PutUint32(b[56:], 1<<30)
			return b
		}, ErrFormat, false},
		{"absurd snapshot count", func(b []byte) []byte {
			be.PutUint32(b[60:], 1<<30)
			return b
		}, ErrFormat, false},
		{"snapshot entry overflowing", func(b []byte) []byte {
			st := int(info.hdr.SnapshotsOffset)
			be.PutUint16(b[st+12:], 0xffff)
			be.PutUint16(b[st+14:], 0xffff)
			return b
		}, ErrFormat, false},
		{"snapshot L1 past EOF", func(b []byte) []byte {
			be.PutUint64(b[int(info.hdr.SnapshotsOffset):], 1<<45)
			return b
		}, ErrFormat, false},
		{"extension overruns the header cluster", func(b []byte) []byte {
			off := int(info.hdr.HeaderLength)
			be.PutUint32(b[off:], 0x11111111)
			be.PutUint32(b[off+4:], 1<<30)
			return b
		}, ErrFormat, false},
		{"backing name outside the header cluster", func(b []byte) []byte {
			be.PutUint64(b[8:], 4000)
			be.PutUint32(b[16:], 1000)
			return b
		}, ErrFormat, false},
		{"refcount block on the L1 table", func(b []byte) []byte {
			rt := int(info.hdr.RefcountTableOffset)
			be.PutUint64(b[rt:], uint64(l1))
			return b
		}, ErrCorrupt, false},
		{"L1 entry on a refcount block", func(b []byte) []byte {
			be.PutUint64(b[l1:], info.rt[0]&rtOffsetMask|oflagCopied)
			return b
		}, ErrCorrupt, false},
		{"truncated file", func(b []byte) []byte {
			return b[:len(b)/3]
		}, ErrFormat, false},
		{"encrypted", func(b []byte) []byte {
			be.PutUint32(b[32:], 2)
			return b
		}, ErrUnsupported, false},
		{"external data file", func(b []byte) []byte {
			b[79] |= IncompatDataFile
			return b
		}, ErrUnsupported, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.patch(bytes.Clone(base))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			img, err := Open("hostile.qcow2", Options{Storage: &memStorage{data: data}})
			runtime.ReadMemStats(&ms)
			if grew := ms.TotalAlloc - before; grew > 64<<20 {
				t.Errorf("Open allocated %d MiB", grew>>20)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open: %v, want %v", err, tc.wantErr)
				}
				if err != nil && !bytes.Contains([]byte(err.Error()), []byte("hostile.qcow2")) {
					t.Errorf("error does not name the file: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer img.Close()
			buf := make([]byte, 2<<20)
			_, rerr := img.ReadAt(buf, 0)
			_, werr := img.WriteAt(buf[:8192], 0)
			if tc.ioFails && rerr == nil && werr == nil {
				t.Fatal("I/O on damaged metadata succeeded")
			}
			res, err := img.Check(RepairNone)
			if err == nil && res.Corruptions == 0 && res.CheckErrors == 0 {
				t.Errorf("check finds nothing wrong: %+v", res)
			}
			// Everything else is still an error, not a panic.
			exerciseImage(t, data)
		})
	}
}

// TestOverlapRefused: a guest cluster mapped onto the L1 table must not be
// overwritten; the image is marked corrupt and refused for writing.
func TestOverlapRefused(t *testing.T) {
	base, info := hostileBase(t)
	l2 := int(info.l1[0] & l1OffsetMask)
	data := bytes.Clone(base)
	binary.BigEndian.PutUint64(data[l2+8:], info.hdr.L1TableOffset|oflagCopied) // guest cluster 1
	ms := &memStorage{data: data}
	img, err := Open("overlap.qcow2", Options{Storage: ms})
	if err != nil {
		t.Fatal(err)
	}
	l1Before := bytes.Clone(ms.data[info.hdr.L1TableOffset : info.hdr.L1TableOffset+64])
	_, err = img.WriteAt(make([]byte, 4096), 4096)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("write over the L1 table: %v", err)
	}
	if !bytes.Equal(ms.data[info.hdr.L1TableOffset:info.hdr.L1TableOffset+64], l1Before) {
		t.Fatal("the L1 table was overwritten")
	}
	img.Close()
	if _, err := Open("overlap.qcow2", Options{Storage: &memStorage{data: ms.data}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reopen for writing: %v, want the corrupt bit to refuse it", err)
	}
	if img, err := Open("overlap.qcow2", Options{Storage: &memStorage{data: ms.data}, ReadOnly: true}); err != nil {
		t.Fatalf("read-only open of a corrupt image: %v", err)
	} else {
		img.Close()
	}
}

// TestAllocationOverMetadataRefused: when an image says a metadata
// cluster is free (refcount 0), allocation must not hand that cluster out
// and overwrite the metadata; the write fails with ErrCorrupt and the
// image is marked corrupt, until a repair rebuilds the refcounts.
// (FuzzOpenImage found a zero refcount on the header cluster making a new
// L2 table land on it.)
func TestAllocationOverMetadataRefused(t *testing.T) {
	base, info := hostileBase(t)
	cs := info.g.cs
	structures := []struct {
		name string
		off  int64
	}{
		{"header", 0},
		{"active L1 table", int64(info.hdr.L1TableOffset)},
		{"refcount table", int64(info.hdr.RefcountTableOffset)},
		{"refcount block", int64(info.rt[0] & rtOffsetMask)},
		{"L2 table", int64(info.l1[0] & l1OffsetMask)},
		{"snapshot table", int64(info.hdr.SnapshotsOffset)},
		{"snapshot L1 table", int64(info.snaps[0].l1Offset)},
	}
	want := make([]byte, 64<<10)
	fillPattern(want, 1)
	for _, st := range structures {
		t.Run(st.name, func(t *testing.T) {
			data := bytes.Clone(base)
			c := st.off / cs
			rb := int64(info.rt[c/info.g.refPerBlock] & rtOffsetMask)
			refcountSet(data[rb:rb+cs], c%info.g.refPerBlock, info.g.refOrder, 0)
			before := bytes.Clone(data[st.off : st.off+cs])
			ms := &memStorage{data: data}
			img, err := Open("zero-refcount.qcow2", Options{Storage: ms})
			if err != nil {
				t.Fatal(err)
			}
			// Allocate clusters (and an L2 table) until the allocator
			// reaches the lowest free cluster, which is the metadata one.
			var werr error
			for i := int64(0); i < 64 && werr == nil; i++ {
				_, werr = img.WriteAt(bytes.Repeat([]byte{byte(i)}, 4096), 3<<20+i*cs)
			}
			if !errors.Is(werr, ErrCorrupt) || !strings.Contains(werr.Error(), "refcount 0") {
				t.Fatalf("allocating writes ended with %v, want ErrCorrupt naming the refcount", werr)
			}
			img.Close()
			if st.off != 0 && !bytes.Equal(ms.data[st.off:st.off+cs], before) {
				t.Fatalf("the %s was overwritten", st.name)
			}
			ro, err := Open("zero-refcount.qcow2", Options{Storage: &memStorage{data: ms.data}, ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open after the refusal: %v", err)
			}
			defer ro.Close()
			got := make([]byte, len(want))
			if _, err := ro.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("guest data after the refusal: %v, equal %v", err, bytes.Equal(got, want))
			}
			if _, err := Open("zero-refcount.qcow2", Options{Storage: ms}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reopen for writing: %v, want the corrupt bit to refuse it", err)
			}
			// A repair rebuilds the refcounts; then allocation works.
			rp, err := Open("zero-refcount.qcow2", Options{Storage: ms, Repair: true})
			if err != nil {
				t.Fatalf("open for repair: %v", err)
			}
			if res, err := rp.Check(RepairAll); err != nil || res.CorruptionsFixed == 0 {
				t.Fatalf("repair: %+v, %v", res, err)
			}
			rp.Close()
			img, err = Open("zero-refcount.qcow2", Options{Storage: ms})
			if err != nil {
				t.Fatalf("open after the repair: %v", err)
			}
			defer img.Close()
			p := bytes.Repeat([]byte{0xa5}, 4096)
			if _, err := img.WriteAt(p, 3<<20); err != nil {
				t.Fatalf("allocating write after the repair: %v", err)
			}
			back := make([]byte, len(p))
			if _, err := img.ReadAt(back, 3<<20); err != nil || !bytes.Equal(back, p) {
				t.Fatalf("read back after the repair: %v, equal %v", err, bytes.Equal(back, p))
			}
			if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("guest data after the repair: %v, equal %v", err, bytes.Equal(got, want))
			}
		})
	}
}

// TestBackingLoops: chains that loop, and backing files that are not
// files, are refused.
func TestBackingLoops(t *testing.T) {
	dir := tempDir(t)
	a := filepath.Join(dir, "a.qcow2")
	b := filepath.Join(dir, "b.qcow2")
	if err := Create(a, CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := Create(b, CreateOptions{Size: 1 << 20, BackingFile: "a.qcow2"}); err != nil {
		t.Fatal(err)
	}
	// a -> b -> a
	img, err := Open(a, Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SetBacking("b.qcow2", "qcow2"); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if _, err := Open(a, Options{ReadOnly: true}); !errors.Is(err, ErrFormat) {
		t.Fatalf("a -> b -> a: %v", err)
	}
	// Self loop.
	img, err = Open(b, Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SetBacking("b.qcow2", "qcow2"); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if _, err := Open(b, Options{ReadOnly: true}); !errors.Is(err, ErrFormat) {
		t.Fatalf("b -> b: %v", err)
	}
	// A FIFO as backing file must not block.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	img, err = Open(b, Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SetBacking("fifo", "raw"); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if _, err := Open(b, Options{ReadOnly: true}); !errors.Is(err, imagefile.ErrNotImage) {
		t.Fatalf("FIFO backing: %v", err)
	}
	// A missing backing file names it.
	img, err = Open(b, Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SetBacking("missing.qcow2", "qcow2"); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if _, err := Open(b, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) || !bytes.Contains([]byte(err.Error()), []byte("missing.qcow2")) {
		t.Fatalf("missing backing: %v", err)
	}
	_ = io.EOF
}
