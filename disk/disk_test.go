package disk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/disk/qemutest"
)

// TestDetect: the format comes from the contents, never the name.
func TestDetect(t *testing.T) {
	dir := qemutest.TempDir(t)
	q := filepath.Join(dir, "looks-raw.img")
	if err := qcow2.Create(q, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	r := filepath.Join(dir, "looks.qcow2")
	if err := CreateRaw(r, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{{q, FormatQcow2}, {r, FormatRaw}} {
		got, err := Detect(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("Detect(%s) = %q, %v; want %q", filepath.Base(tc.path), got, err, tc.want)
		}
		img, err := Open(tc.path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if f := img.Capabilities().Format; f != tc.want {
			t.Errorf("Open(%s) format %q, want %q", filepath.Base(tc.path), f, tc.want)
		}
		img.Close()
	}
	if _, err := Open(r, Options{Format: "vmdk"}); !errors.Is(err, ErrFormat) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestImageContract runs the same operations on both formats through the
// Image interface.
func TestImageContract(t *testing.T) {
	dir := qemutest.TempDir(t)
	const size = 4 << 20
	paths := map[string]string{FormatRaw: filepath.Join(dir, "d.raw"), FormatQcow2: filepath.Join(dir, "d.qcow2")}
	if err := CreateRaw(paths[FormatRaw], size); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(paths[FormatQcow2], qcow2.CreateOptions{Size: size}); err != nil {
		t.Fatal(err)
	}
	for format, path := range paths {
		t.Run(format, func(t *testing.T) {
			img, err := Open(path, Options{Format: format})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			caps := img.Capabilities()
			if caps.ReadOnly || img.Size() != size {
				t.Fatalf("capabilities %+v, size %d", caps, img.Size())
			}
			want := make([]byte, size)
			p := make([]byte, 300<<10)
			qemutest.FillPattern(p, 1)
			if _, err := img.WriteAt(p, 12345); err != nil {
				t.Fatal(err)
			}
			copy(want[12345:], p)
			if err := img.WriteZeroes(65536, 128<<10, true); err != nil {
				t.Fatal(err)
			}
			clear(want[65536 : 65536+128<<10])
			if err := img.WriteZeroes(200000, 1000, false); err != nil {
				t.Fatal(err)
			}
			clear(want[200000:201000])
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := img.Discard(0, size); err != nil {
				t.Fatal(err)
			}
			// Discard is advisory: the contents are old data or zeros.
			got := qemutest.ReadAll(t, img, size)
			for i := range got {
				if got[i] != 0 && got[i] != want[i] {
					t.Fatalf("byte %d after discard: %#x", i, got[i])
				}
			}
			copy(want, got)
			if _, err := img.WriteAt(p[:10], size-5); err == nil {
				t.Fatal("write past the end succeeded")
			}
			if n, err := img.ReadAt(make([]byte, 10), size-5); n != 5 || err != io.EOF {
				t.Fatalf("read across the end: %d, %v", n, err)
			}
			if err := img.WriteZeroes(size-10, 20, false); err == nil {
				t.Fatal("zeroes past the end succeeded")
			}
		})
	}
	ro, err := Open(paths[FormatRaw], Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if !ro.Capabilities().ReadOnly {
		t.Fatal("read-only image does not say so")
	}
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to read-only raw: %v", err)
	}
}

// TestConvert converts between formats, with compression and from a
// snapshot, and checks the results with qemu-img.
func TestConvert(t *testing.T) {
	qemutest.NeedTool(t, "qemu-img")
	dir := qemutest.TempDir(t)
	src := filepath.Join(dir, "src.raw")
	const size = 20<<20 + 512
	want := qemutest.WriteRawImage(t, src, size, 3)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    ConvertOptions
	}{
		{"qcow2", ConvertOptions{}},
		{"qcow2-c4k", ConvertOptions{Qcow2: qcow2.CreateOptions{ClusterSize: 4096}}},
		{"zlib", ConvertOptions{Compress: true}},
		{"zstd", ConvertOptions{Compress: true, Qcow2: qcow2.CreateOptions{Compression: "zstd"}}},
		{"extl2", ConvertOptions{Qcow2: qcow2.CreateOptions{ExtendedL2: true}}},
		{"raw", ConvertOptions{DstFormat: FormatRaw}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, tc.name+".out")
			var calls int
			tc.o.Progress = func(done, total int64) {
				calls++
				if done > total || total != size {
					t.Errorf("progress %d/%d", done, total)
				}
			}
			if err := Convert(ctx, src, dst, tc.o); err != nil {
				t.Fatal(err)
			}
			if calls == 0 {
				t.Error("no progress reported")
			}
			f := "qcow2"
			if tc.o.DstFormat == FormatRaw {
				f = "raw"
			} else if leaks := qemutest.Check(t, dst); leaks != 0 {
				t.Errorf("%d leaks", leaks)
			}
			qemutest.QemuImg(t, "compare", "-f", "raw", "-F", f, src, dst)
			// And back to raw through paddock.
			back := filepath.Join(dir, tc.name+".back")
			if err := Convert(ctx, dst, back, ConvertOptions{DstFormat: FormatRaw}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(back)
			if err != nil {
				t.Fatal(err)
			}
			qemutest.SameBytes(t, "round trip", got, want)
		})
	}
}

// TestConvertSparse: zeros are not written.
func TestConvertSparse(t *testing.T) {
	dir := qemutest.TempDir(t)
	src := filepath.Join(dir, "sparse.raw")
	if err := CreateRaw(src, 256<<20); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRaw(src, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt([]byte("hello"), 100<<20); err != nil {
		t.Fatal(err)
	}
	r.Close()
	dst := filepath.Join(dir, "out.qcow2")
	if err := Convert(context.Background(), src, dst, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2<<20 {
		t.Fatalf("a 256 MiB disk with 5 bytes of data converted to %d bytes", fi.Size())
	}
	img, err := Open(dst, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	p := make([]byte, 5)
	if _, err := img.ReadAt(p, 100<<20); err != nil || string(p) != "hello" {
		t.Fatalf("read %q, %v", p, err)
	}
}

// TestConvertSnapshotAndChain: converting a qcow2 chain or one of its
// snapshots gives what qemu-img gives.
func TestConvertSnapshotAndChain(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	dir := qemutest.TempDir(t)
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	qemutest.QemuImg(t, "create", "-f", "qcow2", base, "8M")
	qemutest.QemuIO(t, base, "write -P 0x11 0 4M")
	qemutest.QemuImg(t, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, "8M")
	qemutest.QemuIO(t, top, "write -P 0x22 1M 64k")
	qemutest.QemuImg(t, "snapshot", "-c", "snap", top)
	qemutest.QemuIO(t, top, "write -P 0x33 2M 64k", "write -z 0 64k")
	ctx := context.Background()
	out := filepath.Join(dir, "flat.raw")
	if err := Convert(ctx, top, out, ConvertOptions{DstFormat: FormatRaw}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	qemutest.SameBytes(t, "chain", got, qemutest.Raw(t, top))
	out2 := filepath.Join(dir, "snap.raw")
	if err := Convert(ctx, top, out2, ConvertOptions{DstFormat: FormatRaw, Snapshot: "snap"}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(out2)
	qemutest.SameBytes(t, "snapshot", got, qemutest.Raw(t, top, "-l", "snap"))
}

// TestCommit commits an overlay into qcow2 and raw bases and compares
// with what qemu-img commit does.
func TestCommit(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	for _, baseFmt := range []string{"qcow2", "raw"} {
		t.Run(baseFmt, func(t *testing.T) {
			dir := qemutest.TempDir(t)
			base := filepath.Join(dir, "base."+baseFmt)
			qemutest.QemuImg(t, "create", "-f", baseFmt, base, "4M")
			qemutest.Run(t, "qemu-io", "-f", baseFmt, "-c", "write -P 0x11 0 4M", base)
			top := filepath.Join(dir, "top.qcow2")
			qemutest.QemuImg(t, "create", "-f", "qcow2", "-b", filepath.Base(base), "-F", baseFmt, top, "6M")
			qemutest.QemuIO(t, top, "write -P 0x22 100k 300k", "write -z 1M 128k", "write -P 0x33 5M 4k")
			want := qemutest.Raw(t, top)
			if err := Commit(context.Background(), top, CommitOptions{}); err != nil {
				t.Fatal(err)
			}
			qemutest.SameBytes(t, "chain after commit", qemutest.Raw(t, top), want)
			qemutest.SameBytes(t, "base after commit", qemutest.Raw(t, base, "-f", baseFmt), want)
			m := qemutest.QemuImg(t, "map", "--output=json", top)
			if strings.Contains(m, `"depth": 0`) {
				t.Errorf("top image not emptied:\n%s", m)
			}
			qemutest.Check(t, top)
			if baseFmt == "qcow2" {
				qemutest.Check(t, base)
			}
		})
	}
}

// TestRebase rebases safely and unsafely and checks the disk reads the
// same afterwards.
func TestRebase(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	dir := qemutest.TempDir(t)
	b1 := filepath.Join(dir, "b1.qcow2")
	b2 := filepath.Join(dir, "b2.raw")
	top := filepath.Join(dir, "top.qcow2")
	qemutest.QemuImg(t, "create", "-f", "qcow2", b1, "4M")
	qemutest.QemuIO(t, b1, "write -P 0x11 0 2M")
	qemutest.WriteRawImage(t, b2, 4<<20, 5)
	qemutest.QemuImg(t, "create", "-f", "qcow2", "-b", "b1.qcow2", "-F", "qcow2", top, "4M")
	qemutest.QemuIO(t, top, "write -P 0x22 512k 64k")
	want := qemutest.Raw(t, top)
	ctx := context.Background()
	if err := Rebase(ctx, top, "b2.raw", "", RebaseOptions{}); err != nil {
		t.Fatal(err)
	}
	qemutest.SameBytes(t, "after safe rebase", qemutest.Raw(t, top), want)
	info := qemutest.QemuImg(t, "info", top)
	if !strings.Contains(info, "backing file: b2.raw") || !strings.Contains(info, "backing file format: raw") {
		t.Fatalf("qemu-img info after rebase:\n%s", info)
	}
	qemutest.Check(t, top)
	// Flatten: no backing file at all.
	if err := Rebase(ctx, top, "", "", RebaseOptions{}); err != nil {
		t.Fatal(err)
	}
	qemutest.SameBytes(t, "after flatten", qemutest.Raw(t, top), want)
	if info := qemutest.QemuImg(t, "info", top); strings.Contains(info, "backing file") {
		t.Fatalf("backing file still recorded:\n%s", info)
	}
	// Unsafe: only the name changes.
	if err := Rebase(ctx, top, "b1.qcow2", "qcow2", RebaseOptions{Unsafe: true}); err != nil {
		t.Fatal(err)
	}
	if info := qemutest.QemuImg(t, "info", top); !strings.Contains(info, "backing file: b1.qcow2") {
		t.Fatalf("unsafe rebase:\n%s", info)
	}
	qemutest.Check(t, top)
}

// TestResize grows and shrinks both formats.
func TestResize(t *testing.T) {
	dir := qemutest.TempDir(t)
	q := filepath.Join(dir, "r.qcow2")
	r := filepath.Join(dir, "r.raw")
	if err := qcow2.Create(q, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := CreateRaw(r, 1<<20); err != nil {
		t.Fatal(err)
	}
	resize := func(p string, size int64, shrink bool) error {
		img, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		return Resize(img, size, shrink)
	}
	for _, p := range []string{q, r} {
		if err := resize(p, 5<<30, false); err != nil {
			t.Fatal(err)
		}
		img, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if img.Size() != 5<<30 {
			t.Fatalf("%s: size %d after grow", p, img.Size())
		}
		if _, err := img.WriteAt([]byte("end"), 5<<30-3); err != nil {
			t.Fatal(err)
		}
		img.Close()
		err = resize(p, 1<<20, false)
		if !errors.Is(err, ErrShrink) || errors.Is(err, ErrRange) {
			t.Fatalf("%s: shrink without permission: %v", p, err)
		}
		if err := resize(p, 1<<20, true); err != nil {
			t.Fatal(err)
		}
	}
	if hasQemu() {
		qemutest.Check(t, q)
		info := qemutest.QemuImg(t, "info", q)
		if !strings.Contains(info, "1 MiB") {
			t.Fatalf("qemu-img info:\n%s", info)
		}
	}
	_ = bytes.Equal
}

func hasQemu() bool {
	_, err := os.Stat("/usr/bin/qemu-img")
	return err == nil
}

// TestRawVectored checks ReadvAt and WritevAt against ReadAt and WriteAt:
// scattered buffers of odd sizes (empty ones too), more than IOV_MAX of
// them, the disk's end, and a range past it.
func TestRawVectored(t *testing.T) {
	p := filepath.Join(t.TempDir(), "v.raw")
	const size = 4 << 20
	if err := CreateRaw(p, size); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRaw(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, nbufs := range []int{1, 3, 100, 1500} {
		bufs := make([][]byte, nbufs)
		var want []byte
		for i := range bufs {
			bufs[i] = make([]byte, rnd.IntN(700))
			for j := range bufs[i] {
				bufs[i][j] = byte(rnd.Uint32())
			}
			want = append(want, bufs[i]...)
		}
		off := int64(rnd.IntN(size - len(want)))
		if n, err := r.WritevAt(bufs, off); err != nil || n != len(want) {
			t.Fatalf("%d buffers: WritevAt = %d, %v; want %d", nbufs, n, err, len(want))
		}
		got := make([]byte, len(want))
		if _, err := r.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d buffers: ReadAt after WritevAt differs (%v)", nbufs, err)
		}
		for i := range bufs {
			clear(bufs[i])
		}
		if n, err := r.ReadvAt(bufs, off); err != nil || n != len(want) {
			t.Fatalf("%d buffers: ReadvAt = %d, %v", nbufs, n, err)
		}
		if !bytes.Equal(bytes.Join(bufs, nil), want) {
			t.Fatalf("%d buffers: ReadvAt read other bytes", nbufs)
		}
	}
	end := [][]byte{make([]byte, 100), make([]byte, 28)}
	if _, err := r.WritevAt(end, size-128); err != nil {
		t.Errorf("write at the end: %v", err)
	}
	if _, err := r.ReadvAt(end, size-127); !errors.Is(err, ErrRange) {
		t.Errorf("read past the end: %v, want ErrRange", err)
	}
	if _, err := r.WritevAt(end, size-127); !errors.Is(err, ErrRange) {
		t.Errorf("write past the end: %v, want ErrRange", err)
	}
}

// TestConvertCompressSparseRaw: a sparse raw source whose data extents
// do not fall on cluster boundaries (a file system image: 4 KiB blocks,
// several to a cluster, holes between them) converts with compression
// into an image qemu-img finds clean and equal to it.
func TestConvertCompressSparseRaw(t *testing.T) {
	qemutest.NeedTool(t, "qemu-img")
	dir := qemutest.TempDir(t)
	src := filepath.Join(dir, "fs.raw")
	const size = 8 << 20
	if err := CreateRaw(src, size); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRaw(src, false)
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("ext4"), 1024)
	// Two blocks inside one 64 KiB cluster, one straddling a cluster
	// boundary, one at the end of a 2 MiB chunk and one at the start of
	// the next.
	for _, off := range []int64{4096, 3 * 4096, 64<<10 - 2048, 2<<20 - 4096, 2 << 20, size - 4096} {
		if _, err := r.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	for _, c := range []string{"zlib", "zstd"} {
		dst := filepath.Join(dir, c+".qcow2")
		if err := Convert(context.Background(), src, dst, ConvertOptions{SrcFormat: FormatRaw, Compress: true, Qcow2: qcow2.CreateOptions{Compression: c}}); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if leaks := qemutest.Check(t, dst); leaks != 0 {
			t.Errorf("%s: %d leaks", c, leaks)
		}
		qemutest.QemuImg(t, "compare", "-f", "raw", "-F", "qcow2", src, dst)
	}
}
