// Package vmm runs one VM for as long as it lives: Session boots the
// guest's machines one after another as the spec's on_reboot and restart
// policy say and takes pause, resume, shutdown and kill requests; Serve is
// the body of the detached VMM process (`paddock vmm`), which adds the
// state record, the console hub and log, and the control API. The
// foreground `paddock run` uses Session too.
package vmm

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
)

// Backoff is the restart policy's pacing.
type Backoff struct {
	// First is the wait before the first restart; it doubles for each
	// further consecutive one, up to Max. Reboots (on_reboot: restart)
	// restart at once.
	First, Max time.Duration
	// Window: a boot that ran at least this long resets the backoff and
	// the count of consecutive quick boots.
	Window time.Duration
	// Limit is how many consecutive quick boots end in an automatic
	// restart; the next quick end is final.
	Limit int
}

// DefaultBackoff is the pacing docs/yaml.md documents for `restart`.
var DefaultBackoff = Backoff{First: time.Second, Max: 30 * time.Second, Window: time.Minute, Limit: 10}

// delay returns the wait before the n-th consecutive restart (n >= 1).
func (b Backoff) delay(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Options connect a Session to its surroundings.
type Options struct {
	// Handles are what every machine of the session runs on (OpenHandles,
	// or handed over: fdtable.go); required. The session does not close
	// them.
	Handles *Handles
	// Console receives guest output; nil discards it.
	Console io.Writer
	// Input, if set, is the guest's console input, across boots.
	Input *console.Input
	// OnChange, if set, is called after every change of phase or boot,
	// one call at a time, with the session's state at that moment.
	OnChange func(Snapshot)
	// OnBoot, if set, is called when a machine has been built, before it
	// runs (boot counts from 0).
	OnBoot func(boot int, m *machine.Machine)
	// Logf, if set, receives the session's own messages and what the
	// devices report (host I/O errors, guest driver mistakes); nil: the
	// session's are dropped, the devices' go to standard error.
	Logf func(format string, args ...any)
	// Backoff paces restarts; zero means DefaultBackoff.
	Backoff Backoff
	// UUID is the VM's system UUID (store.Identity), which the guest
	// reads from the SMBIOS tables, in RFC 4122 byte order.
	UUID [16]byte
	// Restore, if set, is the snapshot the first machine is restored
	// from instead of booted; later boots (a guest reboot, a restart)
	// boot the kernel.
	Restore *RestoreFrom
}

// Snapshot is a session's state at one moment.
type Snapshot struct {
	Phase    store.Phase
	Boots    int // machines booted so far
	Restarts int // automatic restarts so far
	BootedAt time.Time
	Protocol string // how the current kernel booted (pvh, bzImage)
}

// Result is how a session ended.
type Result struct {
	Reason exit.Reason
	How    string // for exit.Stop: api.StopACPI, StopForced, StopCancelled
	Detail string
	Boots  int
	// Restarts counts automatic restarts (reboots and the restart policy).
	Restarts int
}

// stopKind is a stop the host asked for.
type stopKind int

const (
	stopNone stopKind = iota
	stopShutdown
	stopKill
)

// Session runs one VM: its machines, one after another. Methods are safe
// for concurrent use; Run is called once, after a successful Boot.
type Session struct {
	vm         *configs.VM
	o          Options
	deviceLogf func(format string, args ...any)

	op sync.Mutex // serializes Pause, Resume and the start of Shutdown
	// release is held for writing while a boot's machine is closed, for
	// reading while WriteDebug looks into it.
	release sync.RWMutex

	mu       sync.Mutex
	phase    store.Phase
	m        *machine.Machine   // the current machine, nil between boots
	bootStop chan struct{}      // closed when the current boot ends
	cancel   context.CancelFunc // stops the current boot
	stop     stopKind
	wake     chan struct{} // closed when a stop is requested
	boots    int
	restarts int
	bootedAt time.Time
	protocol string
	done     chan struct{} // closed when Run returns
	result   Result

	notify sync.Mutex // serializes OnChange
}

// NewSession returns a session for vm. Precondition: vm has been through
// FillDefaults and Validate.
func NewSession(vm *configs.VM, o Options) *Session {
	if o.Backoff == (Backoff{}) {
		o.Backoff = DefaultBackoff
	}
	deviceLogf := o.Logf // nil: the machine's default, standard error
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Session{vm: vm, o: o, deviceLogf: deviceLogf, phase: store.PhaseStarting, wake: make(chan struct{}), done: make(chan struct{})}
}

// Boot builds the first machine. Its error is the VM's start error: bad
// kernel, no KVM, too much memory.
func (s *Session) Boot() error {
	return s.build()
}

// build builds the next machine and makes it current.
func (s *Session) build() error {
	stop := make(chan struct{})
	var input io.Reader
	if s.o.Input != nil {
		input = s.o.Input.Reader(stop)
	}
	if s.o.Handles == nil {
		close(stop)
		return fmt.Errorf("vmm: VM %s: no handles to build its machine on", s.vm.Name)
	}
	cfg, err := machineConfig(s.vm, s.o.Handles)
	if err != nil {
		close(stop)
		return err
	}
	cfg.Console, cfg.ConsoleInput, cfg.Logf = s.o.Console, input, s.deviceLogf
	cfg.UUID = s.o.UUID
	m, protocol, err := s.newMachine(cfg)
	if err != nil {
		close(stop)
		return err
	}
	s.mu.Lock()
	s.m, s.bootStop = m, stop
	s.protocol = protocol
	boot := s.boots
	s.mu.Unlock()
	if s.o.OnBoot != nil {
		s.o.OnBoot(boot, m)
	}
	return nil
}

// newMachine boots a machine with cfg, or restores the snapshot Options
// names (once: the first machine only). It returns the machine and how
// it started (its kernel's boot protocol, or "snapshot").
func (s *Session) newMachine(cfg machine.Config) (*machine.Machine, string, error) {
	if r := s.o.Restore; r != nil {
		s.o.Restore = nil
		if r.NewMACs {
			var macs []netdev.MAC
			for _, n := range cfg.NICs {
				macs = append(macs, n.MAC)
			}
			if err := r.nicMACs(macs); err != nil {
				r.Memory.Close()
				if cfg.VM != nil {
					cfg.VM.Close()
				}
				return nil, "", fmt.Errorf("restore snapshot %s: %w", r.Name, err)
			}
		}
		m, err := machine.Restore(cfg, r.State, r.Memory)
		if err != nil {
			return nil, "", fmt.Errorf("restore snapshot %s: %w", r.Name, err)
		}
		return m, "snapshot", nil
	}
	m, err := machine.New(cfg, bootConfig(s.vm, s.o.Handles))
	if err != nil {
		return nil, "", err
	}
	return m, m.Entry().Protocol.String(), nil
}

// Snapshot returns the session's state now.
func (s *Session) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

func (s *Session) snapshotLocked() Snapshot {
	return Snapshot{Phase: s.phase, Boots: s.boots, Restarts: s.restarts, BootedAt: s.bootedAt, Protocol: s.protocol}
}

// changed tells OnChange about the state now.
func (s *Session) changed() {
	if s.o.OnChange == nil {
		return
	}
	s.notify.Lock()
	defer s.notify.Unlock()
	s.o.OnChange(s.Snapshot())
}

// setPhase sets the phase and reports the change.
func (s *Session) setPhase(p store.Phase) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.changed()
}

