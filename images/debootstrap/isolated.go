package debootstrap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// stepPrefix starts the lines build.sh prints as each step begins.
const stepPrefix = "@@step "

// tailLines is how many of the script's last output lines an error
// quotes.
const tailLines = 12

// runIsolated runs script with /bin/sh as the first process of a new PID
// namespace in a new, private mount namespace: the mounts it makes are
// never seen outside, and when it ends — by itself, killed because ctx
// is done, or because this process died (it gets SIGKILL then) — the
// kernel kills every process it started and drops its mounts with the
// namespace. No mount, loop device or process can outlive a build.
//
// Every line the script prints (stdout and stderr) goes to line, except
// "@@step NAME" lines, which go to step. A failure is an error quoting
// the step it failed in and its last lines of output.
func runIsolated(ctx context.Context, script string, env []string, step func(string), line func(string)) error {
	// The parent-death signal comes when the thread that started the
	// build ends, not the process, and the Go runtime ends a thread
	// whenever a goroutine locked to it returns (paddock discards
	// threads so: network namespaces). Keep this one until the build is
	// waited for.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script, "build.sh")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   syscall.CLONE_NEWPID,
		Unshareflags: syscall.CLONE_NEWNS, // Go makes / private in it, recursively
		Pdeathsig:    syscall.SIGKILL,
		Setpgid:      true, // a terminal's Ctrl-C reaches paddock only, which ends the build
	}
	// Killing the namespace's first process kills all of it; the output
	// pipe closes once the last of them is gone.
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		w.Close()
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("debootstrap: make a private PID and mount namespace for the build: %w (a template build needs root with CAP_SYS_ADMIN: a container may not allow it)", err)
		}
		return fmt.Errorf("debootstrap: start the build: %w", err)
	}
	w.Close()
	current := ""
	var tail []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		if name, ok := strings.CutPrefix(text, stepPrefix); ok {
			current = name
			if step != nil {
				step(name)
			}
			continue
		}
		if tail = append(tail, text); len(tail) > tailLines {
			tail = tail[1:]
		}
		if line != nil {
			line(text)
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("debootstrap: build stopped in step %s: %w", current, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("debootstrap: the build failed in step %s (%s): %w; its last lines:\n\t%s", current, stepTitle(current), err, strings.Join(tail, "\n\t"))
	}
	if current != "done" {
		return fmt.Errorf("debootstrap: the build ended in step %s without finishing", current)
	}
	return nil
}
