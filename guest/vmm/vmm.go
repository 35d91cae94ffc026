package vmm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/devices"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// TailLines is how many console and VMM log lines a crash record keeps.
const TailLines = 20

// Config is what a VMM process needs.
type Config struct {
	// Home is the store's home directory and Name the VM to run.
	Home, Name string
	// Ready, if set, gets one JSON line (Ready) once the guest runs, or
	// once starting failed, and is then closed: the readiness pipe of
	// the `paddock start` that spawned the VMM.
	Ready io.WriteCloser
	// KVMPath overrides /dev/kvm when the VMM opens its own handles.
	KVMPath string
	// Handles, if set, are the VM's handles, opened by the process that
	// started the VMM and handed over; the VMM then opens none itself and
	// attaches to no network. Serve takes them over: they are closed when
	// it returns. FDTable, if set instead, is the descriptor table of
	// handles handed over as inherited descriptors (FDTableEnv), which
	// Serve reads first (HandlesFromFDs): a table it cannot use fails the
	// start before anything of the VM is touched. Neither: the VMM opens
	// them itself (OpenVMHandles).
	Handles *Handles
	FDTable string
	// Log receives the VMM's own messages (its stderr, vmm.log); nil
	// discards them.
	Log io.Writer
	// Signals, if set, makes SIGTERM and SIGINT shut the VM down (ACPI
	// power button, api.DefaultShutdownTimeout) and a second one kill it.
	Signals bool
	// Backoff paces restarts; zero means DefaultBackoff.
	Backoff Backoff
	// NetdCommand runs a managed network's netd; empty means this
	// executable's `netd` command.
	NetdCommand []string
	// Restore, if set, names the VM's snapshot the first machine is
	// restored from instead of booted.
	Restore string
	// Warm restores the first machine from the memory snapshot of the
	// warm template the VM was made from (its from.json) instead: a
	// warm clone's first start.
	Warm bool
	// Version is the paddock version, recorded in snapshots.
	Version string
	// PID is the VMM's process id as the host sees it, recorded for
	// paddock kill and shown by paddock inspect; zero means os.Getpid().
	// A jailed VMM, in its own PID namespace, is 1 there (guest/jail).
	PID int
}

// Ready is the message on the readiness pipe.
type Ready struct {
	OK    bool   `json:"ok"`
	PID   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// StartError is a failure before the guest ran; the VM's record keeps its
// previous state, with the error as start_error.
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// vmmProc is one VMM process's state.
type vmmProc struct {
	cfg   Config
	vm    *store.VM
	logf  func(format string, args ...any)
	runID string

	recMu sync.Mutex
	rec   store.Record // what state.json says; guarded by recMu

	// diskPaths are the paths of the VM's disks, as its spec has them
	// (snapshots record them).
	diskPaths []string

	readyOnce sync.Once
}

// Serve runs the VM called cfg.Name from the store in cfg.Home until it
// ends for good, as the detached VMM process does: it takes the VM's run
// lock, records every change in state.json, keeps the console in memory
// and in console.log, serves the control API on ctl.sock, and on the way
// out records how the VM ended and removes what it created. Errors before
// the guest runs are *StartError; ctx cancellation kills the VM.
func Serve(ctx context.Context, cfg Config) error {
	p := &vmmProc{cfg: cfg}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	var logMu sync.Mutex
	p.logf = devices.NewLogLimiter(func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(logw, "%s vmm[%d]: %s\n", time.Now().Format(time.RFC3339Nano), p.pid(), fmt.Sprintf(format, args...))
	}, LogPace, nil).Printf
	err := p.serve(ctx)
	if err != nil {
		p.logf("%v", err)
		p.ready(Ready{Error: err.Error()})
	}
	return err
}

// pid is the VMM's process id as the host sees it (Config.PID).
func (p *vmmProc) pid() int {
	if p.cfg.PID > 0 {
		return p.cfg.PID
	}
	return os.Getpid()
}

// ready sends the readiness message once and closes the pipe.
func (p *vmmProc) ready(r Ready) {
	p.readyOnce.Do(func() { p.sendReady(r) })
}

// sendReady writes r to the readiness pipe, if any, and closes it.
// Precondition: called once, under readyOnce.
func (p *vmmProc) sendReady(r Ready) {
	if p.cfg.Ready == nil {
		return
	}
	b, _ := json.Marshal(r)
	_, _ = p.cfg.Ready.Write(append(b, '\n'))
	p.cfg.Ready.Close()
}

