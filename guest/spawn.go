package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"golang.org/x/sys/unix"
)

// ReadyFD is the descriptor number of the readiness pipe in a VMM
// process (its first extra file).
const ReadyFD = 3

// spawn starts the VM's VMM as a detached process (its own session,
// stdin /dev/null, stdout and stderr to vmm.log, the previous log kept as
// vmm.log.1) and waits for its readiness message. It opens what the VM
// needs first (vmm.OpenVMHandles: KVM, kernel, initrd, the disks with
// their locks, the seed volume, the taps, the managed networks) and hands
// it to the VMM as inherited descriptors, described by the table in
// vmm.FDTableEnv; once the VMM has them, this process closes its own
// copies, which leaves every lock, tap and connection with the VMM. prev
// is the VM's record before the start, restored if the VMM dies before it
// could; extra are more arguments for the VMM (--restore SNAP, or --warm,
// for which the warm template's files are handed over as well).
// Precondition: the VM's lock is held and no VMM runs it; vm is its spec.
func (n *native) spawn(ctx context.Context, v *store.VM, vm *configs.VM, prev store.Record, extra ...string) error {
	// A VMM killed a moment ago may hold the disks a little longer than
	// its run lock.
	if err := v.WaitLastHolderExited(exitGrace); err != nil {
		return n.failed(v, prev, err)
	}
	seed := ""
	if vm.CloudInit {
		seed = v.Path(store.SeedFile)
	}
	// A warm clone's first start restores its template's memory: the
	// template's state and memory files are handed over too (--warm),
	// so the jailed VMM needs nothing outside its VM's directory.
	jailed := jail.Enabled()
	h, err := vmm.OpenVMHandles(v, vm, vmm.VMHandleOptions{Home: n.store.Home(), Seed: seed, Warm: slices.Contains(extra, "--warm")})
	if err != nil {
		return n.failed(v, prev, err)
	}
	if jailed && vm.Console.Log != "" && filepath.Dir(vm.Console.Log) != v.Dir {
		// Out of the jailed VMM's reach: it gets the log's files.
		lim := console.Limits{Size: int64(vm.Console.LogSize), Keep: vm.Console.LogKeep}
		if h.ConsoleLog, err = console.OpenLogFiles(vm.Console.Log, lim, vmm.ConsoleLogPerm); err != nil {
			h.Close()
			return n.failed(v, prev, fmt.Errorf("console.log: %w", err))
		}
	}
	table, handed, err := h.Handover()
	if err != nil {
		return n.failed(v, prev, err)
	}
	// Whatever happens, this process lets go of its copies: the VMM holds
	// the handles, or nobody does.
	defer func() {
		for _, f := range handed {
			f.Close()
		}
	}()
	logPath := v.Path(store.VMMLogFile)
	if _, err := os.Stat(logPath); err == nil {
		if err := os.Rename(logPath, logPath+".1"); err != nil {
			return fmt.Errorf("VM %s: keep the previous VMM log: %w", v.Name, err)
		}
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("VM %s: VMM log: %w", v.Name, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("VM %s: %w", v.Name, err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("VM %s: readiness pipe: %w", v.Name, err)
	}
	defer r.Close()

	argv := append(append([]string(nil), n.opts.VMMCommand...),
		"--home", n.store.Home(), "--ready-fd", fmt.Sprint(ReadyFD))
	argv = append(append(argv, extra...), v.Name)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.Dir = v.Dir // not the caller's directory, which it would pin
	// fd 3 = ReadyFD, then the handles from vmm.FirstFD.
	cmd.ExtraFiles = append([]*os.File{w}, handed...)
	cmd.Env = append(vmmEnv(os.Environ()), vmm.FDTableEnv+"="+table.Encode())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := cmd.Start
	if jailed {
		spec, err := n.prepareJail(v, vm, len(cmd.ExtraFiles)+3)
		if err != nil {
			return n.failed(v, prev, err)
		}
		release, err := spec.Apply(cmd)
		if err != nil {
			return n.failed(v, prev, err)
		}
		defer release()
		start = func() error { return spec.Start(cmd) }
	}
	err = start()
	w.Close()
	for _, f := range handed {
		f.Close()
	}
	handed = nil
	if err != nil {
		return &StartError{Name: v.Name, Err: fmt.Errorf("run the VMM %s: %w", argv[0], err)}
	}

	msg, err := readReady(ctx, r, n.opts.StartTimeout)
	switch {
	case err == nil && msg.OK:
		// The VMM lives on, in its own session. Reap it should it exit
		// while this process still runs.
		go cmd.Wait()
		return nil
	case err == nil:
		cmd.Wait() // it exits right after reporting
		return &StartError{Name: v.Name, Err: errors.New(msg.Error)}
	}
	// No message: the VMM died, or hangs.
	if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
		cmd.Process.Kill()
	}
	werr := cmd.Wait()
	why := fmt.Errorf("the VMM exited before the guest ran (%v)", describeWait(werr))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		why = fmt.Errorf("the VMM did not get the guest running within %s; killed it", n.opts.StartTimeout)
	} else if ctx.Err() != nil {
		why = fmt.Errorf("cancelled; killed the VMM: %w", ctx.Err())
	}
	var tail []string
	if b, rerr := os.ReadFile(logPath); rerr == nil {
		tail = console.TailLines(b, 10)
		if seccomp, ok := jail.KilledBySeccomp(b); ok {
			why = fmt.Errorf("%s before the guest ran", seccomp)
		}
	}
	// Put the record back as it was, noting the failure.
	if err := v.WaitRunUnlocked(exitGrace); err == nil {
		prev.StartError = why.Error()
		if prev.Phase != store.PhaseCreated {
			prev.Phase = store.PhaseExited
		}
		os.Remove(v.Path(store.SocketFile))
		_ = v.WriteRecord(prev)
	}
	return &StartError{Name: v.Name, Err: why, Log: tail}
}

