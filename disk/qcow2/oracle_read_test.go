package qcow2

import (
	"fmt"
	"path/filepath"
	"testing"
)

// Images written by qemu-img must read byte-identically in paddock.

// TestReadQemuConverted converts a raw file with qemu-img under every
// layout option and reads the result back through paddock.
func TestReadQemuConverted(t *testing.T) {
	needTool(t, "qemu-img")
	cases := []struct {
		name string
		opts string
		size int64
		comp bool
	}{
		{"c512", "cluster_size=512", 3 << 20, false},
		{"c4k", "cluster_size=4096", 8 << 20, false},
		{"c64k", "cluster_size=65536", 16 << 20, false},
		{"c2m", "cluster_size=2097152", 24<<20 + 4096, false},
		{"v2", "compat=0.10", 16 << 20, false},
		{"v2-c512", "compat=0.10,cluster_size=512", 2 << 20, false},
		{"refcount1", "refcount_bits=1", 8 << 20, false},
		{"refcount2", "refcount_bits=2", 8 << 20, false},
		{"refcount4", "refcount_bits=4", 8 << 20, false},
		{"refcount8", "refcount_bits=8", 8 << 20, false},
		{"refcount32", "refcount_bits=32", 8 << 20, false},
		{"refcount64", "refcount_bits=64,cluster_size=512", 2 << 20, false},
		{"extl2", "extended_l2=on", 16 << 20, false},
		{"extl2-c2m", "extended_l2=on,cluster_size=2097152", 8 << 20, false},
		{"zlib", "", 16 << 20, true},
		{"zlib-c512", "cluster_size=512", 2 << 20, true},
		{"zlib-c2m", "cluster_size=2097152", 8 << 20, true},
		{"zstd", "compression_type=zstd", 16 << 20, true},
		{"zstd-c4k", "compression_type=zstd,cluster_size=4096", 4 << 20, true},
		{"zlib-v2", "compat=0.10", 8 << 20, true},
		{"zstd-extl2", "compression_type=zstd,extended_l2=on", 8 << 20, true},
		{"prealloc", "preallocation=metadata", 8 << 20, false},
		{"odd-size", "", 5<<20 + 1536, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			raw := filepath.Join(dir, "src.raw")
			want := writeRawImage(t, raw, tc.size, int64(i+1))
			q := filepath.Join(dir, "img.qcow2")
			args := []string{"convert", "-f", "raw", "-O", "qcow2"}
			if tc.opts != "" {
				args = append(args, "-o", tc.opts)
			}
			if tc.comp {
				args = append(args, "-c")
			}
			qemuImg(t, append(args, raw, q)...)
			img, err := Open(q, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.Size() != tc.size {
				t.Fatalf("size %d, want %d", img.Size(), tc.size)
			}
			sameBytes(t, tc.name, readAll(t, img, tc.size), want)
			sameBytes(t, tc.name+" vectored", readAllVec(t, img, 1), want)
		})
	}
}