// Run runs the machine Boot built, and the ones after it, until the VM
// ends for good: the guest powers off or reboots (unless on_reboot or the
// restart policy boot it again), crashes (likewise), a restart fails, the
// host asks for a stop (Shutdown, Kill) or ctx is cancelled (an exit.Stop
// without How). Precondition: Boot succeeded.
func (s *Session) Run(ctx context.Context) Result {
	res := s.run(ctx)
	s.mu.Lock()
	s.phase = store.PhaseExited
	res.Boots, res.Restarts = s.boots, s.restarts
	s.result = res
	s.mu.Unlock()
	close(s.done)
	s.changed()
	return res
}

func (s *Session) run(ctx context.Context) Result {
	quick := 0 // consecutive boots that ended within the backoff window
	for {
		end, ran := s.runBoot(ctx)
		s.mu.Lock()
		stop := s.stop
		s.mu.Unlock()
		switch {
		case stop == stopKill:
			return Result{Reason: exit.Kill}
		case stop == stopShutdown:
			how := api.StopForced
			if end.Reason == exit.PowerOff || end.Reason == exit.Reboot {
				how = api.StopACPI
			}
			return Result{Reason: exit.Stop, How: how}
		case ctx.Err() != nil:
			return Result{Reason: exit.Stop}
		}
		final, delay, restart := s.decide(end)
		if !restart {
			return final
		}
		if ran >= s.o.Backoff.Window {
			quick = 0
		}
		quick++
		if quick > s.o.Backoff.Limit {
			final.Detail = joinDetail(final.Detail, fmt.Sprintf("gave up after %d restarts in a row that each ended within %s", s.o.Backoff.Limit, s.o.Backoff.Window))
			return final
		}
		if delay {
			wait := s.o.Backoff.delay(quick)
			s.o.Logf("VM %s: %s; restarting in %s", s.vm.Name, describeExit(end), wait)
			s.setPhase(store.PhaseRestarting)
			if r, stopped := s.waitRestart(ctx, wait); stopped {
				return r
			}
		} else {
			s.o.Logf("VM %s: %s; booting again", s.vm.Name, describeExit(end))
		}
		if err := s.build(); err != nil {
			return Result{Reason: exit.Crash, Detail: joinDetail(final.Detail, "restart failed: "+err.Error())}
		}
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
	}
}

