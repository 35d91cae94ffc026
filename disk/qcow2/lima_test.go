package qcow2

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/lima-vm/go-qcow2reader"
	limaqcow2 "github.com/lima-vm/go-qcow2reader/image/qcow2"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// A second, independent reader (lima-vm/go-qcow2reader) must agree with
// paddock on images paddock wrote.

var registerZstd sync.Once

// limaRead reads a whole image with go-qcow2reader.
func limaRead(t *testing.T, path string) []byte {
	t.Helper()
	testenv.Declare(t, testenv.Oracle)
	registerZstd.Do(func() {
		limaqcow2.SetDecompressor(limaqcow2.CompressionTypeZstd, func(r io.Reader) (io.ReadCloser, error) {
			d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		})
	})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := qcow2reader.Open(f)
	if err != nil {
		t.Fatalf("go-qcow2reader: open %s: %v", path, err)
	}
	defer img.Close()
	if err := img.Readable(); err != nil {
		t.Fatalf("go-qcow2reader: %s: %v", path, err)
	}
	buf := make([]byte, img.Size())
	if _, err := img.ReadAt(buf, 0); err != nil && err != io.EOF {
		t.Fatalf("go-qcow2reader: read %s: %v", path, err)
	}
	return buf
}

func TestSecondReaderAgrees(t *testing.T) {
	for i, tc := range []struct {
		name     string
		opts     CreateOptions
		compress bool
		backing  bool
		snapshot bool
	}{
		{name: "default", opts: CreateOptions{}},
		{name: "c512", opts: CreateOptions{ClusterSize: 512}},
		{name: "c2m", opts: CreateOptions{ClusterSize: 2 << 20}},
		{name: "v2", opts: CreateOptions{Version: 2}},
		{name: "refcount1", opts: CreateOptions{RefcountBits: 1, ClusterSize: 4096}},
		{name: "zlib", opts: CreateOptions{}, compress: true},
		{name: "zstd", opts: CreateOptions{Compression: "zstd"}, compress: true},
		{name: "extl2", opts: CreateOptions{ExtendedL2: true}},
		{name: "backing", opts: CreateOptions{}, backing: true},
		{name: "snapshot", opts: CreateOptions{}, snapshot: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			q := filepath.Join(dir, "img.qcow2")
			const size = 10 << 20
			o := tc.opts
			o.Size = size
			m := &model{data: make([]byte, size)}
			if tc.backing {
				base := filepath.Join(dir, "base.qcow2")
				if err := Create(base, CreateOptions{Size: size}); err != nil {
					t.Fatal(err)
				}
				b, err := Open(base, Options{})
				if err != nil {
					t.Fatal(err)
				}
				randomOps(t, b, m, rand.New(rand.NewSource(77)), 60, true)
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				o.BackingFile = "base.qcow2"
			}
			if err := Create(q, o); err != nil {
				t.Fatal(err)
			}
			img, err := Open(q, Options{})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(int64(i)))
			if tc.compress {
				src := make([]byte, size)
				writeRawImageBytes(src, int64(i))
				for off := int64(0); off < size; off += img.ClusterSize() {
					if err := img.WriteCompressed(src[off:off+img.ClusterSize()], off); err != nil {
						t.Fatal(err)
					}
				}
				copy(m.data, src)
			}
			randomOps(t, img, m, r, scaled(120), !tc.backing)
			if tc.snapshot {
				if _, err := img.CreateSnapshot("s", SnapshotOptions{}); err != nil {
					t.Fatal(err)
				}
				randomOps(t, img, m, r, 60, true)
			}
			mine := readAll(t, img, size)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "go-qcow2reader vs paddock", limaRead(t, q), mine)
		})
	}
}

// writeRawImageBytes fills buf like writeRawImage, without a file.
func writeRawImageBytes(buf []byte, seed int64) {
	r := rand.New(rand.NewSource(seed))
	for off := 0; off < len(buf); {
		n := min(len(buf)-off, r.Intn(256<<10)+512)
		if r.Intn(3) == 0 {
			r.Read(buf[off : off+n])
		} else {
			for j := 0; j < n; j++ {
				buf[off+j] = byte("paddock compressible text "[j%26])
			}
		}
		off += n
	}
}
