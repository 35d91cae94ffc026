package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// native is the Backend of paddock's own VMM: each VM runs in a detached
// `paddock vmm` process (spawn) that holds the VM's run lock, records its
// run in state.json and serves the control API on ctl.sock. A VM's state
// is derived from those facts (store.Derive).
type native struct {
	store *store.Store
	opts  *Options // the Manager's
}

// Kind implements Backend.
func (n *native) Kind() configs.Backend { return configs.BackendNative }

// Create implements Backend: the store holds all a native VM needs (its
// disk formats were pinned when it entered the store).
func (n *native) Create(context.Context, *store.VM, *configs.VM) error { return nil }

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

// reapLocked records the end of a VMM that died without recording it:
// why it probably died, the last console lines and the VMM's last
// messages (a VMM its seccomp filter ended says so there, which then is
// the detail: jail.KilledBySeccomp); and removes its socket. reason is exit.VMMDied, or exit.Kill
// after a SIGKILL. Precondition: the VM's lock is held and no VMM holds
// its run lock.
func reapLocked(v *store.VM, rec store.Record, reason exit.Reason, detail string) error {
	end := &store.Exit{Reason: reason, Detail: detail, At: time.Now()}
	tail, _ := console.TailFile(v.Path(store.ConsoleFile), 20)
	end.ConsoleTail = clipLines(tail)
	// The VMM writes its log through a descriptor (a jailed one too, which
	// could make it sparse and huge): its tail is enough.
	if b, err := console.ReadTail(v.Path(store.VMMLogFile), maxVMMLogRead); err == nil {
		end.VMMLogTail = clipLines(console.TailLines(b, 20))
		if why, ok := jail.KilledBySeccomp(b); ok && reason == exit.VMMDied {
			end.Detail = why
		}
	}
	rec.Phase, rec.Exit = store.PhaseExited, end
	os.Remove(v.Path(store.SocketFile))
	return v.WriteRecord(rec)
}

// maxVMMLogRead caps what reapLocked reads of vmm.log.
const maxVMMLogRead = 16 << 20

// maxTailLine caps each line reapLocked records of a log: a VMM (a
// jailed one too) writes its logs, and one line of megabytes would make
// the record too large to read (store.ReadRecord).
const maxTailLine = 4096

// clipLines cuts each of lines to its last maxTailLine bytes.
func clipLines(lines []string) []string {
	for i, l := range lines {
		if len(l) > maxTailLine {
			lines[i] = strings.ToValidUTF8(l[len(l)-maxTailLine:], "")
		}
	}
	return lines
}

// vmmDied is the detail of an exit.VMMDied.
func vmmDied(rec store.Record) string {
	return fmt.Sprintf("the VMM (pid %d) ended without recording why: it was killed (SIGKILL, the OOM killer) or crashed; its last messages are in vmm_log_tail", rec.PID)
}

