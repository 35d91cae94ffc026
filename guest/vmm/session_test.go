package vmm

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/boot/smbios"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// newSession returns a booted session of a tiny guest whose phase changes
// arrive on the returned channel.
func newSession(t *testing.T, guest string, restart configs.RestartPolicy, b Backoff) (*Session, <-chan store.Phase) {
	t.Helper()
	testguest.RequireKVM(t)
	vm := &configs.VM{Name: "s", Kernel: testguest.Build(t, guest), Memory: 64 * configs.MiB, Restart: restart}
	vm.FillDefaults()
	if err := vm.ValidateStructure(); err != nil {
		t.Fatal(err)
	}
	phases := make(chan store.Phase, 64)
	s := NewSession(vm, Options{Handles: openHandles(t, vm, OpenOptions{}), Backoff: b, OnChange: func(s Snapshot) { phases <- s.Phase }})
	if err := s.Boot(); err != nil {
		t.Fatal(err)
	}
	return s, phases
}

// waitPhase waits for the session to report phase p.
func waitPhase(t *testing.T, phases <-chan store.Phase, p store.Phase) {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case got := <-phases:
			if got == p {
				return
			}
		case <-timeout:
			t.Fatalf("no %s phase", p)
		}
	}
}

// TestStopWhileRestarting checks that a stop or kill request ends a
// session that waits out a restart backoff, at once.
func TestStopWhileRestarting(t *testing.T) {
	long := Backoff{First: time.Hour, Max: time.Hour, Window: time.Hour, Limit: 5}
	for _, kill := range []bool{false, true} {
		s, phases := newSession(t, "crash", configs.RestartOnFailure, long)
		results := make(chan Result, 1)
		go func() { results <- s.Run(context.Background()) }()
		waitPhase(t, phases, store.PhaseRestarting)
		if err := s.Pause(); err == nil || err.Error() != "cannot pause VM 's': it is waiting to restart" {
			t.Errorf("Pause while restarting: %v", err)
		}
		var res api.StopResult
		var err error
		if kill {
			res, err = s.Kill()
		} else {
			res, err = s.Shutdown(time.Hour)
		}
		r := <-results
		switch {
		case err != nil:
			t.Errorf("stop (kill %v): %v", kill, err)
		case kill && (res.How != api.StopKilled || r.Reason != exit.Kill):
			t.Errorf("Kill while restarting: %+v, result %+v", res, r)
		case !kill && (res.How != api.StopCancelled || r.Reason != exit.Stop):
			t.Errorf("Shutdown while restarting: %+v, result %+v", res, r)
		}
		if r.Boots != 1 || r.Restarts != 0 {
			t.Errorf("boots %d, restarts %d; want 1, 0", r.Boots, r.Restarts)
		}
		var ae *api.Error
		if _, err := s.Kill(); !errors.As(err, &ae) || ae.Message != "cannot kill VM 's': it has stopped" {
			t.Errorf("Kill after the end: %v", err)
		}
	}
}

// TestKillDuringShutdown checks that kill escalates a pending shutdown of
// a guest that ignores the power button.
func TestKillDuringShutdown(t *testing.T) {
	s, phases := newSession(t, "counter", configs.RestartNo, Backoff{})
	results := make(chan Result, 1)
	go func() { results <- s.Run(context.Background()) }()
	waitPhase(t, phases, store.PhaseRunning)
	stopped := make(chan api.StopResult, 1)
	go func() {
		res, _ := s.Shutdown(time.Hour)
		stopped <- res
	}()
	waitPhase(t, phases, store.PhaseStopping)
	if _, err := s.Shutdown(time.Hour); err == nil || err.Error() != "cannot stop VM 's': it is stopping" {
		t.Errorf("second Shutdown: %v", err)
	}
	if res, err := s.Kill(); err != nil || res.How != api.StopKilled {
		t.Errorf("Kill = %+v, %v", res, err)
	}
	if res := <-stopped; res.How != api.StopKilled {
		t.Errorf("the pending Shutdown returned %+v, want killed", res)
	}
	if r := <-results; r.Reason != exit.Kill {
		t.Errorf("result %+v", r)
	}
}

