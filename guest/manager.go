package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// Timeouts of managed operations.
const (
	// DefaultStartTimeout bounds how long Start waits for the VMM to get
	// the guest running.
	DefaultStartTimeout = time.Minute
	// exitGrace is how long a command waits for a VMM to exit once it
	// reported the guest stopped, or after SIGKILL.
	exitGrace = 15 * time.Second
	// callTimeout bounds quick control calls (status, pause, kill).
	callTimeout = 15 * time.Second
)

// Options configure a Manager.
type Options struct {
	// Home is the state directory; empty means store.DefaultHome().
	Home string
	// VMMCommand is the command line that runs a VMM, to which Start
	// appends "--home HOME --ready-fd 3 NAME"; empty means this
	// executable's hidden `vmm` command.
	VMMCommand []string
	// StartTimeout bounds Start's wait for the VMM; zero means
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// Manager manages the VMs of one state directory. Every method may run
// concurrently with any other, in this process or another: per-VM locks
// and the VMMs' run locks keep them consistent.
type Manager struct {
	store *store.Store
	opts  Options
}

// Open returns the manager of the state directory opts.Home.
func Open(opts Options) (*Manager, error) {
	if opts.Home == "" {
		h, err := store.DefaultHome()
		if err != nil {
			return nil, err
		}
		opts.Home = h
	}
	if len(opts.VMMCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("guest: find this executable to run VMMs: %w", err)
		}
		opts.VMMCommand = []string{exe, "vmm"}
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	s, err := store.Open(opts.Home)
	if err != nil {
		return nil, err
	}
	return &Manager{store: s, opts: opts}, nil
}

// Home returns the state directory.
func (m *Manager) Home() string { return m.store.Home() }

// Names returns the names of all VMs, sorted.
func (m *Manager) Names() ([]string, error) { return m.store.Names() }

// vm returns the named VM or a NotFoundError with a suggestion.
func (m *Manager) vm(name string) (*store.VM, error) {
	v, err := m.store.VM(name)
	if err == nil {
		return v, nil
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadName) {
		names, _ := m.store.Names()
		return nil, &NotFoundError{Name: name, Suggestion: suggest(name, names)}
	}
	return nil, err
}

// lock takes the VM's mutation lock, with the errors users see.
func (m *Manager) lock(v *store.VM) (*store.Lock, error) {
	l, err := v.Lock()
	switch {
	case errors.Is(err, store.ErrBusy):
		return nil, &BusyError{Name: v.Name}
	case errors.Is(err, store.ErrNotFound):
		return nil, &NotFoundError{Name: v.Name}
	}
	return l, err
}

// facts reads a VM's record and run lock. A record that cannot be read
// (a damaged state.json) reads as a VM that is not running, with the
// problem in err; a record of a newer paddock is only an error, as is a
// run lock that cannot be checked.
func facts(v *store.VM) (store.Record, store.Holder, error) {
	h, err := v.RunHolder()
	if err != nil {
		return store.Record{}, store.Holder{}, err
	}
	rec, err := v.ReadRecord()
	if err != nil {
		return store.Record{Phase: store.PhaseExited}, h, err
	}
	return rec, h, nil
}

// usable reports whether an error from facts leaves facts good enough to
// act on: only a damaged state.json does, which the next VMM replaces.
func usable(err error) bool {
	var pe *store.RecordError
	return err == nil || errors.As(err, &pe) && !errors.Is(err, store.ErrRecordVersion)
}

// Create adds vm to the store (its resolved spec becomes vm.yaml); source
// is the file it came from, for inspect. A VM with cloud_init gets
// paddock's SSH key and its key files' keys in its ssh_keys (vm is
// changed). Precondition: vm has been through FillDefaults and Validate.
func (m *Manager) Create(vm *configs.VM, source string) (*Info, error) {
	if err := authorizePaddock(vm, m.Home()); err != nil {
		return nil, err
	}
	var opts store.CreateOptions
	if vm.From != "" {
		from, err := m.planFrom(vm)
		if err != nil {
			return nil, err
		}
		defer from.lock.Unlock()
		vm, opts = from.spec, from.opts
	}
	spec, err := yaml.Marshal(vm)
	if err != nil {
		return nil, fmt.Errorf("guest: encode the spec of %s: %w", vm.Name, err)
	}
	if source != "" && source != "-" {
		if abs, err := filepath.Abs(source); err == nil {
			source = abs
		}
	}
	header := "# The resolved spec of VM " + vm.Name + ", written by paddock create"
	if source != "" {
		header += " from " + source
	}
	spec = append([]byte(header+".\n"), spec...)
	// The formats of the disks, detected now, before any guest wrote
	// them, are the ones they open in from now on (vmm.PinFormats).
	formats, err := vmm.DetectFormats(vm)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	rec := store.Record{CreatedAt: time.Now(), Source: source, Phase: store.PhaseCreated}
	opts.Formats = formats
	v, err := m.store.CreateVM(vm.Name, spec, rec, opts)
	if errors.Is(err, store.ErrExists) {
		return nil, &ExistsError{Name: vm.Name}
	}
	if err != nil {
		return nil, err
	}
	if err := m.reserveAddresses(vm); err != nil {
		return nil, errors.Join(fmt.Errorf("VM %s: %w", vm.Name, err), m.store.Remove(v))
	}
	return m.info(v, false)
}

// Spec returns the VM's stored spec, defaults filled.
func (m *Manager) Spec(name string) (*configs.VM, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	return loadSpec(v)
}

func loadSpec(v *store.VM) (*configs.VM, error) {
	vm, err := configs.Load(v.Path(store.SpecFile))
	if err != nil {
		return nil, err
	}
	vm.FillDefaults()
	return vm, nil
}

// reapLocked records the end of a VMM that died without recording it:
// why it probably died, the last console lines and the VMM's last
// messages; and removes its socket. reason is exit.VMMDied, or exit.Kill
// after a SIGKILL. Precondition: the VM's lock is held and no VMM holds
// its run lock.
func reapLocked(v *store.VM, rec store.Record, reason exit.Reason, detail string) error {
	end := &store.Exit{Reason: reason, Detail: detail, At: time.Now()}
	end.ConsoleTail, _ = console.TailFile(v.Path(store.ConsoleFile), 20)
	if b, err := os.ReadFile(v.Path(store.VMMLogFile)); err == nil {
		end.VMMLogTail = console.TailLines(b, 20)
	}
	rec.Phase, rec.Exit = store.PhaseExited, end
	os.Remove(v.Path(store.SocketFile))
	return v.WriteRecord(rec)
}

// vmmDied is the detail of an exit.VMMDied.
func vmmDied(rec store.Record) string {
	return fmt.Sprintf("the VMM (pid %d) ended without recording why: it was killed (SIGKILL, the OOM killer) or crashed; its last messages are in vmm_log_tail", rec.PID)
}

// reap cleans up after a dead VMM if the VM's lock is free (a command
// holding it does its own cleanup).
func reap(v *store.VM) {
	l, err := v.Lock()
	if err != nil {
		return
	}
	defer l.Unlock()
	rec, h, err := facts(v)
	if err != nil || !store.Stale(rec, h) {
		return
	}
	_ = reapLocked(v, rec, exit.VMMDied, vmmDied(rec))
}

// Start boots the VM in a detached VMM process and returns once the
// guest runs (or the VMM failed: a *StartError, the VM keeping its
// state).
func (m *Manager) Start(ctx context.Context, name string) (*Info, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	l, err := m.lock(v)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	rec, h, err := facts(v)
	if !usable(err) {
		return nil, err
	}
	if h.Alive {
		return nil, &StateError{Name: name, Op: "start", State: store.Derive(rec, h)}
	}
	if store.Stale(rec, h) {
		if err := reapLocked(v, rec, exit.VMMDied, vmmDied(rec)); err != nil {
			return nil, err
		}
		if rec, err = v.ReadRecord(); !usable(err) {
			return nil, err
		}
	}
	vm, err := loadSpec(v)
	if err != nil {
		return nil, err
	}
	if err := m.checkFrom(v); err != nil {
		return nil, err
	}
	// Validate against the host's memory; the vCPU limit is the VMM's to
	// check (machine.New), which saves probing KVM twice on the way.
	host, _ := configs.HostFacts()
	if err := vm.Validate(host); err != nil {
		return nil, err
	}
	if vm.Backend != configs.BackendNative {
		return nil, fmt.Errorf("VM %s: backend %q: managed VMs run on the native backend", name, vm.Backend)
	}
	if err := writeSeed(v, vm); err != nil {
		return nil, err
	}
	if err := m.spawn(ctx, v, rec); err != nil {
		return nil, err
	}
	return m.info(v, false)
}

// client returns an API client for a VM whose VMM is alive, or a
// StateError.
func (m *Manager) client(v *store.VM, op string) (*api.Client, store.Holder, error) {
	rec, h, err := facts(v)
	var re *store.RecordError
	switch {
	case err != nil && !errors.As(err, &re):
		return nil, h, err
	case err != nil && h.Alive:
		// The record is unreadable but the VMM lives: ask it.
		return api.NewClient(v.Path(store.SocketFile), v.Name), h, nil
	}
	if !h.Alive {
		if store.Stale(rec, h) {
			reap(v)
			rec, _ = v.ReadRecord()
		}
		return nil, h, &StateError{Name: v.Name, Op: op, State: store.Derive(rec, h)}
	}
	if st := store.Derive(rec, h); st == store.StateStarting {
		return nil, h, &StateError{Name: v.Name, Op: op, State: st, Hint: "try again once it runs"}
	}
	return api.NewClient(v.Path(store.SocketFile), v.Name), h, nil
}

// apiError turns the VMM's refusals into the errors users see.
func apiError(name, op string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodeWrongState:
			return &StateError{Name: name, Op: op, Message: ae.Message}
		case api.CodeNotFound:
			return &NotFoundError{Name: name}
		}
		return fmt.Errorf("VM %s: %s: %w", name, op, ae)
	}
	if errors.Is(err, api.ErrUnavailable) {
		return fmt.Errorf("VM %s: %s: the VMM runs but does not answer on its control socket (%w); paddock kill %s ends it", name, op, err, name)
	}
	return fmt.Errorf("VM %s: %s: %w", name, op, err)
}

