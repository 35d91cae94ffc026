package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// Power-loss simulation: a Storage that remembers which writes are not yet
// covered by a Sync. At random moments the test builds the disk a power
// cut would leave (the synced state plus a random subset of the later
// writes, each torn at 512-byte sector granularity) and checks it.

// memStorage is an in-memory Storage.
type memStorage struct {
	mu   sync.Mutex
	data []byte
}

func (m *memStorage) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memStorage) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if end := off + int64(len(p)); end > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, end-int64(len(m.data)))...)
	}
	copy(m.data[off:], p)
	return len(p), nil
}

func (m *memStorage) Truncate(size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size <= int64(len(m.data)) {
		m.data = m.data[:size]
	} else {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	return nil
}

func (m *memStorage) Sync() error  { return nil }
func (m *memStorage) Close() error { return nil }
func (m *memStorage) Size() (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.data)), nil
}

// pendingWrite is a write (or truncate, with data == nil) not yet synced.
type pendingWrite struct {
	off  int64
	data []byte
	size int64 // truncate target
}

// powerStorage wraps memStorage and records unsynced writes. crashPoint is
// called before every write and sync.
type powerStorage struct {
	memStorage
	durable    []byte
	pending    []pendingWrite
	crashPoint func(p *powerStorage)
}

func newPowerStorage(initial []byte) *powerStorage {
	p := &powerStorage{durable: bytes.Clone(initial)}
	p.data = bytes.Clone(initial)
	return p
}

func (p *powerStorage) WriteAt(b []byte, off int64) (int, error) {
	if p.crashPoint != nil {
		p.crashPoint(p)
	}
	p.mu.Lock()
	p.pending = append(p.pending, pendingWrite{off: off, data: bytes.Clone(b)})
	p.mu.Unlock()
	return p.memStorage.WriteAt(b, off)
}

func (p *powerStorage) Truncate(size int64) error {
	if p.crashPoint != nil {
		p.crashPoint(p)
	}
	p.mu.Lock()
	p.pending = append(p.pending, pendingWrite{size: size})
	p.mu.Unlock()
	return p.memStorage.Truncate(size)
}

func (p *powerStorage) Sync() error {
	if p.crashPoint != nil {
		p.crashPoint(p)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.durable = bytes.Clone(p.data)
	p.pending = nil
	return nil
}

// crashImage returns what a power cut now could leave on disk.
func (p *powerStorage) crashImage(r *rand.Rand) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := bytes.Clone(p.durable)
	for _, w := range p.pending {
		if w.data == nil {
			if r.Intn(2) == 0 {
				if w.size <= int64(len(out)) {
					out = out[:w.size]
				} else {
					out = append(out, make([]byte, w.size-int64(len(out)))...)
				}
			}
			continue
		}
		// Each sector of the write independently reaches the disk or not.
		for s := int64(0); s < int64(len(w.data)); {
			secEnd := min(int64(len(w.data)), alignDown(w.off+s, 512)+512-w.off)
			if r.Intn(2) == 0 {
				end := w.off + secEnd
				if end > int64(len(out)) {
					out = append(out, make([]byte, end-int64(len(out)))...)
				}
				copy(out[w.off+s:end], w.data[s:secEnd])
			}
			s = secEnd
		}
	}
	return out
}

// TestPowerLoss runs a workload with writes, zeroes, discards, flushes,
// compressed writes and snapshot create/delete, and checks many simulated
// power cuts: no corruption except COPIED flags left behind by a snapshot
// operation (which check -r all repairs), acknowledged data and finished
// snapshots intact.
func TestPowerLoss(t *testing.T) {
	eachPowerLossLayout(t, func(t *testing.T, o CreateOptions, seed int64) {
		// A dry run counts the storage operations; the real run cuts
		// power at a random sample of them.
		total := powerLossRun(t, o, seed, nil)
		cuts := powerCuts()
		r := rand.New(rand.NewSource(seed))
		at := map[int]bool{}
		for len(at) < min(cuts, total) {
			at[r.Intn(total)] = true
		}
		powerLossRun(t, o, seed, at)
	})
}