// TestShutdownPaused checks that a paused guest is resumed to hear the
// power button.
func TestShutdownPaused(t *testing.T) {
	s, phases := newSession(t, "pwrbtn", configs.RestartNo, Backoff{})
	results := make(chan Result, 1)
	go func() { results <- s.Run(context.Background()) }()
	waitPhase(t, phases, store.PhaseRunning)
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, phases, store.PhasePaused)
	res, err := s.Shutdown(testTimeout)
	if err != nil || res.How != api.StopACPI {
		t.Fatalf("Shutdown of a paused guest = %+v, %v; want acpi", res, err)
	}
	if r := <-results; r.Reason != exit.Stop || r.How != api.StopACPI || r.Boots != 1 {
		t.Errorf("result %+v; want an ACPI stop after one boot", r)
	}
}

func TestSessionContextCancel(t *testing.T) {
	s, phases := newSession(t, "counter", configs.RestartAlways, Backoff{})
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan Result, 1)
	go func() { results <- s.Run(ctx) }()
	waitPhase(t, phases, store.PhaseRunning)
	cancel()
	if r := <-results; r.Reason != exit.Stop || r.How != "" || r.Boots != 1 {
		t.Errorf("result after cancel %+v; want a plain stop, no restart", r)
	}
	<-s.Done()
}

// TestSessionUUID checks that the session's UUID reaches the machine: the
// SMBIOS tables in guest memory are those of the VM's UUID.
func TestSessionUUID(t *testing.T) {
	testguest.RequireKVM(t)
	vm := &configs.VM{Name: "s", Kernel: testguest.Build(t, "counter"), Memory: 64 * configs.MiB, CPUs: 2}
	vm.FillDefaults()
	u := [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 1}
	var tables []byte
	s := NewSession(vm, Options{Handles: openHandles(t, vm, OpenOptions{}), UUID: u, OnBoot: func(_ int, m *machine.Machine) {
		b, err := m.Memory().Slice(machine.SMBIOSStart, 0x200)
		if err != nil {
			t.Error(err)
		}
		tables = append([]byte{}, b...)
	}})
	if err := s.Boot(); err != nil {
		t.Fatal(err)
	}
	// A run with a cancelled context stops and closes the machine.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := s.Run(ctx); r.Reason != exit.Stop {
		t.Errorf("run with a cancelled context ended %v, want stop", r.Reason)
	}
	want, err := smbios.Build(smbios.Config{UUID: u, CPUs: 2}, machine.SMBIOSStart)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(tables, want) {
		t.Errorf("SMBIOS area after boot:\n% x\nwant the tables of UUID % x:\n% x", tables[:len(want)], u, want)
	}
}

// firstWrite is a console sink that closes its channel at the guest's
// first output.
type firstWrite struct {
	once sync.Once
	ch   chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.ch) })
	return len(p), nil
}

// TestGuestRunsWhileRecorded checks that a boot's guest does not wait for
// the report of its running phase (which the VMM makes an fsync'd write of
// state.json and then its readiness message): here that report waits for
// the guest's first output, which comes only if the guest runs meanwhile.
func TestGuestRunsWhileRecorded(t *testing.T) {
	testguest.RequireKVM(t)
	vm := &configs.VM{Name: "s", Kernel: testguest.Build(t, "counter"), Memory: 64 * configs.MiB}
	vm.FillDefaults()
	out := &firstWrite{ch: make(chan struct{})}
	phases := make(chan store.Phase, 64)
	s := NewSession(vm, Options{Handles: openHandles(t, vm, OpenOptions{}), Console: out, OnChange: func(sn Snapshot) {
		if sn.Phase == store.PhaseRunning {
			select {
			case <-out.ch:
			case <-time.After(testTimeout):
				t.Error("the guest did not run while its running phase was reported")
			}
		}
		phases <- sn.Phase
	}})
	if err := s.Boot(); err != nil {
		t.Fatal(err)
	}
	results := make(chan Result, 1)
	go func() { results <- s.Run(context.Background()) }()
	waitPhase(t, phases, store.PhaseRunning)
	if _, err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.Reason != exit.Kill || r.Boots != 1 {
		t.Errorf("result %+v; want a kill after one boot", r)
	}
}
