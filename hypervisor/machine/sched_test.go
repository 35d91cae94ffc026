package machine

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func policyOf(t *testing.T, tid int) (uint32, int32) {
	t.Helper()
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a.Policy, a.Nice
}

// onThread runs fn on a locked OS thread that is destroyed afterwards, so
// what fn does to the thread's scheduling leaks nowhere.
func onThread(fn func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		defer close(done)
		fn()
	}()
	<-done
}

// TestThreadPolicy: while a machine runs, its vCPU thread has the normal
// policy and the process's other threads (those device goroutines run
// on) are SCHED_BATCH.
func TestThreadPolicy(t *testing.T) {
	r := start(t, Config{}, BootConfig{Kernel: guestKernel(t, "counter", nil)})
	if !r.con.waitFor("counting\n", r.done) {
		t.Fatalf("guest never started counting; console %q", r.con.String())
	}
	tid := int(r.m.vcpus[0].tid.Load())
	if p, _ := policyOf(t, tid); p != unix.SCHED_NORMAL {
		t.Errorf("vCPU thread policy %d, want SCHED_NORMAL", p)
	}
	onThread(func() {
		if p, _ := policyOf(t, 0); p != unix.SCHED_BATCH {
			t.Errorf("another thread's policy %d, want SCHED_BATCH", p)
		}
	})
}

// TestSetThreadPolicy: the switch keeps the nice value and leaves a policy
// the user chose (here SCHED_IDLE) alone.
func TestSetThreadPolicy(t *testing.T) {
	onThread(func() {
		tid := unix.Gettid()
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 7); err != nil {
			t.Error(err)
			return
		}
		for _, want := range []uint32{unix.SCHED_BATCH, unix.SCHED_NORMAL} {
			if err := setThreadPolicy(0, want); err != nil {
				t.Error(err)
				return
			}
			if p, nice := policyOf(t, 0); p != want || nice != 7 {
				t.Errorf("after switching to %d: policy %d nice %d, want nice 7", want, p, nice)
			}
		}
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0); err != nil {
			t.Error(err)
			return
		}
		if err := setThreadPolicy(0, unix.SCHED_BATCH); err != nil {
			t.Error(err)
		}
		if p, _ := policyOf(t, 0); p != unix.SCHED_IDLE {
			t.Errorf("SCHED_IDLE thread switched to %d", p)
		}
	})
}