// eachPowerLossLayout runs fn in parallel subtests, one per image layout
// the power-loss tests cover, with a seed per layout.
func eachPowerLossLayout(t *testing.T, fn func(t *testing.T, o CreateOptions, seed int64)) {
	for ci, o := range []CreateOptions{
		{ClusterSize: 4096},
		{ExtendedL2: true, ClusterSize: 16384},
		{Version: 2, ClusterSize: 4096, RefcountBits: 16},
	} {
		t.Run(strings.ReplaceAll(describe(o), " ", "_"), func(t *testing.T) {
			t.Parallel()
			fn(t, o, int64(ci))
		})
	}
}

// powerCuts is how many power cuts each layout simulates:
// PADDOCK_POWERLOSS_CUTS, default 40 (15 with -short).
func powerCuts() int {
	if v, err := strconv.Atoi(os.Getenv("PADDOCK_POWERLOSS_CUTS")); err == nil && v > 0 {
		return v
	}
	if testing.Short() || raceEnabled {
		return 8
	}
	return 40
}

// powerLossRun runs the workload, simulating a power cut before the
// storage operations whose index is in cutAt, and returns how many
// storage operations there were.
func powerLossRun(t *testing.T, o CreateOptions, seed int64, cutAt map[int]bool) int {
	const size = 4 << 20
	o.Size = size
	ms := &memStorage{}
	o.Storage = ms
	if err := Create("mem.qcow2", o); err != nil {
		t.Fatal(err)
	}
	ps := newPowerStorage(ms.data)
	img, err := Open("mem.qcow2", Options{Storage: ps, L2CacheBytes: 64 << 10, RefcountCacheBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	cs := img.ClusterSize()
	r := rand.New(rand.NewSource(seed))
	cr := rand.New(rand.NewSource(seed + 100))

	var ops []crashOp // for verification, with 'c' for compressed writes
	acked := -1       // ops[:acked+1] are durable
	durableModel := make([]byte, size)
	snapModels := map[string][]byte{}
	liveModel := make([]byte, size)
	checked, qemuChecked := 0, 0
	var crashErr error

	storageOps := 0
	haveQemu := testenv.HasTool(t, "qemu-img", "qemu-utils")
	ps.crashPoint = func(p *powerStorage) {
		storageOps++
		if crashErr != nil || !cutAt[storageOps-1] {
			return
		}
		disk := p.crashImage(cr)
		checked++
		doQemu := checked%4 == 0 && haveQemu
		if doQemu {
			qemuChecked++
		}
		crashErr = checkCrashImage(t, disk, o, durableModel, ops[acked+1:], snapModels, cs, doQemu)
		if crashErr != nil {
			crashErr = fmt.Errorf("power cut %d (after op %d, last flush at op %d): %w", checked, len(ops)-1, acked, crashErr)
		}
	}

	snapN := 0
	for i := 0; i < scaled(260) && crashErr == nil; i++ {
		op := crashOps(seed*7919+int64(i), size, cs, 1)[0]
		k := r.Intn(40)
		switch {
		case k == 0 && len(snapModels) < 3:
			name := fmt.Sprintf("snap%d", snapN)
			snapN++
			// Known before the call: a cut may publish it at any point.
			snapModels[name] = bytes.Clone(liveModel)
			if _, err := img.CreateSnapshot(name, SnapshotOptions{}); err != nil {
				t.Fatal(err)
			}
			// CreateSnapshot flushes: everything so far is durable.
			acked = len(ops) - 1
			copy(durableModel, liveModel)
			continue
		case k == 1 && len(snapModels) > 0:
			names := slices.Sorted(maps.Keys(snapModels)) // deterministic: the dry run must match
			if err := img.DeleteSnapshot(names[0]); err != nil {
				t.Fatal(err)
			}
			delete(snapModels, names[0])
			acked = len(ops) - 1
			copy(durableModel, liveModel)
			continue
		case k < 5:
			off := alignDown(r.Int63n(size), cs)
			n := min(cs, size-off)
			op = crashOp{kind: 'c', off: off, n: n, seed: r.Int63()}
		}
		ops = append(ops, op)
		if err := doOp(img, op); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		applyModelOp(liveModel, op, cs)
		if op.kind == 'f' {
			acked = len(ops) - 1
			copy(durableModel, liveModel)
		}
	}
	if crashErr != nil {
		t.Fatal(crashErr)
	}
	ps.crashPoint = nil
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if cutAt != nil {
		if checked != len(cutAt) {
			t.Fatalf("simulated %d power cuts, planned %d", checked, len(cutAt))
		}
		t.Logf("%d power cuts among %d storage operations checked (%d also with qemu-img)", checked, storageOps, qemuChecked)
	}
	return storageOps
}

// qemuCheckAllowFlags runs qemu-img check and accepts only leaks and
// COPIED flag mismatches.
func qemuCheckAllowFlags(path string) error {
	out, _ := exec.Command("qemu-img", "check", path).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ERROR") && !strings.HasPrefix(line, "ERROR OFLAG_COPIED") {
			return fmt.Errorf("qemu-img check: %s\n%s", line, out)
		}
	}
	return nil
}

