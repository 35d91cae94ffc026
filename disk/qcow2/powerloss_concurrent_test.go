package qcow2

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// Concurrent power loss: several writers share one image, as the queues
// of a virtio-blk device do, each flushing now and then, while power is
// cut at random storage operations. Every cut must leave an image that
// paddock's check and qemu-img check find clean (leaks allowed) and where
// every write that completed before a flush that completed before the
// cut reads back.
//
// The writers own disjoint bytes, so that the expected contents stay
// well defined: in the first half of the disk writer w owns slice w of
// every cluster (so the writers race to allocate and copy the same
// clusters and their L2 tables), in the second half a contiguous zone of
// its own (so allocations of many clusters at once interleave).

// stoppableStorage is a powerStorage whose operations a simulated power
// cut can stop: every operation holds world shared, the cut holds it
// exclusively, so the cut sees the storage and the writers' records at
// one instant.
type stoppableStorage struct {
	*powerStorage
	world  sync.RWMutex
	before func() // called before each write, truncate and sync, outside world
}

func (s *stoppableStorage) ReadAt(p []byte, off int64) (int, error) {
	s.world.RLock()
	defer s.world.RUnlock()
	return s.powerStorage.ReadAt(p, off)
}

func (s *stoppableStorage) WriteAt(p []byte, off int64) (int, error) {
	s.before()
	s.world.RLock()
	defer s.world.RUnlock()
	return s.powerStorage.WriteAt(p, off)
}

func (s *stoppableStorage) Truncate(size int64) error {
	s.before()
	s.world.RLock()
	defer s.world.RUnlock()
	return s.powerStorage.Truncate(size)
}

func (s *stoppableStorage) Sync() error {
	s.before()
	s.world.RLock()
	defer s.world.RUnlock()
	return s.powerStorage.Sync()
}

// writerLog records one writer's operations: ops[:done] have returned,
// ops[done:] were issued and may be running; ops[:durable] are covered by
// a flush that returned.
type writerLog struct {
	ops     []crashOp
	done    int
	durable int
}

// concurrentModel is what the writers have done, guarded by mu.
type concurrentModel struct {
	mu   sync.Mutex
	logs []writerLog
}

// issue records that writer w starts op.
func (m *concurrentModel) issue(w int, op crashOp) {
	m.mu.Lock()
	m.logs[w].ops = append(m.logs[w].ops, op)
	m.mu.Unlock()
}

// complete records that writer w's oldest running op returned.
func (m *concurrentModel) complete(w int) {
	m.mu.Lock()
	m.logs[w].done++
	m.mu.Unlock()
}

// flushStarts returns, per writer, how many ops had returned: what the
// flush starting now makes durable.
func (m *concurrentModel) flushStarts() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	token := make([]int, len(m.logs))
	for w := range m.logs {
		token[w] = m.logs[w].done
	}
	return token
}

// flushed records that a flush started with token returned.
func (m *concurrentModel) flushed(token []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for w, n := range token {
		m.logs[w].durable = max(m.logs[w].durable, n)
	}
}

// expect returns the disk contents every durable op implies and the ops
// that may or may not have reached the disk. Precondition: mu is held.
func (m *concurrentModel) expect(size, cs int64) ([]byte, []crashOp) {
	durable := make([]byte, size)
	var later []crashOp
	for _, l := range m.logs {
		for i, op := range l.ops {
			if i < l.durable {
				applyOp(durable, op, cs)
			} else {
				later = append(later, op)
			}
		}
	}
	return durable, later
}

// writerOp returns writer w's next operation: a write or zeroes within
// what it owns, or a flush.
func writerOp(r *rand.Rand, w, writers int, size, cs int64) crashOp {
	op := crashOp{kind: 'w', seed: r.Int63()}
	switch k := r.Intn(20); {
	case k < 2:
		return crashOp{kind: 'f'}
	case k < 4:
		op.kind = 'z'
	}
	half := size / 2
	if r.Intn(2) == 0 {
		// A part of writer w's slice of a shared cluster.
		slice := cs / int64(writers)
		base := r.Int63n(half/cs)*cs + int64(w)*slice
		from := r.Int63n(slice)
		op.off = base + from
		op.n = 1 + r.Int63n(slice-from)
		return op
	}
	// A run of writer w's own zone.
	zone := (size - half) / int64(writers)
	start := half + int64(w)*zone
	op.n = 1 + r.Int63n(min(zone, 96<<10))
	op.off = start + r.Int63n(zone-op.n+1)
	return op
}