// TestReadQemuWritten has qemu-io write patterns, zeroes and discards at
// sub-cluster granularity (so extended L2 images get mixed subclusters),
// and compares paddock's view with QEMU's.
func TestReadQemuWritten(t *testing.T) {
	needTool(t, "qemu-io")
	for _, opts := range []string{
		"cluster_size=65536",
		"extended_l2=on",
		"extended_l2=on,cluster_size=16384",
		"compat=0.10,cluster_size=4096",
		"cluster_size=512",
	} {
		t.Run(opts, func(t *testing.T) {
			dir := tempDir(t)
			q := filepath.Join(dir, "img.qcow2")
			qemuImg(t, "create", "-f", "qcow2", "-o", opts, q, "8M")
			qemuIO(t, q,
				"write -P 0x11 0 64k",
				"write -P 0x22 70k 3k",
				"write -P 0x33 1M 200k",
				"write -z 1056768 16k",
				"write -P 0x44 3M 2k",
				"discard 1114112 64k",
				"write -P 0x55 8384512 4k",
				"write -z 6M 1M",
			)
			img, err := Open(q, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			sameBytes(t, opts, readAll(t, img, img.Size()), qemuRaw(t, q))
		})
	}
}

// TestReadQemuBackingChains builds chains with qemu-img (qcow2 and raw
// bases, relative and absolute names, smaller bases) and reads the top.
func TestReadQemuBackingChains(t *testing.T) {
	needTool(t, "qemu-io")
	for _, tc := range []struct {
		name    string
		rawBase bool
		extL2   bool
		depth   int
	}{
		{"qcow2-base", false, false, 2},
		{"raw-base", true, false, 2},
		{"deep", false, false, 6},
		{"extl2", false, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			var base string
			if tc.rawBase {
				base = filepath.Join(dir, "base.raw")
				writeRawImage(t, base, 6<<20, 7)
			} else {
				base = filepath.Join(dir, "base.qcow2")
				qemuImg(t, "create", "-f", "qcow2", base, "6M")
				qemuIO(t, base, "write -P 0xa1 0 6M")
			}
			prev, prevFmt := filepath.Base(base), "qcow2"
			if tc.rawBase {
				prevFmt = "raw"
			}
			var top string
			for d := 1; d < tc.depth; d++ {
				top = filepath.Join(dir, fmt.Sprintf("layer%d.qcow2", d))
				opts := "cluster_size=65536"
				if tc.extL2 {
					opts = "extended_l2=on"
				}
				backing := prev
				if d%2 == 0 {
					backing = filepath.Join(dir, prev) // absolute
				}
				// Each layer is larger than the one below.
				qemuImg(t, "create", "-f", "qcow2", "-o", opts, "-b", backing, "-F", prevFmt, top, fmt.Sprintf("%dM", 6+d))
				qemuIO(t, top,
					fmt.Sprintf("write -P 0x%02x %dk 5k", 0x10+d, 64*d+3),
					fmt.Sprintf("write -P 0x%02x %dM 4k", 0x20+d, d),
					fmt.Sprintf("write -z %dk 8k", 128*d),
					fmt.Sprintf("write -P 0x%02x %d 8k", 0x30+d, (5+d)<<20+60<<10),
				)
				prev, prevFmt = filepath.Base(top), "qcow2"
			}
			img, err := Open(top, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			sameBytes(t, tc.name, readAll(t, img, img.Size()), qemuRaw(t, top))
			sameBytes(t, tc.name+" vectored", readAllVec(t, img, 1), qemuRaw(t, top))
		})
	}
}

// TestReadQemuSnapshots reads the active state and each snapshot of an
// image whose snapshots qemu-img made.
func TestReadQemuSnapshots(t *testing.T) {
	needTool(t, "qemu-io")
	for _, opts := range []string{"cluster_size=65536", "compat=0.10", "extended_l2=on", "cluster_size=4096,refcount_bits=4"} {
		t.Run(opts, func(t *testing.T) {
			dir := tempDir(t)
			q := filepath.Join(dir, "img.qcow2")
			qemuImg(t, "create", "-f", "qcow2", "-o", opts, q, "4M")
			qemuIO(t, q, "write -P 0x01 0 1M", "write -P 0x02 2M 100k")
			qemuImg(t, "snapshot", "-c", "one", q)
			qemuIO(t, q, "write -P 0x03 512k 1M", "discard 2M 64k")
			qemuImg(t, "snapshot", "-c", "two", q)
			qemuIO(t, q, "write -P 0x04 0 4k", "write -z 3M 1M")
			img, err := Open(q, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			snaps := img.Snapshots()
			if len(snaps) != 2 || snaps[0].Name != "one" || snaps[1].Name != "two" {
				t.Fatalf("snapshots %+v", snaps)
			}
			sameBytes(t, "active", readAll(t, img, img.Size()), qemuRaw(t, q))
			for _, s := range snaps {
				v, err := img.SnapshotView(s.Name)
				if err != nil {
					t.Fatal(err)
				}
				sameBytes(t, s.Name, readAll(t, v, v.Size()), qemuRaw(t, q, "-l", s.Name))
			}
		})
	}
}
