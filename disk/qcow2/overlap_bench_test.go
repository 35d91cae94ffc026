package qcow2

import (
	"testing"
)

// CPU cost of the overlap checks, without disk I/O: an in-memory image
// with 4 KiB clusters and 256 MiB of data (128 active L2 tables, 32
// refcount blocks). The disk-speed figures beside qemu-img are the
// RandWrite4K and SeqWrite1M benchmarks.

func overlapBenchImage(b *testing.B) *Image {
	b.Helper()
	ms := &memStorage{}
	const size = 256 << 20
	if err := Create("bench.qcow2", CreateOptions{Size: size, ClusterSize: 4096, RefcountBits: 64, Storage: ms}); err != nil {
		b.Fatal(err)
	}
	img, err := Open("bench.qcow2", Options{Storage: ms})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := img.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := img.Flush(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { img.Close() })
	return img
}

// BenchmarkDataWriteCheck is the check before every guest data write.
func BenchmarkDataWriteCheck(b *testing.B) {
	img := overlapBenchImage(b)
	img.mu.Lock()
	defer img.mu.Unlock()
	n := img.allocEnd
	i := int64(0)
	for b.Loop() {
		i = (i + 7919) % n
		_ = img.checkDataTarget(i * img.g.cs)
		img.broken = nil
	}
}

// BenchmarkAllocationCheck is the check before every allocation.
func BenchmarkAllocationCheck(b *testing.B) {
	img := overlapBenchImage(b)
	img.mu.Lock()
	defer img.mu.Unlock()
	off := img.allocEnd * img.g.cs
	for b.Loop() {
		_ = img.metadataIn(off, img.g.cs)
	}
}

// BenchmarkInPlaceWrite4K overwrites allocated clusters 4 KiB at a time:
// the whole write path on an in-memory store.
func BenchmarkInPlaceWrite4K(b *testing.B) {
	img := overlapBenchImage(b)
	buf := make([]byte, 4096)
	size := img.Size()
	off := int64(0)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		off = (off + 4096*7919) % size
		if _, err := img.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
}