// runBoot runs the current machine to its end and returns how it ended
// and how long it ran.
func (s *Session) runBoot(ctx context.Context) (machine.Exit, time.Duration) {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	m, stopFeed := s.m, s.bootStop
	s.cancel = cancel
	s.boots++
	s.bootedAt = time.Now()
	start := s.bootedAt
	if s.stop != stopNone {
		cancel() // a stop arrived while the machine was being built
	}
	if s.phase != store.PhaseStopping {
		s.phase = store.PhaseRunning
	}
	s.mu.Unlock()
	// The guest does not wait for its record: the change (an fsync'd
	// write of state.json, then the readiness message) is reported while
	// the vCPUs start. changed takes the session's state when it runs, so
	// a change made meanwhile is not undone, and the boot waits for it
	// before it ends, so that the end is reported after it.
	noted := make(chan struct{})
	go func() {
		defer close(noted)
		s.changed()
	}()

	end, err := m.Run(bctx)
	<-noted
	ran := time.Since(start)
	close(stopFeed)
	if err != nil {
		s.o.Logf("VM %s: %v", s.vm.Name, err)
	}
	s.release.Lock()
	if err := m.Close(); err != nil {
		s.o.Logf("VM %s: release the machine: %v", s.vm.Name, err)
	}
	s.mu.Lock()
	s.m, s.cancel = nil, nil
	s.mu.Unlock()
	s.release.Unlock()
	return end, ran
}

// WriteDebug writes the current machine's device state (see
// machine.WriteDebug) and reports whether there was a machine to look at.
func (s *Session) WriteDebug(w io.Writer) bool {
	s.release.RLock()
	defer s.release.RUnlock()
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	if m == nil {
		return false
	}
	m.WriteDebug(w)
	return true
}

// decide returns what a guest-initiated end means: the final result if the
// VM stops here, or that it restarts (delay: with the backoff).
func (s *Session) decide(end machine.Exit) (final Result, delay, restart bool) {
	policy := s.vm.Restart
	switch end.Reason {
	case exit.PowerOff:
		return Result{Reason: exit.PowerOff}, true, policy == configs.RestartAlways
	case exit.Reboot:
		final = Result{Reason: exit.Reboot, Detail: end.Detail}
		if s.vm.OnReboot == configs.RebootRestart {
			return final, false, true
		}
		return final, true, policy == configs.RestartAlways
	case exit.Crash:
		return Result{Reason: exit.Crash, Detail: end.Detail}, true, policy == configs.RestartOnFailure || policy == configs.RestartAlways
	}
	// exit.Stop without a stop request or a cancelled context cannot
	// happen; report it rather than loop.
	return Result{Reason: exit.Stop, Detail: "the machine stopped unexpectedly"}, false, false
}

// waitRestart waits out a restart backoff; a stop request or ctx ends it
// early with the final result.
func (s *Session) waitRestart(ctx context.Context, d time.Duration) (Result, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return Result{}, false
	case <-ctx.Done():
		return Result{Reason: exit.Stop}, true
	case <-s.wake:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stop == stopKill {
			return Result{Reason: exit.Kill}, true
		}
		return Result{Reason: exit.Stop, How: api.StopCancelled}, true
	}
}

func describeExit(e machine.Exit) string {
	switch e.Reason {
	case exit.PowerOff:
		return "the guest powered off"
	case exit.Reboot:
		return joinDetail("the guest rebooted", e.Detail)
	case exit.Crash:
		return joinDetail("the guest crashed", e.Detail)
	}
	return string(e.Reason)
}