func (p *vmmProc) serve(ctx context.Context) error {
	if p.cfg.Handles == nil && p.cfg.FDTable != "" {
		h, err := HandlesFromFDs(p.cfg.FDTable)
		if err != nil {
			return &StartError{err}
		}
		p.cfg.Handles = h
		// The kernel creates the VM while this process takes its lock
		// and reads the snapshot, if it restores one.
		h.CreateVMAhead()
	}
	if h := p.cfg.Handles; h != nil {
		defer h.Close() // should the run lock not be taken
	}
	st, err := store.Open(p.cfg.Home)
	if err != nil {
		return &StartError{err}
	}
	v, err := st.VM(p.cfg.Name)
	if err != nil {
		return &StartError{err}
	}
	p.vm = v
	p.runID = newRunID()
	lock, err := v.AcquireRunLock(p.pid(), p.runID)
	if err != nil {
		return &StartError{err}
	}
	defer func() {
		// The handles (at once if the VM never ran; run closes them
		// otherwise) go before the run lock: a command that finds the
		// run lock free opens the disks next.
		if h := p.cfg.Handles; h != nil {
			h.Close()
		}
		lock.Release()
	}()
	v.SweepSnapshotDirs() // what a VMM killed while it took one left

	prev, err := v.ReadRecord()
	if err != nil {
		p.logf("ignoring an unreadable record: %v", err)
		prev = store.Record{CreatedAt: time.Now()}
	}
	// This run's record is written once the guest runs. Until then the
	// run lock, whose run id differs from the record's, says "starting";
	// not writing it here saves an fsync'd write on the way to ready.
	rec := prev
	rec.RunID, rec.PID, rec.Phase = p.runID, p.pid(), store.PhaseStarting
	rec.StartedAt, rec.BootedAt, rec.Boots, rec.Restarts, rec.StartError = time.Now(), time.Time{}, 0, 0, ""
	p.recMu.Lock()
	p.rec = rec
	p.recMu.Unlock()
	p.logf("VMM for %s started (run %s)", v.Name, p.runID)

	res, err := p.run(ctx)
	if err != nil {
		// Not started: keep the previous state, note why.
		prev.StartError = err.Error()
		if prev.Phase != store.PhaseCreated {
			prev.Phase = store.PhaseExited
		}
		if werr := p.write(prev); werr != nil {
			p.logf("%v", werr)
		}
		return &StartError{err}
	}
	return p.finish(res)
}