// compressiblePattern fills p with data that compresses well but differs
// per seed.
func compressiblePattern(p []byte, seed int64) {
	s := fmt.Sprintf("compressed cluster %d ", seed)
	for i := range p {
		p[i] = s[i%len(s)]
	}
}

// applyModelOp is applyOp plus compressed writes.
func applyModelOp(data []byte, op crashOp, cs int64) {
	if op.kind == 'c' {
		compressiblePattern(data[op.off:op.off+op.n], op.seed)
		return
	}
	applyOp(data, op, cs)
}

// checkCrashImage opens a simulated post-crash disk and checks it.
func checkCrashImage(t *testing.T, disk []byte, o CreateOptions, durable []byte, later []crashOp, snaps map[string][]byte, cs int64, withQemu bool) error {
	st := &memStorage{data: bytes.Clone(disk)}
	img, err := Open("crash.qcow2", Options{Storage: st})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer img.Close()
	res, err := img.Check(RepairNone)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if res.Corruptions != res.FlagErrors {
		return fmt.Errorf("check: %d corruptions: %s", res.Corruptions, strings.Join(res.Messages, "; "))
	}
	if withQemu {
		dir := tempDir(t)
		f := filepath.Join(dir, "crash.qcow2")
		if err := os.WriteFile(f, disk, 0o644); err != nil {
			return err
		}
		if err := qemuCheckAllowFlags(f); err != nil {
			return err
		}
	}
	got := make([]byte, len(durable))
	if _, err := img.ReadAt(got, 0); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := matchCrash(got, durable, later, cs); err != nil {
		return err
	}
	for _, s := range img.Snapshots() {
		want, ok := snaps[s.Name]
		if !ok {
			continue // deleted after the cut: its contents are not tracked
		}
		v, err := img.SnapshotView(s.Name)
		if err != nil {
			return err
		}
		sg := make([]byte, v.Size())
		if _, err := v.ReadAt(sg, 0); err != nil {
			return fmt.Errorf("read snapshot %s: %w", s.Name, err)
		}
		if !bytes.Equal(sg, want) {
			return fmt.Errorf("snapshot %s changed", s.Name)
		}
	}
	if res.FlagErrors > 0 {
		// Repair them, and everything must be clean.
		if _, err := img.Check(RepairAll); err != nil {
			return err
		}
		again, err := img.Check(RepairNone)
		if err != nil {
			return err
		}
		if again.Corruptions != 0 {
			return fmt.Errorf("after repair: %s", strings.Join(again.Messages, "; "))
		}
	}
	return nil
}

// matchCrash is verifyCrash's rule as an error.
func matchCrash(got, durable []byte, later []crashOp, cs int64) error {
	type span struct {
		lo, hi int64
		val    []byte
	}
	var spans []span
	for _, op := range later {
		lo, hi := op.off, op.off+op.n
		if op.kind == 'd' {
			lo, hi = alignUp(op.off, cs), alignDown(op.off+op.n, cs)
			if op.off+op.n == int64(len(got)) {
				hi = int64(len(got))
			}
		}
		if op.kind == 'f' || lo >= hi {
			continue
		}
		val := make([]byte, hi-lo)
		switch op.kind {
		case 'w':
			fillPattern(val, op.seed)
		case 'c':
			compressiblePattern(val, op.seed)
		}
		spans = append(spans, span{lo, hi, val})
	}
	for x := range got {
		if got[x] == durable[x] {
			continue
		}
		ok := false
		for _, sp := range spans {
			if int64(x) >= sp.lo && int64(x) < sp.hi && got[x] == sp.val[int64(x)-sp.lo] {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("byte %#x = %#02x, durable value %#02x, and no later operation wrote it", x, got[x], durable[x])
		}
	}
	return nil
}
