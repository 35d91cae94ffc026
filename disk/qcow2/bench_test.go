package qcow2

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Benchmarks, side by side with `qemu-img bench` on the same file system
// and the same image layout and request pattern: qemu-img bench's offset
// sequence (offset += step, modulo the image size), the same request
// count and queue depth (paddock: that many goroutines). Each benchmark
// reports paddock's and qemu-img's throughput and their ratio
// (paddock/qemu; > 1 means paddock is faster). `make bench-disk` runs
// them and prints a table.
//
// PADDOCK_BENCH_DIR picks the directory (default: the system temporary
// directory, a real disk file system); PADDOCK_BENCH_DEPTH the queue
// depth (default 16).

const (
	benchSize   = 1 << 30
	benchStride = 4096 * 7919 // a prime number of blocks: a scattered, "random" pattern
)

func benchDir(b *testing.B) string {
	b.Helper()
	d, err := os.MkdirTemp(os.Getenv("PADDOCK_BENCH_DIR"), "paddock-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func benchDepth() int {
	if v, err := strconv.Atoi(os.Getenv("PADDOCK_BENCH_DEPTH")); err == nil && v > 0 {
		return v
	}
	return 16
}

// benchPattern is one qemu-img bench request pattern.
type benchPattern struct {
	write bool
	count int
	bs    int64
	step  int64 // 0: sequential (step = bs)
}

func (p benchPattern) stepOrBS() int64 {
	if p.step == 0 {
		return p.bs
	}
	return p.step
}

func (p benchPattern) bytes() int64 { return int64(p.count) * p.bs }

// qemuBench runs qemu-img bench and returns its run time.
func qemuBench(b *testing.B, path string, p benchPattern, depth int) time.Duration {
	b.Helper()
	needTool(b, "qemu-img")
	args := []string{"bench", "-f", "qcow2", "-c", strconv.Itoa(p.count), "-d", strconv.Itoa(depth),
		"-s", strconv.FormatInt(p.bs, 10), "-S", strconv.FormatInt(p.stepOrBS(), 10)}
	if p.write {
		args = append(args, "-w")
	}
	out, err := exec.Command("qemu-img", append(args, path)...).CombinedOutput()
	if err != nil {
		b.Fatalf("qemu-img bench: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Run completed in ([0-9.]+) seconds`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("qemu-img bench output: %s", out)
	}
	secs, _ := strconv.ParseFloat(string(m[1]), 64)
	return time.Duration(secs * float64(time.Second))
}

// paddockBench runs the same pattern on img with depth goroutines.
func paddockBench(b *testing.B, img *Image, p benchPattern, depth int) time.Duration {
	b.Helper()
	size := img.Size()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for w := 0; w < depth; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, p.bs)
			fillPattern(buf, int64(w))
			for {
				i := next.Add(1) - 1
				if i >= int64(p.count) {
					return
				}
				off := (i * p.stepOrBS()) % size
				var err error
				if p.write {
					_, err = img.WriteAt(buf, off)
				} else {
					_, err = img.ReadAt(buf, off)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	return el
}

// report records both throughputs and their ratio.
func report(b *testing.B, p benchPattern, paddock, qemu time.Duration) {
	mbps := func(d time.Duration) float64 { return float64(p.bytes()) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(paddock), "paddock-MB/s")
	b.ReportMetric(mbps(qemu), "qemu-MB/s")
	b.ReportMetric(qemu.Seconds()/paddock.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op") // the wall time per op is meaningless here
}

// filledImage creates a 1 GiB image whose every cluster holds data.
func filledImage(b *testing.B, dir, name string, o CreateOptions) string {
	b.Helper()
	path := filepath.Join(dir, name)
	o.Size = benchSize
	if err := Create(path, o); err != nil {
		b.Fatal(err)
	}
	img, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	fillPattern(buf, 1)
	for off := int64(0); off < benchSize; off += int64(len(buf)) {
		if _, err := img.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := img.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchRounds is how many times each side runs; the medians are
// reported. Runs alternate between qemu-img and paddock so that drift in
// the machine's speed affects both alike.
const benchRounds = 3

// median returns the median duration.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// runBench compares paddock and qemu-img on one pattern. prepare returns
// the image to use for one run (fresh ones for write benchmarks, which
// are deleted after the run so that old images do not pile up in the
// page cache).
func runBench(b *testing.B, p benchPattern, prepare func() string) {
	depth := benchDepth()
	var qemu, mine []time.Duration
	for i := 0; i < benchRounds*b.N; i++ {
		b.StopTimer()
		qpath := prepare()
		// Start each run with no dirty data waiting for writeback: what
		// the previous run wrote must not slow down the next one.
		syscall.Sync()
		qemu = append(qemu, qemuBench(b, qpath, p, depth))
		if p.write {
			os.Remove(qpath)
		}
		path := prepare()
		syscall.Sync()
		img, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		mine = append(mine, paddockBench(b, img, p, depth))
		b.StopTimer()
		if err := img.Close(); err != nil {
			b.Fatal(err)
		}
		if p.write {
			os.Remove(path)
		}
	}
	report(b, p, median(mine), median(qemu))
}

func BenchmarkRandRead4K(b *testing.B) {
	path := filledImage(b, benchDir(b), "full.qcow2", CreateOptions{})
	runBench(b, benchPattern{count: 200000, bs: 4096, step: benchStride}, func() string { return path })
}

func BenchmarkRandWrite4KFresh(b *testing.B) {
	dir := benchDir(b)
	n := 0
	runBench(b, benchPattern{write: true, count: 100000, bs: 4096, step: benchStride}, func() string {
		n++
		path := filepath.Join(dir, fmt.Sprintf("fresh%d.qcow2", n))
		if err := Create(path, CreateOptions{Size: benchSize}); err != nil {
			b.Fatal(err)
		}
		return path
	})
}

func BenchmarkRandWrite4KPrealloc(b *testing.B) {
	dir := benchDir(b)
	n := 0
	runBench(b, benchPattern{write: true, count: 200000, bs: 4096, step: benchStride}, func() string {
		n++
		path := filepath.Join(dir, fmt.Sprintf("prealloc%d.qcow2", n))
		if err := Create(path, CreateOptions{Size: benchSize, Preallocation: "metadata"}); err != nil {
			b.Fatal(err)
		}
		return path
	})
}

func BenchmarkSeqRead1M(b *testing.B) {
	path := filledImage(b, benchDir(b), "full.qcow2", CreateOptions{})
	runBench(b, benchPattern{count: 4096, bs: 1 << 20}, func() string { return path })
}

func BenchmarkSeqWrite1M(b *testing.B) {
	dir := benchDir(b)
	n := 0
	runBench(b, benchPattern{write: true, count: 1024, bs: 1 << 20}, func() string {
		n++
		path := filepath.Join(dir, fmt.Sprintf("fresh%d.qcow2", n))
		if err := Create(path, CreateOptions{Size: benchSize}); err != nil {
			b.Fatal(err)
		}
		return path
	})
}

// BenchmarkChainRead4K reads through a 3-deep chain: a third of the
// clusters come from each layer.
func BenchmarkChainRead4K(b *testing.B) {
	dir := benchDir(b)
	base := filledImage(b, dir, "base.qcow2", CreateOptions{})
	prev := "base.qcow2"
	_ = base
	for _, name := range []string{"mid.qcow2", "top.qcow2"} {
		path := filepath.Join(dir, name)
		if err := Create(path, CreateOptions{Size: benchSize, BackingFile: prev, BackingFormat: "qcow2"}); err != nil {
			b.Fatal(err)
		}
		img, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		fillPattern(buf, int64(len(name)))
		phase := int64(1)
		if name == "top.qcow2" {
			phase = 2
		}
		for c := int64(0); c < benchSize>>16; c++ {
			if c%3 == phase {
				if _, err := img.WriteAt(buf, c<<16); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := img.Close(); err != nil {
			b.Fatal(err)
		}
		prev = name
	}
	top := filepath.Join(dir, "top.qcow2")
	runBench(b, benchPattern{count: 200000, bs: 4096, step: benchStride}, func() string { return top })
}
