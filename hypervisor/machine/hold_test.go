package machine

import (
	"context"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// waitParked waits until n vCPU threads are parked in checkpoint, where a
// vCPU waits before its next KVM_RUN while the machine is paused. It
// fails the test after guestTimeout.
func waitParked(t fataler, m *Machine, n int) {
	t.Helper()
	timedOut := false
	timer := time.AfterFunc(guestTimeout, func() {
		m.ctl.Lock()
		timedOut = true
		m.cond.Broadcast()
		m.ctl.Unlock()
	})
	defer timer.Stop()
	m.ctl.Lock()
	defer m.ctl.Unlock()
	for m.parked < n && !timedOut {
		m.cond.Wait()
	}
	if m.parked < n {
		t.Fatalf("%d of %d vCPUs parked after %v", m.parked, n, guestTimeout)
	}
}

// TestHoldBeforeRun holds a machine before Run: the counter guest must
// not execute an instruction until Resume.
func TestHoldBeforeRun(t *testing.T) {
	requireKVM(t)
	con := newConsole()
	m, err := New(Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20, Console: con}, BootConfig{Kernel: guestKernel(t, "counter", nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Hold(); err != nil {
		t.Fatal(err)
	}
	if !m.Paused() {
		t.Fatal("Paused() = false after Hold")
	}
	entry, err := m.vcpus[0].k.Regs()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	done := make(chan Exit, 1)
	ended := make(chan struct{})
	go func() {
		e, _ := m.Run(ctx)
		done <- e
		close(ended)
	}()
	// Run started the vCPU thread, which stops at its first checkpoint,
	// before its first KVM_RUN: the guest has executed nothing.
	waitParked(t, m, 1)
	regs, err := m.vcpus[0].k.Regs()
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Memory().Slice(0x90000, 4)
	if err != nil {
		t.Fatal(err)
	}
	if regs.RIP != entry.RIP || b[0]|b[1]|b[2]|b[3] != 0 || con.String() != "" {
		t.Fatalf("the guest ran while held: RIP %#x (entry %#x), counter %x, console %q", regs.RIP, entry.RIP, b, con.String())
	}
	// Hold again now that Run runs: Pause's path, still paused.
	if err := m.Hold(); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	if !con.waitFor("counting\n", ended) {
		t.Fatalf("the guest did not run after Resume; console %q", con.String())
	}
	cancel()
	if e := <-done; e.Reason != exit.Stop {
		t.Fatalf("exit %v", e.Reason)
	}
	if err := m.Hold(); err == nil {
		t.Fatal("Hold of a stopped machine succeeded")
	}
}
