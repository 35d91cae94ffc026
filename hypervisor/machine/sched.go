package machine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Thread scheduling.
//
// A VMM's threads are of two kinds: vCPU threads, which run the guest,
// and the threads Go runs everything else on, chiefly the device
// goroutines that serve the guest's queues. When they share a host CPU
// (an overcommitted host, a VMM pinned to one CPU), Linux's default
// policy lets a device thread that wakes up preempt the vCPU at once:
// the guest kicks a queue, the device takes that one request and
// interrupts the guest before it could queue a second. Each request then
// costs the guest a kick and an interrupt of its own. The I/O threads
// therefore run as SCHED_BATCH, which never preempts on wakeup: a woken
// device thread runs when the vCPU halts (a guest waiting for I/O) or at
// the next scheduler tick, by which time the guest has queued more, and
// one kick and one interrupt serve them all. On a host with idle CPUs the
// device thread runs on another CPU at once and nothing changes.
//
// Measured in the lab (BenchmarkVirtioLab: guest and VMM on one L1 CPU,
// 256 MiB over TCP from the guest to L1): the guest's transmit interrupts
// fell from one per frame (about 5,200) to one per 8 frames, and
// throughput rose from 18-31 MB/s to 65-99 MB/s; ping latency with an
// idle guest did not move.
//
// A policy the user chose (SCHED_IDLE, a real-time policy, set with chrt
// before paddock started) is left alone, as is each thread's nice value.

// batchOnce makes the process's threads SCHED_BATCH once: threads Go
// creates later inherit the policy from the thread that creates them,
// which is never a vCPU thread (Go creates threads for a locked thread's
// needs from a template thread).
var batchOnce sync.Once

// batchThreads makes every thread of the process SCHED_BATCH. It runs
// before the first vCPU thread exists, so it cannot demote one. The sweep
// repeats until it finds no thread it has not seen, in case the runtime
// cloned one from a thread not yet switched.
func batchThreads() error {
	var err error
	batchOnce.Do(func() {
		seen := map[int]bool{}
		for pass := 0; pass < 5; pass++ {
			ents, rerr := os.ReadDir("/proc/self/task")
			if rerr != nil {
				err = fmt.Errorf("machine: list threads: %w", rerr)
				return
			}
			fresh := false
			for _, e := range ents {
				tid, perr := strconv.Atoi(e.Name())
				if perr != nil || seen[tid] {
					continue
				}
				seen[tid], fresh = true, true
				// ESRCH: the thread exited meanwhile.
				if serr := setThreadPolicy(tid, unix.SCHED_BATCH); serr != nil && !errors.Is(serr, unix.ESRCH) {
					err = serr
					return
				}
			}
			if !fresh {
				return
			}
		}
	})
	return err
}

// setThreadPolicy switches thread tid (0: the calling thread) between
// SCHED_NORMAL and SCHED_BATCH, keeping its nice value. A thread under
// any other policy is left as it is.
func setThreadPolicy(tid int, policy uint32) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return fmt.Errorf("machine: thread %d: sched_getattr: %w", tid, err)
	}
	if attr.Policy == policy || (attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH) {
		return nil
	}
	set := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Nice: attr.Nice}
	if err := unix.SchedSetAttr(tid, &set, 0); err != nil {
		return fmt.Errorf("machine: thread %d: sched_setattr: %w", tid, err)
	}
	return nil
}

// warnf reports a scheduling problem once per machine: paddock works
// without the policy, only slower under CPU contention.
func (m *Machine) warnf(format string, args ...any) {
	if m.schedWarned.CompareAndSwap(false, true) {
		m.logf("machine: thread scheduling: "+format, args...)
	}
}