// run starts the VM and runs it to its end. An error means it never ran.
func (p *vmmProc) run(ctx context.Context) (runResult, error) {
	vm, err := configs.Load(p.vm.Path(store.SpecFile))
	if err != nil {
		return runResult{}, err
	}
	vm.FillDefaults()
	if p.cfg.Handles != nil {
		// The files the spec names were checked, and opened, by the
		// command that started the VMM: it opens none of them.
		err = vm.ValidateStructure()
	} else {
		host, herr := configs.HostFacts()
		if herr != nil {
			p.logf("host memory not checked: %v", herr)
		}
		err = vm.Validate(host)
	}
	if err != nil {
		return runResult{}, err
	}
	// A VM created before paddock recorded identities gets its UUID now.
	id, err := p.vm.EnsureIdentity()
	if err != nil {
		return runResult{}, err
	}
	seed := ""
	if vm.CloudInit {
		// The start command wrote it (guest.Manager.Start).
		seed = p.vm.Path(store.SeedFile)
	}
	h := p.cfg.Handles
	if h == nil {
		if h, err = OpenVMHandles(p.vm, vm, VMHandleOptions{Home: p.cfg.Home, NetdCommand: p.cfg.NetdCommand, KVMPath: p.cfg.KVMPath, Seed: seed, Warm: p.cfg.Warm}); err != nil {
			return runResult{}, err
		}
	}
	// Held until the VMM exits: the networks serve the VM meanwhile, and
	// every machine of the run is built on the same handles.
	defer h.Close()
	if err := h.fit(vm); err != nil {
		return runResult{}, err
	}
	for _, d := range vm.Disks {
		p.diskPaths = append(p.diskPaths, d.Path)
	}
	var restore *RestoreFrom
	if p.cfg.Restore != "" {
		if restore, err = OpenSnapshot(p.vm, p.cfg.Restore); err != nil {
			return runResult{}, err
		}
		p.logf("restoring snapshot %s", p.cfg.Restore)
	} else if p.cfg.Warm {
		if restore, err = h.takeWarm(); err != nil {
			return runResult{}, err
		}
		p.logf("restoring the memory snapshot %s", restore.Name)
	}

	managedLog := ""
	if vm.Console.Mode != configs.ConsoleNone {
		managedLog = p.vm.Path(store.ConsoleFile)
	}
	sinks, closeLogs, err := OpenConsoleLogs(vm, managedLog, h.ConsoleLog, p.logf)
	if err != nil {
		return runResult{}, err
	}
	h.ConsoleLog = nil // the logs have them now
	defer closeLogs()
	hub := console.NewHub(console.DefaultHistory, sinks...)
	input := console.NewInput()
	defer input.Close()

	sess := NewSession(vm, Options{
		Handles:  h,
		Console:  hub,
		Input:    input,
		OnChange: p.changed,
		OnBoot: func(boot int, m *machine.Machine) {
			if e := m.Entry(); e != nil {
				p.logf("boot %d: %s", boot+1, e)
			} else {
				p.logf("boot %d: restored from snapshot %s", boot+1, restore.Name)
			}
		},
		Logf:    p.logf,
		Backoff: p.cfg.Backoff,
		UUID:    id.UUID,
		Restore: restore,
	})

	// The API answers from now on (status: starting).
	sock := p.vm.Path(store.SocketFile)
	os.Remove(sock) // a dead VMM's; we hold the run lock
	l, err := api.Listen(sock)
	if err != nil {
		return runResult{}, err
	}
	defer os.Remove(sock)
	srv := api.NewServer(vm.Name, &controller{p: p, sess: sess, hub: hub, input: input, vm: vm})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	closeAPI := func() {
		input.Close()
		hub.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(cctx); err != nil {
			p.logf("control API: close: %v", err)
		}
		if err := <-served; err != nil {
			p.logf("control API: %v", err)
		}
	}

	if err := sess.Boot(); err != nil {
		closeAPI()
		return runResult{}, err
	}
	if p.cfg.Signals {
		stopSignals := p.handleSignals(sess)
		defer stopSignals()
	}
	// Run's first change of phase (running) writes the record and sends
	// the readiness message (changed).
	res := sess.Run(ctx)

	// The guest is gone: end console clients, then the API.
	closeAPI()
	if err := hub.Err(); err != nil {
		p.logf("console log: %v", err)
	}
	return runResult{Result: res, history: hub.History()}, nil
}

// runResult is a session's end with the console history at that time.
type runResult struct {
	Result
	history []byte
}

// handleSignals makes SIGTERM and SIGINT stop the VM: the first shuts it
// down, the next kills it. SIGUSR1 writes the machine's state (vCPU
// exits, the UART, the virtio queues: Session.WriteDebug) to the VMM's
// log, for diagnosing a guest that seems stuck. It returns a function
// that stops handling.
func (p *vmmProc) handleSignals(sess *Session) func() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	signal.Ignore(syscall.SIGHUP) // no terminal; nobody should hang it up
	quit := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-quit:
				return
			case sig := <-ch:
				if sig == syscall.SIGUSR1 {
					p.writeDebug(sess)
					continue
				}
				n++
				if n == 1 {
					p.logf("%v: shutting the VM down", sig)
					go sess.Shutdown(api.DefaultShutdownTimeout)
				} else {
					p.logf("%v: killing the VM", sig)
					go sess.Kill()
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(quit)
	}
}