// Pause stops the VM's vCPUs.
func (m *Manager) Pause(ctx context.Context, name string) (api.Status, error) {
	return m.simpleCall(ctx, name, "pause", (*api.Client).Pause)
}

// Resume lets a paused VM run again.
func (m *Manager) Resume(ctx context.Context, name string) (api.Status, error) {
	return m.simpleCall(ctx, name, "resume", (*api.Client).Resume)
}

// Status asks a running VM's VMM for its live status.
func (m *Manager) Status(ctx context.Context, name string) (api.Status, error) {
	return m.simpleCall(ctx, name, "query", (*api.Client).Status)
}

func (m *Manager) simpleCall(ctx context.Context, name, op string, call func(*api.Client, context.Context) (api.Status, error)) (api.Status, error) {
	v, err := m.vm(name)
	if err != nil {
		return api.Status{}, err
	}
	c, _, err := m.client(v, op)
	if err != nil {
		return api.Status{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := call(c, ctx)
	if err != nil {
		return api.Status{}, apiError(name, op, err)
	}
	return st, nil
}

// Stop presses the VM's ACPI power button, waits up to timeout for the
// guest to power off, then forces it off; it returns once the VMM has
// exited.
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration) (api.StopResult, error) {
	v, err := m.vm(name)
	if err != nil {
		return api.StopResult{}, err
	}
	l, err := m.lock(v)
	if err != nil {
		return api.StopResult{}, err
	}
	defer l.Unlock()
	c, _, err := m.client(v, "stop")
	if err != nil {
		return api.StopResult{}, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, timeout+exitGrace)
	defer cancel()
	res, err := c.Shutdown(cctx, timeout)
	if err != nil {
		return api.StopResult{}, apiError(name, "stop", err)
	}
	if err := v.WaitRunUnlocked(exitGrace); err != nil {
		return res, fmt.Errorf("VM %s stopped, but its VMM did not exit: %w", name, err)
	}
	return res, nil
}

// Kill stops the VM at once. If the VMM does not answer, it is killed
// with SIGKILL. It returns once the VMM has exited.
func (m *Manager) Kill(ctx context.Context, name string) (api.StopResult, error) {
	v, err := m.vm(name)
	if err != nil {
		return api.StopResult{}, err
	}
	return m.kill(ctx, v)
}

func (m *Manager) kill(ctx context.Context, v *store.VM) (api.StopResult, error) {
	start := time.Now()
	c, h, err := m.client(v, "kill")
	if err != nil {
		var se *StateError
		if !errors.As(err, &se) || se.State != store.StateStarting {
			return api.StopResult{}, err
		}
		// A VMM that is starting does not serve its API yet.
		return m.sigkill(v, h, start)
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := c.Kill(cctx)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeWrongState {
			return api.StopResult{}, apiError(v.Name, "kill", err)
		}
		return m.sigkill(v, h, start)
	}
	if err := v.WaitRunUnlocked(exitGrace); err != nil {
		return m.sigkill(v, h, start)
	}
	return res, nil
}

// sigkill kills the VMM h with SIGKILL and records the kill.
func (m *Manager) sigkill(v *store.VM, h store.Holder, start time.Time) (api.StopResult, error) {
	now, err := v.RunHolder()
	if err != nil {
		return api.StopResult{}, err
	}
	// Kill only the process that holds the run lock now: its pid cannot
	// have been reused while it holds the lock.
	if now.Alive && now.PID > 0 && (h.RunID == "" || now.RunID == h.RunID) {
		if err := syscall.Kill(now.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return api.StopResult{}, fmt.Errorf("VM %s: kill the VMM (pid %d): %w", v.Name, now.PID, err)
		}
	}
	if err := v.WaitRunUnlocked(exitGrace); err != nil {
		return api.StopResult{}, fmt.Errorf("VM %s: the VMM survived SIGKILL: %w", v.Name, err)
	}
	if l, err := v.Lock(); err == nil {
		defer l.Unlock()
		if rec, h, err := facts(v); err == nil && store.Stale(rec, h) {
			_ = reapLocked(v, rec, exit.Kill, "the VMM did not answer; killed with SIGKILL")
		}
	}
	return api.StopResult{How: api.StopKilled, Elapsed: time.Since(start).Seconds()}, nil
}

// Remove deletes the VM and everything paddock created for it. A VM that
// runs is refused unless force, which kills it first.
func (m *Manager) Remove(ctx context.Context, name string, force bool) error {
	v, err := m.vm(name)
	if err != nil {
		return err
	}
	l, err := m.lock(v)
	if err != nil {
		return err
	}
	defer l.Unlock()
	rec, h, err := facts(v)
	var re *store.RecordError
	if err != nil && !errors.As(err, &re) {
		return err // only the run lock matters here
	}
	if h.Alive {
		if !force {
			return &StateError{Name: name, Op: "remove", State: store.Derive(rec, h), Hint: "stop it first (paddock stop " + name + "), or use --force"}
		}
		if _, err := m.kill(ctx, v); err != nil {
			var se *StateError
			if !errors.As(err, &se) {
				return err
			}
			// It stopped by itself meanwhile.
		}
		if err := v.WaitRunUnlocked(exitGrace); err != nil {
			return err
		}
	}
	if err := m.store.Remove(v); err != nil {
		return err
	}
	return m.releaseAddresses(name)
}

// Attach connects to the VM's console: reads are guest output, writes are
// keystrokes, Close detaches (the VM keeps running). tail > 0 replays the
// last tail lines first.
func (m *Manager) Attach(ctx context.Context, name string, tail int) (net.Conn, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	c, _, err := m.client(v, "attach to")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conn, err := c.Attach(cctx, tail)
	if err != nil {
		return nil, apiError(name, "attach to", err)
	}
	return conn, nil
}

// LogOptions select what Logs returns.
type LogOptions struct {
	// Follow streams live output after the history, until the VM stops;
	// the history is then what the VMM remembers (its last MiB).
	Follow bool
	// Tail keeps only the last Tail lines of the history; 0 keeps all.
	Tail int
}

// Logs returns the VM's console output: console.log (with the rotated
// console.log.1) or, when following a running VM, the VMM's stream.
func (m *Manager) Logs(ctx context.Context, name string, o LogOptions) (io.ReadCloser, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	if o.Follow {
		rec, h, err := facts(v)
		if err != nil {
			return nil, err
		}
		if h.Alive && store.Derive(rec, h) != store.StateStarting {
			c := api.NewClient(v.Path(store.SocketFile), v.Name)
			rc, err := c.Console(ctx, api.ConsoleOptions{Follow: true, Tail: o.Tail})
			if err == nil {
				return rc, nil
			}
			if !errors.Is(err, api.ErrUnavailable) {
				return nil, apiError(name, "follow the console of", err)
			}
			// The VMM ended meanwhile: the files have everything.
		}
	}
	data, err := console.ReadLog(v.Path(store.ConsoleFile))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(console.TailBytes(data, o.Tail)))), nil
}