func joinDetail(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// wrongState returns the refusal for an operation in the current phase.
// Precondition: mu is held.
func (s *Session) wrongState(op string) *api.Error {
	name := s.vm.Name
	switch s.phase {
	case store.PhaseStarting:
		return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': it is starting", op, name)
	case store.PhasePaused:
		return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': it is paused", op, name)
	case store.PhaseRunning:
		return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': it is running, not paused", op, name)
	case store.PhaseStopping:
		return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': it is stopping", op, name)
	case store.PhaseRestarting:
		return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': it is waiting to restart", op, name)
	}
	return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': it has stopped", op, name)
}

// Pause stops the guest's vCPUs.
func (s *Session) Pause() error {
	return s.transition("pause", store.PhaseRunning, store.PhasePaused, (*machine.Machine).Hold)
}

// Resume lets a paused guest run again.
func (s *Session) Resume() error {
	return s.transition("resume", store.PhasePaused, store.PhaseRunning, (*machine.Machine).Resume)
}

// transition applies act to the current machine and moves the session
// from phase from to phase to; op names it in refusals.
func (s *Session) transition(op string, from, to store.Phase, act func(*machine.Machine) error) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	m := s.m
	switch {
	case s.phase != from:
		defer s.mu.Unlock()
		return s.wrongState(op)
	case m == nil: // the boot just ended; what follows is being decided
		s.mu.Unlock()
		return api.Errorf(api.CodeWrongState, "cannot %s VM '%s': its guest just ended", op, s.vm.Name)
	}
	s.mu.Unlock()
	if err := act(m); err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.wrongState(op)
	}
	s.mu.Lock()
	if s.m == m && s.phase == from {
		s.phase = to
	}
	s.mu.Unlock()
	s.changed()
	return nil
}

// Shutdown asks the guest to power off with the ACPI power button (a
// paused guest is resumed first, to hear it), waits up to timeout, then
// forces it off. It returns when the session has ended. A VM waiting to
// restart stops at once.
func (s *Session) Shutdown(timeout time.Duration) (api.StopResult, error) {
	start := time.Now()
	s.op.Lock()
	s.mu.Lock()
	switch s.phase {
	case store.PhaseRunning, store.PhasePaused, store.PhaseRestarting:
	default:
		err := s.wrongState("stop")
		s.mu.Unlock()
		s.op.Unlock()
		return api.StopResult{}, err
	}
	s.stop = stopShutdown
	close(s.wake)
	m := s.m
	if s.phase != store.PhaseRestarting {
		s.phase = store.PhaseStopping
	}
	s.mu.Unlock()
	s.changed()
	if m != nil {
		if m.Paused() {
			if err := m.Resume(); err != nil {
				s.o.Logf("VM %s: resume to shut down: %v", s.vm.Name, err)
			}
		}
		if err := m.PowerButton(); err != nil {
			s.o.Logf("VM %s: power button: %v", s.vm.Name, err)
		}
	}
	s.op.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.o.Logf("VM %s: no power-off within %s of the power button; forcing it off", s.vm.Name, timeout)
		s.mu.Lock()
		if s.cancel != nil {
			s.cancel()
		}
		s.mu.Unlock()
		<-s.done
	}
	return s.stopResult(start), nil
}

// Kill stops the guest at once, even during a Shutdown, and returns when
// the session has ended.
func (s *Session) Kill() (api.StopResult, error) {
	start := time.Now()
	s.mu.Lock()
	switch s.phase {
	case store.PhaseRunning, store.PhasePaused, store.PhaseRestarting, store.PhaseStopping:
	default:
		err := s.wrongState("kill")
		s.mu.Unlock()
		return api.StopResult{}, err
	}
	if s.stop == stopNone {
		close(s.wake)
	}
	s.stop = stopKill
	s.phase = store.PhaseStopping
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.changed()
	<-s.done
	return s.stopResult(start), nil
}

// stopResult describes the session's end for a stop request.
// Precondition: done is closed.
func (s *Session) stopResult(start time.Time) api.StopResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	how := s.result.How
	if s.result.Reason == exit.Kill {
		how = api.StopKilled
	}
	return api.StopResult{How: how, Elapsed: time.Since(start).Seconds()}
}

// Done is closed when Run has returned.
func (s *Session) Done() <-chan struct{} { return s.done }
