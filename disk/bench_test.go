package disk

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// Convert benchmarks: `paddock image convert` (disk.Convert, what the CLI
// runs) against `qemu-img convert` on the same 1 GiB source, same file
// system (PADDOCK_BENCH_DIR, default the system temporary directory).
// Reported: seconds for each and the ratio qemu/paddock (> 1: paddock is
// faster).

const convertBenchSize = 1 << 30

// convertSource writes a 1 GiB raw image: a quarter random data, a
// quarter zeros, half compressible text.
func convertSource(b *testing.B, dir string) string {
	b.Helper()
	path := filepath.Join(dir, "src.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < convertBenchSize; off += int64(len(buf)) {
		switch (off >> 20) % 4 {
		case 0:
			r.Read(buf)
		case 1:
			continue // hole
		default:
			s := fmt.Sprintf("paddock convert benchmark, megabyte %d; ", off>>20)
			for i := range buf {
				buf[i] = s[i%len(s)]
			}
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(convertBenchSize); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchConvert times one convert. cache is qemu-img's -t: "writeback"
// (durable at the end; paddock's default) or "unsafe" (no flushes;
// qemu-img's default, paddock's -t unsafe).
func benchConvert(b *testing.B, compress bool, cache string) {
	qemutest.NeedTool(b, "qemu-img")
	dir, err := os.MkdirTemp(os.Getenv("PADDOCK_BENCH_DIR"), "paddock-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	src := convertSource(b, dir)
	args := []string{"convert", "-t", cache, "-f", "raw", "-O", "qcow2"}
	if compress {
		args = append(args, "-c")
	}
	var qemu, mine []time.Duration
	for i := 0; i < 3*b.N; i++ { // alternate; report medians
		b.StopTimer()
		qdst := filepath.Join(dir, "qemu.qcow2")
		syscall.Sync() // no writeback of the previous run during this one
		start := time.Now()
		if out, err := exec.Command("qemu-img", append(args, src, qdst)...).CombinedOutput(); err != nil {
			b.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		qemu = append(qemu, time.Since(start))
		os.Remove(qdst)
		dst := filepath.Join(dir, "paddock.qcow2")
		syscall.Sync()
		b.StartTimer()
		start = time.Now()
		if err := Convert(context.Background(), src, dst, ConvertOptions{SrcFormat: FormatRaw, Compress: compress, NoSync: cache == "unsafe"}); err != nil {
			b.Fatal(err)
		}
		mine = append(mine, time.Since(start))
		b.StopTimer()
		os.Remove(dst)
	}
	slices.Sort(qemu)
	slices.Sort(mine)
	paddock, qemuT := mine[len(mine)/2], qemu[len(qemu)/2]
	b.ReportMetric(paddock.Seconds(), "paddock-s")
	b.ReportMetric(qemuT.Seconds(), "qemu-s")
	b.ReportMetric(qemuT.Seconds()/paddock.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkConvert1G(b *testing.B)           { benchConvert(b, false, "writeback") }
func BenchmarkConvert1GUnsafe(b *testing.B)     { benchConvert(b, false, "unsafe") }
func BenchmarkConvert1GCompressed(b *testing.B) { benchConvert(b, true, "writeback") }