// TestPowerLossConcurrent cuts power at random moments of a workload of
// several concurrent writers with flushes.
func TestPowerLossConcurrent(t *testing.T) {
	eachPowerLossLayout(t, func(t *testing.T, o CreateOptions, seed int64) {
		// A first run counts the storage operations (roughly: the
		// interleaving differs from run to run), to spread the cuts.
		total, _ := concurrentPowerLossRun(t, o, seed, 0)
		cuts := powerCuts()
		checked, qemuChecked := concurrentPowerLossRun(t, o, seed, max(1, total/cuts))
		if checked < cuts/2 {
			t.Fatalf("only %d power cuts simulated of %d planned", checked, cuts)
		}
		t.Logf("%d power cuts among about %d storage operations checked (%d also with qemu-img)", checked, total, qemuChecked)
	})
}

// concurrentPowerLossRun runs the workload, simulating a power cut every
// gap storage operations (0: none); which operation that is, and what
// the other writers are doing then, varies with the interleaving. It returns how many
// storage operations there were, or how many cuts it checked and how
// many of them qemu-img checked too.
func concurrentPowerLossRun(t *testing.T, o CreateOptions, seed int64, gap int) (int, int) {
	const size = 4 << 20
	const writers = 4
	haveQemu := testenv.HasTool(t, "qemu-img", "qemu-utils")
	o.Size = size
	ms := &memStorage{}
	o.Storage = ms
	if err := Create("mem.qcow2", o); err != nil {
		t.Fatal(err)
	}
	st := &stoppableStorage{powerStorage: newPowerStorage(ms.data)}
	img, err := Open("mem.qcow2", Options{Storage: st, L2CacheBytes: 64 << 10, RefcountCacheBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	cs := img.ClusterSize()
	model := &concurrentModel{logs: make([]writerLog, writers)}

	var storageOps atomic.Int64
	var cutMu sync.Mutex // guards cr, checked, qemuChecked, crashErr
	cr := rand.New(rand.NewSource(seed + 100))
	checked, qemuChecked := 0, 0
	var crashErr error
	var failed atomic.Bool
	st.before = func() {
		n := storageOps.Add(1)
		if gap == 0 || failed.Load() || n%int64(gap) != int64(gap/2) {
			return
		}
		cutMu.Lock()
		defer cutMu.Unlock()
		st.world.Lock()
		disk := st.crashImage(cr)
		model.mu.Lock()
		durable, later := model.expect(size, cs)
		model.mu.Unlock()
		st.world.Unlock()
		checked++
		doQemu := checked%4 == 0 && haveQemu
		if doQemu {
			qemuChecked++
		}
		if err := checkConcurrentCrash(t, disk, durable, later, cs, doQemu); err != nil {
			crashErr = fmt.Errorf("power cut %d: %w", checked, err)
			failed.Store(true)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed*7919 + int64(w)))
			for i := 0; i < scaled(120) && !failed.Load(); i++ {
				op := writerOp(r, w, writers, size, cs)
				if op.kind == 'f' {
					token := model.flushStarts()
					if err := img.Flush(); err != nil {
						errs <- fmt.Errorf("writer %d: flush: %w", w, err)
						return
					}
					model.flushed(token)
					continue
				}
				model.issue(w, op)
				if err := doOp(img, op); err != nil {
					errs <- fmt.Errorf("writer %d: %c %#x+%d: %w", w, op.kind, op.off, op.n, err)
					return
				}
				model.complete(w)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if crashErr != nil {
		t.Fatal(crashErr)
	}
	st.before = func() {}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	// After a clean close everything is durable and the image is clean.
	model.mu.Lock()
	for w := range model.logs {
		model.logs[w].durable = len(model.logs[w].ops)
	}
	durable, _ := model.expect(size, cs)
	model.mu.Unlock()
	if err := checkConcurrentCrash(t, st.durable, durable, nil, cs, haveQemu); err != nil {
		t.Fatalf("after close: %v", err)
	}
	if gap == 0 {
		return int(storageOps.Load()), 0
	}
	return checked, qemuChecked
}

// checkConcurrentCrash opens a simulated post-crash disk and checks it:
// no corruption (leaks are allowed), durable data intact.
func checkConcurrentCrash(t *testing.T, disk, durable []byte, later []crashOp, cs int64, withQemu bool) error {
	img, err := Open("crash.qcow2", Options{Storage: &memStorage{data: bytes.Clone(disk)}, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer img.Close()
	res, err := img.Check(RepairNone)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if res.Corruptions != 0 || res.CheckErrors != 0 {
		return fmt.Errorf("check: %d corruptions, %d check errors: %s", res.Corruptions, res.CheckErrors, strings.Join(res.Messages, "; "))
	}
	if withQemu {
		f := filepath.Join(tempDir(t), "crash.qcow2")
		if err := os.WriteFile(f, disk, 0o644); err != nil {
			return err
		}
		if q := qemuCheckJSON(t, f); q.Corruptions != 0 || q.CheckErrors != 0 {
			return fmt.Errorf("qemu-img check: %+v", q)
		}
	}
	got := make([]byte, len(durable))
	if _, err := img.ReadAt(got, 0); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return matchCrash(got, durable, later, cs)
}