// writeDebug writes the machine's state to the VMM's log in one write,
// between two marker lines.
func (p *vmmProc) writeDebug(sess *Session) {
	if p.cfg.Log == nil {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s vmm[%d]: SIGUSR1: the machine's state follows\n", time.Now().Format(time.RFC3339Nano), p.pid())
	if !sess.WriteDebug(&b) {
		b.WriteString("no machine is running\n")
	}
	b.WriteString("(end of the machine's state)\n")
	p.cfg.Log.Write(b.Bytes())
}

// changed records a session change in state.json and, on the first
// running phase, reports readiness.
func (p *vmmProc) changed(s Snapshot) {
	p.recMu.Lock()
	rec := p.rec
	rec.Phase, rec.Boots, rec.Restarts, rec.BootedAt = s.Phase, s.Boots, s.Restarts, s.BootedAt
	if s.Phase == store.PhaseExited {
		// finish writes the final record, with the exit.
		rec.Phase = store.PhaseStopping
	}
	p.recMu.Unlock()
	if err := p.write(rec); err != nil {
		p.logf("%v", err)
	}
	if s.Phase == store.PhaseRunning {
		p.readyOnce.Do(func() {
			p.logf("the guest runs")
			p.sendReady(Ready{OK: true, PID: p.pid()})
		})
	}
}

// write replaces state.json and remembers what it says.
func (p *vmmProc) write(rec store.Record) error {
	p.recMu.Lock()
	defer p.recMu.Unlock()
	if err := p.vm.WriteRecord(rec); err != nil {
		return err
	}
	p.rec = rec
	return nil
}

// finish records how the VM ended.
func (p *vmmProc) finish(res runResult) error {
	p.recMu.Lock()
	rec := p.rec
	p.recMu.Unlock()
	end := &store.Exit{Reason: res.Reason, How: res.How, Detail: res.Detail, At: time.Now()}
	if res.Reason.Failed() {
		end.ConsoleTail = console.TailLines(res.history, TailLines)
	}
	rec.Phase, rec.Exit = store.PhaseExited, end
	rec.Boots, rec.Restarts = res.Boots, res.Restarts
	p.logf("VM %s ended: %s", p.vm.Name, DescribeExit(end))
	if err := p.write(rec); err != nil {
		return err
	}
	return nil
}

// DescribeExit says in a few words how a run ended.
func DescribeExit(e *store.Exit) string {
	var s string
	switch e.Reason {
	case exit.PowerOff:
		s = "the guest powered off"
	case exit.Reboot:
		s = "the guest rebooted (on_reboot: exit)"
	case exit.Crash:
		s = "the guest crashed"
	case exit.Stop:
		switch e.How {
		case api.StopACPI:
			s = "stopped: the guest shut down after the ACPI power button"
		case api.StopForced:
			s = "stopped: forced off after the guest ignored the ACPI power button"
		case api.StopCancelled:
			s = "stopped while waiting to restart"
		default:
			s = "stopped"
		}
	case exit.Kill:
		s = "killed"
	case exit.VMMDied:
		s = "the VMM process died"
	default:
		s = string(e.Reason)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// newRunID returns a random id for one VMM run.
func newRunID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on Linux; fall back to the clock.
		return fmt.Sprintf("%x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b)
}

// controller is the API's view of the VMM.
type controller struct {
	p     *vmmProc
	sess  *Session
	hub   *console.Hub
	input *console.Input
	vm    *configs.VM
}

var _ api.Controller = (*controller)(nil)

func (c *controller) Status() api.Status {
	s := c.sess.Snapshot()
	c.p.recMu.Lock()
	started := c.p.rec.StartedAt
	c.p.recMu.Unlock()
	state := string(s.Phase)
	if s.Phase == store.PhaseExited {
		state = string(store.StateStopping)
	}
	return api.Status{
		Name: c.vm.Name, State: state, PID: c.p.pid(), RunID: c.p.runID,
		StartedAt: started, BootedAt: s.BootedAt, Boots: s.Boots, Restarts: s.Restarts,
		CPUs: c.vm.CPUs, Memory: uint64(c.vm.Memory), Protocol: s.Protocol,
		ConsoleClients: c.hub.Subscribers(),
	}
}

func (c *controller) Pause() (api.Status, error) {
	if err := c.sess.Pause(); err != nil {
		return api.Status{}, err
	}
	return c.Status(), nil
}

func (c *controller) Resume() (api.Status, error) {
	if err := c.sess.Resume(); err != nil {
		return api.Status{}, err
	}
	return c.Status(), nil
}

func (c *controller) Shutdown(timeout time.Duration) (api.StopResult, error) {
	return c.sess.Shutdown(timeout)
}

func (c *controller) Kill() (api.StopResult, error) { return c.sess.Kill() }

func (c *controller) Output(history bool, tail int) *console.Subscriber {
	return c.hub.Subscribe(history, tail)
}

func (c *controller) History() []byte { return c.hub.History() }

func (c *controller) Input() io.Writer { return c.input }

func (c *controller) Snapshot(req api.SnapshotRequest) (api.SnapshotResult, error) {
	return c.p.snapshot(c.sess, req)
}

func (c *controller) DeleteSnapshot(name string) error {
	return c.sess.withMachine("delete a snapshot of", func(m *machine.Machine) error {
		return m.DeleteDiskSnapshot(name)
	})
}

// IsStartError reports whether err is a failure before the guest ran.
func IsStartError(err error) bool {
	var se *StartError
	return errors.As(err, &se)
}
