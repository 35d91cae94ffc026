package qcow2

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Crash tests: a writer process is killed (SIGKILL) at random points; the
// image must then pass `qemu-img check` without corruptions, and every
// write acknowledged by a Flush must read back.
//
// PADDOCK_CRASH_ITERATIONS sets the number of kills per layout (default
// 10; more with go test -run Crash for deeper runs).

const crashChildEnv = "PADDOCK_QCOW2_CRASH_CHILD"

// TestMain runs the crash writer when re-executed as one.
func TestMain(m *testing.M) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		if err := crashChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashOp is one operation of the writer; its data derives from seed.
type crashOp struct {
	kind   byte // 'w' write, 'z' write zeroes, 'd' discard, 'f' flush
	off, n int64
	seed   int64
}

// crashOps generates a deterministic operation list.
func crashOps(seed, size, cs int64, count int) []crashOp {
	r := rand.New(rand.NewSource(seed))
	ops := make([]crashOp, count)
	for i := range ops {
		var n int64
		switch r.Intn(3) {
		case 0:
			n = int64(r.Intn(8192) + 1)
		case 1:
			n = cs * int64(r.Intn(3)+1)
		default:
			n = int64(r.Intn(512<<10) + 1)
		}
		off := r.Int63n(size - n + 1)
		op := crashOp{off: off, n: n, seed: r.Int63()}
		switch k := r.Intn(20); {
		case k < 14:
			op.kind = 'w'
		case k < 16:
			op.kind = 'z'
		case k < 17:
			op.kind = 'd'
		default:
			op.kind = 'f'
		}
		ops[i] = op
	}
	return ops
}

// crashChild is the writer process: it applies the operations and
// reports "O i" after operation i completes and "F i" after a flush at
// operation i returns.
func crashChild(spec string) error {
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		return fmt.Errorf("bad spec %q", spec)
	}
	seed, _ := strconv.ParseInt(parts[1], 10, 64)
	count, _ := strconv.Atoi(parts[2])
	img, err := Open(parts[0], Options{})
	if err != nil {
		return err
	}
	ops := crashOps(seed, img.Size(), img.ClusterSize(), count)
	out := os.Stdout
	for i, op := range ops {
		if err := doOp(img, op); err != nil {
			return fmt.Errorf("op %d (%c %#x+%d): %w", i, op.kind, op.off, op.n, err)
		}
		if op.kind == 'f' {
			fmt.Fprintf(out, "F %d\n", i)
		}
		fmt.Fprintf(out, "O %d\n", i)
	}
	return img.Close()
}

// doOp performs an operation on an image: 'w' write, 'c' compressed
// write, 'z' write zeroes, 'd' discard, 'f' flush.
func doOp(img *Image, op crashOp) error {
	var err error
	switch op.kind {
	case 'w':
		p := make([]byte, op.n)
		fillPattern(p, op.seed)
		_, err = img.WriteAt(p, op.off)
	case 'c':
		p := make([]byte, op.n)
		compressiblePattern(p, op.seed)
		err = img.WriteCompressed(p, op.off)
	case 'z':
		err = img.WriteZeroes(op.off, op.n, op.seed%2 == 0)
	case 'd':
		err = img.Discard(op.off, op.n)
	case 'f':
		err = img.Flush()
	}
	return err
}

// applyOp applies an operation to a byte model.
func applyOp(data []byte, op crashOp, cs int64) {
	switch op.kind {
	case 'w':
		fillPattern(data[op.off:op.off+op.n], op.seed)
	case 'z':
		clear(data[op.off : op.off+op.n])
	case 'd':
		s, e := alignUp(op.off, cs), alignDown(op.off+op.n, cs)
		if op.off+op.n == int64(len(data)) {
			e = int64(len(data))
		}
		if s < e {
			clear(data[s:e])
		}
	}
}

func crashIterations() int {
	if v, err := strconv.Atoi(os.Getenv("PADDOCK_CRASH_ITERATIONS")); err == nil && v > 0 {
		return v
	}
	if testing.Short() || raceEnabled {
		return 4
	}
	return 10
}

func TestCrashKill(t *testing.T) {
	needTool(t, "qemu-img")
	for ci, o := range []CreateOptions{
		{ClusterSize: 4096},
		{ExtendedL2: true},
		{ClusterSize: 65536, Version: 2},
	} {
		t.Run(strings.ReplaceAll(describe(o), " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := tempDir(t)
			q := filepath.Join(dir, "img.qcow2")
			const size = 8 << 20
			o.Size = size
			if err := Create(q, o); err != nil {
				t.Fatal(err)
			}
			baseline := make([]byte, size)
			r := rand.New(rand.NewSource(int64(ci)))
			for iter := 0; iter < crashIterations(); iter++ {
				seed := int64(ci*1000 + iter)
				const count = 150
				ops := crashOps(seed, size, clusterSizeOf(o), count)
				killAt := r.Intn(count)
				flushed, done := runAndKill(t, q, seed, count, killAt)
				leaks := qemuCheck(t, q)
				img, err := Open(q, Options{ReadOnly: true})
				if err != nil {
					t.Fatalf("iteration %d: reopen after kill: %v", iter, err)
				}
				got := readAll(t, img, size)
				img.Close()
				verifyCrash(t, iter, got, baseline, ops, flushed, clusterSizeOf(o))
				t.Logf("iteration %d: killed after op %d (last flush at op %d), %d leaked clusters", iter, done, flushed, leaks)
				baseline = got
			}
			// The leaks are repairable and the repair keeps the data.
			img, err := Open(q, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img.Check(RepairLeaks); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "after leak repair", readAll(t, img, size), baseline)
			img.Close()
			if leaks := qemuCheck(t, q); leaks != 0 {
				t.Fatalf("%d leaks after repair", leaks)
			}
		})
	}
}

func clusterSizeOf(o CreateOptions) int64 {
	if o.ClusterSize == 0 {
		return 64 << 10
	}
	return o.ClusterSize
}

// runAndKill runs a writer and kills it once it reports completing
// operation killAt (or lets it finish). It returns the index of the last
// acknowledged flush (-1: none) and of the last reported operation.
func runAndKill(t *testing.T, path string, seed int64, count, killAt int) (flushed, done int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d", crashChildEnv, path, seed, count))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	flushed, done = -1, -1
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		i, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "F":
			flushed = i
		case "O":
			done = i
		}
		if done >= killAt && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed && err != nil {
		t.Fatalf("writer failed: %v\n%s", err, stderr.String())
	}
	return flushed, done
}

// verifyCrash checks every byte: it must hold the value it had after the
// last acknowledged flush, or a value some later operation could have
// stored there.
func verifyCrash(t *testing.T, iter int, got, baseline []byte, ops []crashOp, flushed int, cs int64) {
	t.Helper()
	durable := append([]byte(nil), baseline...)
	for i := 0; i <= flushed; i++ {
		applyOp(durable, ops[i], cs)
	}
	if err := matchCrash(got, durable, ops[flushed+1:], cs); err != nil {
		t.Fatalf("iteration %d: after the last flush (op %d): %v", iter, flushed, err)
	}
}