// reapStale records the end of a VMM that died (see reapLocked) if the
// facts rec and h say one did, and returns the record then.
// Precondition: the VM's lock is held.
func reapStale(v *store.VM, rec store.Record, h store.Holder) (store.Record, error) {
	if !store.Stale(rec, h) {
		return rec, nil
	}
	if err := reapLocked(v, rec, exit.VMMDied, vmmDied(rec)); err != nil {
		return rec, err
	}
	rec, err := v.ReadRecord()
	if !usable(err) {
		return rec, err
	}
	return rec, nil
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

// Start implements Backend: it boots the VM in a detached VMM process and
// returns once the guest runs (or the VMM failed: a *StartError, the VM
// keeping its state).
func (n *native) Start(ctx context.Context, v *store.VM) error {
	rec, h, err := facts(v)
	if !usable(err) {
		return err
	}
	if h.Alive {
		return &StateError{Name: v.Name, Op: "start", State: store.Derive(rec, h)}
	}
	if rec, err = reapStale(v, rec, h); err != nil {
		return err
	}
	vm, err := loadSpec(v)
	if err != nil {
		return err
	}
	// Validate against the host's memory; the vCPU limit is the VMM's to
	// check (machine.New), which saves probing KVM twice on the way.
	host, _ := configs.HostFacts()
	if err := vm.Validate(host); err != nil {
		return err
	}
	switch vm.Backend {
	case configs.BackendNative:
	case configs.BackendLibvirt:
		return fmt.Errorf("VM %s: its create was interrupted before it reached a libvirt host: remove it (paddock rm %s) and create it again", v.Name, v.Name)
	default:
		return fmt.Errorf("VM %s: backend %q: managed VMs run on the native backend", v.Name, vm.Backend)
	}
	if err := writeSeed(v, vm); err != nil {
		return err
	}
	return n.startFrom(ctx, v, vm, rec)
}

// client returns an API client for a VM whose VMM is alive, or a
// StateError.
func (n *native) client(v *store.VM, op string) (*api.Client, store.Holder, error) {
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

// Pause implements Backend.
func (n *native) Pause(ctx context.Context, v *store.VM) (api.Status, error) {
	return n.simpleCall(ctx, v, "pause", (*api.Client).Pause)
}

// Resume implements Backend.
func (n *native) Resume(ctx context.Context, v *store.VM) (api.Status, error) {
	return n.simpleCall(ctx, v, "resume", (*api.Client).Resume)
}

// Status implements Backend: it asks the VMM.
func (n *native) Status(ctx context.Context, v *store.VM) (api.Status, error) {
	return n.simpleCall(ctx, v, "query", (*api.Client).Status)
}

func (n *native) simpleCall(ctx context.Context, v *store.VM, op string, call func(*api.Client, context.Context) (api.Status, error)) (api.Status, error) {
	c, _, err := n.client(v, op)
	if err != nil {
		return api.Status{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := call(c, ctx)
	if err != nil {
		return api.Status{}, apiError(v.Name, op, err)
	}
	return st, nil
}

// Stop implements Backend; it returns once the VMM has exited.
func (n *native) Stop(ctx context.Context, v *store.VM, timeout time.Duration) (api.StopResult, error) {
	c, _, err := n.client(v, "stop")
	if err != nil {
		return api.StopResult{}, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, timeout+exitGrace)
	defer cancel()
	res, err := c.Shutdown(cctx, timeout)
	if err != nil {
		return api.StopResult{}, apiError(v.Name, "stop", err)
	}
	if err := v.WaitRunUnlocked(exitGrace); err != nil {
		return res, fmt.Errorf("VM %s stopped, but its VMM did not exit: %w", v.Name, err)
	}
	return res, nil
}

// Kill implements Backend. If the VMM does not answer, it is killed with
// SIGKILL. It returns once the VMM has exited.
func (n *native) Kill(ctx context.Context, v *store.VM) (api.StopResult, error) {
	start := time.Now()
	c, h, err := n.client(v, "kill")
	if err != nil {
		var se *StateError
		if !errors.As(err, &se) || se.State != store.StateStarting {
			return api.StopResult{}, err
		}
		// A VMM that is starting does not serve its API yet.
		return n.sigkill(v, h, start)
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
		return n.sigkill(v, h, start)
	}
	if err := v.WaitRunUnlocked(exitGrace); err != nil {
		return n.sigkill(v, h, start)
	}
	return res, nil
}

// sigkill kills the VMM h with SIGKILL and records the kill.
func (n *native) sigkill(v *store.VM, h store.Holder, start time.Time) (api.StopResult, error) {
	now, err := v.RunHolder()
	if err != nil {
		return api.StopResult{}, err
	}
	// Kill only the process that holds the run lock now: its pid cannot
	// have been reused while it holds the lock.
	if now.Alive && now.PID > 0 && (h.RunID == "" || now.RunID == h.RunID) {
		// A jailed VMM writes its run lock itself: a compromised one could
		// name any process there. Only a process of its jail's user is
		// its own.
		if id, jailed := v.JailID(); jailed && !runsAs(now.PID, id) {
			return api.StopResult{}, fmt.Errorf("VM %s: its run lock names pid %d, which is not a process of its jail's user %d: not killed; the VMM may be compromised: find its processes (user %d) and kill them by hand", v.Name, now.PID, id, id)
		}
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

// Remove implements Backend: a native VM has nothing outside the store,
// so this only makes sure no VMM runs it.
func (n *native) Remove(ctx context.Context, v *store.VM, force bool) error {
	rec, h, err := facts(v)
	var re *store.RecordError
	if err != nil && !errors.As(err, &re) {
		return err // only the run lock matters here
	}
	if h.Alive {
		if !force {
			return &StateError{Name: v.Name, Op: "remove", State: store.Derive(rec, h), Hint: "stop it first (paddock stop " + v.Name + "), or use --force"}
		}
		if _, err := n.Kill(ctx, v); err != nil {
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
	return nil
}

// Attach implements Backend: a connection to the VMM's console hub.
func (n *native) Attach(ctx context.Context, v *store.VM, tail int) (net.Conn, error) {
	c, _, err := n.client(v, "attach to")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conn, err := c.Attach(cctx, tail)
	if err != nil {
		return nil, apiError(v.Name, "attach to", err)
	}
	return conn, nil
}

// Logs implements Backend: console.log (with the rotated console.log.1)
// or, when following a VM whose VMM runs, the VMM's stream.
func (n *native) Logs(ctx context.Context, v *store.VM, o LogOptions) (io.ReadCloser, error) {
	if o.Follow {
		rc, err := n.follow(ctx, v, o.Tail)
		if rc != nil || err != nil {
			return rc, err
		}
		// No VMM runs (any more): the files have everything.
	}
	data, err := console.ReadLog(v.Path(store.ConsoleFile))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(console.TailBytes(data, o.Tail)))), nil
}

// followRetry is how often follow asks a starting VMM's control socket
// again: it comes up within milliseconds of the VMM's start.
const followRetry = 20 * time.Millisecond

// follow returns the console stream of v's VMM, or nil, nil when no VMM
// runs. A VMM that is still starting (its guest may already be printing,
// into the hub's history) is asked again until its control socket
// answers, it ends, or callTimeout passes: following a VM just started
// must not print the log file so far and stop.
func (n *native) follow(ctx context.Context, v *store.VM, tail int) (io.ReadCloser, error) {
	c := api.NewClient(v.Path(store.SocketFile), v.Name)
	deadline := time.Now().Add(callTimeout)
	for {
		rec, h, err := facts(v)
		if err != nil {
			return nil, err
		}
		if !h.Alive {
			return nil, nil
		}
		starting := store.Derive(rec, h) == store.StateStarting
		rc, err := c.Console(ctx, api.ConsoleOptions{Follow: true, Tail: tail})
		switch {
		case err == nil:
			return rc, nil
		case !errors.Is(err, api.ErrUnavailable):
			return nil, apiError(v.Name, "follow the console of", err)
		case !starting:
			return nil, nil // the VMM ended meanwhile
		case time.Now().After(deadline):
			return nil, apiError(v.Name, "follow the console of", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(followRetry):
		}
	}
}

// State implements Backend: the state derived from the VMM's record and
// run lock. A VMM that died is cleaned up on the way. A record or run
// lock that cannot be read shows as crashed.
func (n *native) State(v *store.VM, in *Info) error {
	rec, h, err := facts(v)
	if err != nil {
		in.State = store.StateCrashed
		return err
	}
	if store.Stale(rec, h) {
		reap(v)
		if rec, h, err = facts(v); err != nil {
			in.State = store.StateCrashed
			return err
		}
	}
	in.State = store.Derive(rec, h)
	in.CreatedAt, in.Source = rec.CreatedAt, rec.Source
	in.LastExit, in.StartError = rec.Exit, rec.StartError
	if in.State.Active() && rec.RunID == h.RunID {
		in.PID, in.StartedAt, in.BootedAt = rec.PID, rec.StartedAt, rec.BootedAt
		in.Boots, in.Restarts = rec.Boots, rec.Restarts
		if (in.State == store.StateRunning || in.State == store.StatePaused) && !rec.BootedAt.IsZero() {
			in.Uptime = time.Since(rec.BootedAt).Round(time.Second).Seconds()
		}
	}
	return nil
}

// runsAs reports whether the process pid runs with real, effective and
// saved user id uid (the Uid line of /proc/PID/status).
func runsAs(pid int, uid uint32) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		ids, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(ids)
		if len(f) < 3 {
			return false
		}
		want := strconv.FormatUint(uint64(uid), 10)
		return f[0] == want && f[1] == want && f[2] == want
	}
	return false
}
