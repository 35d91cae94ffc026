package machine

import (
	"context"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// TestHoldBeforeRun holds a machine before Run: the counter guest must
// not execute an instruction until Resume.
func TestHoldBeforeRun(t *testing.T) {
	requireKVM(t)
	con := newConsole()
	m, err := New(Config{CPUs: 1, Memory: 64 << 20, Console: con}, BootConfig{Kernel: buildGuest(t, "counter", nil)})
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
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	done := make(chan Exit, 1)
	ended := make(chan struct{})
	go func() {
		e, _ := m.Run(ctx)
		done <- e
		close(ended)
	}()
	// Hold again once Run runs: Pause's path, still paused.
	if err := m.Hold(); err != nil {
		t.Fatal(err)
	}
	b, err := m.Memory().Slice(0x90000, 4)
	if err != nil {
		t.Fatal(err)
	}
	// The guest zeroes the counter and prints before counting: nothing
	// of it may happen while held.
	time.Sleep(50 * time.Millisecond)
	if b[0]|b[1]|b[2]|b[3] != 0 || con.String() != "" {
		t.Fatalf("the guest ran while held: counter %x, console %q", b, con.String())
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
