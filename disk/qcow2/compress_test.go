package qcow2

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteCompressed writes compressed clusters (zlib and zstd), then
// overwrites and discards some of them, and checks with qemu-img.
func TestWriteCompressed(t *testing.T) {
	needTool(t, "qemu-img")
	for i, o := range []CreateOptions{
		{},
		{Compression: "zstd"},
		{ClusterSize: 512},
		{ClusterSize: 2 << 20, Compression: "zstd"},
		{ExtendedL2: true},
		{Version: 2, ClusterSize: 4096},
	} {
		t.Run(strings.ReplaceAll(describe(o)+" "+o.Compression, " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := tempDir(t)
			q := filepath.Join(dir, "img.qcow2")
			raw := filepath.Join(dir, "src.raw")
			size := int64(scaled(12))<<20 + 1536 // partial last cluster
			if o.ClusterSize != 0 && o.ClusterSize < 4096 {
				size = 2<<20 + 1536
			}
			o.Size = size
			want := writeRawImage(t, raw, size, int64(i+20))
			if err := Create(q, o); err != nil {
				t.Fatal(err)
			}
			img, err := Open(q, Options{})
			if err != nil {
				t.Fatal(err)
			}
			cs := img.ClusterSize()
			for off := int64(0); off < size; off += cs {
				n := min(cs, size-off)
				if err := img.WriteCompressed(want[off:off+n], off); err != nil {
					t.Fatalf("WriteCompressed %#x: %v", off, err)
				}
			}
			sameBytes(t, "compressed read-back", readAll(t, img, size), want)
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			// Copy-on-write of compressed clusters, and freeing them.
			m := &model{data: bytes.Clone(want)}
			randomOps(t, img, m, rand.New(rand.NewSource(int64(i))), scaled(80), true)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			if leaks := qemuCheck(t, q); leaks != 0 {
				t.Errorf("%d leaks", leaks)
			}
			ref := filepath.Join(dir, "ref.raw")
			if err := os.WriteFile(ref, m.data, 0o644); err != nil {
				t.Fatal(err)
			}
			qemuImg(t, "compare", "-f", "raw", "-F", "qcow2", ref, q)
			if o.Compression == "zstd" {
				info := qemuImg(t, "info", q)
				if !strings.Contains(info, "compression type: zstd") {
					t.Errorf("qemu-img info does not report zstd:\n%s", info)
				}
			}
		})
	}
}

// TestCompressedSavesSpace: compressible data takes less room.
func TestCompressedSavesSpace(t *testing.T) {
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	if err := Create(q, CreateOptions{Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("compressible "), 8<<20/13+1)[:8<<20]
	for off := int64(0); off < 8<<20; off += img.ClusterSize() {
		if err := img.WriteCompressed(data[off:off+img.ClusterSize()], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(q)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Fatalf("8 MiB of repetitive text compressed to a %d-byte file", fi.Size())
	}
}