// vmmGODEBUG is what a VMM's GODEBUG gets. Every paddock process builds
// hash/crc32's CRC-32C tables as it starts (a package-level table of
// hypervisor/snapshot, and of klauspost/compress's snappy code, which
// its zstd decoder brings in): with SSE4.2, 1.5 MB of crc32
// instructions, 13 ms of each start of a process in the nested lab,
// where they are emulated; without, an 8 KiB table. A VMM computes CRC-32C
// only over a snapshot's state file, a few dozen KiB.
const vmmGODEBUG = "cpu.sse42=off"

// vmmEnv returns env, the environment of the command that starts a
// VMM, for the VMM: without a descriptor table of its own
// (vmm.FDTableEnv), with vmmGODEBUG added to GODEBUG's settings.
func vmmEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	debug := vmmGODEBUG
	for _, e := range env {
		switch {
		case strings.HasPrefix(e, vmm.FDTableEnv+"="):
		case strings.HasPrefix(e, "GODEBUG="):
			// Settings given later win: the command's own go last.
			if v := strings.TrimPrefix(e, "GODEBUG="); v != "" {
				debug += "," + v
			}
		default:
			out = append(out, e)
		}
	}
	return append(out, "GODEBUG="+debug)
}

// prepareJail readies the jail of the VM's VMM (guest/jail), which is
// handed keep descriptors. The VMM does not write its identity: it is
// written here first, root's.
func (n *native) prepareJail(v *store.VM, vm *configs.VM, keep int) (*jail.Spec, error) {
	if _, err := v.EnsureIdentity(); err != nil {
		return nil, err
	}
	lim := jail.Limits{CPUs: vm.CPUs, Memory: uint64(vm.Memory)}
	if onTmpfs(v.Dir) {
		// A snapshot's memory file, written by the VMM into its
		// directory, is shared memory there: charged to the VMM's cgroup
		// and not reclaimable as page cache is. Leave room for one.
		lim.Memory *= 2
	}
	return jail.Prepare(jail.Options{
		Home: n.store.Home(), VM: v, KeepFDs: keep,
		Limits: lim,
	})
}

// onTmpfs reports whether dir lies on a tmpfs.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// readReady reads the VMM's readiness message; an error means none came
// (EOF: the VMM died; os.ErrDeadlineExceeded: timeout).
func readReady(ctx context.Context, r *os.File, timeout time.Duration) (vmm.Ready, error) {
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := r.SetReadDeadline(deadline); err != nil {
		return vmm.Ready{}, err
	}
	stop := context.AfterFunc(ctx, func() { r.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		return vmm.Ready{}, err
	}
	var msg vmm.Ready
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &msg); err != nil {
		return vmm.Ready{}, fmt.Errorf("bad readiness message %q: %w", line, err)
	}
	return msg, nil
}

// describeWait says how a process ended.
func describeWait(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return err.Error()
}

// failed records that the VM could not start, before any VMM ran, as a
// VMM records its own start errors: the VM keeps its state (a VM that ran
// before shows as exited), with the error as its start_error.
func (n *native) failed(v *store.VM, prev store.Record, err error) error {
	prev.StartError = err.Error()
	if prev.Phase != store.PhaseCreated {
		prev.Phase = store.PhaseExited
	}
	if werr := v.WriteRecord(prev); werr != nil {
		err = errors.Join(err, werr)
	}
	return &StartError{Name: v.Name, Err: err}
}
