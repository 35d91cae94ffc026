// Package lab is paddock's nested KVM lab: it boots a QEMU-TCG virtual
// machine ("L1") with emulated AMD-V, in which Debian's kvm-amd provides a
// real SVM /dev/kvm, and runs scenario scripts there: paddock (and QEMU
// as the peer to compare with) booting a stock Debian kernel as "L2".
//
// This host's own /dev/kvm cannot boot a stock kernel (docs/hosts.md);
// the lab is how paddock is proven against real guests (docs/lab.md).
// Results leave L1 on its serial console as "@@LAB key value" marker
// lines, which Run parses into a Result with host timestamps.
//
// From tests, New(t) gives a Lab that ends the test when a tool is
// missing (a skip outside CI, a failure in CI) and saves the transcript
// of failed runs; one built L1 image is shared by all tests of a
// package, and one L1 boot can run several scenarios' steps
// (Scenario.Steps).
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// Options configure a Lab.
type Options struct {
	Image   ImageOptions
	Machine Machine
	// BootTimeout bounds L1's boot up to l1.ready (modules loaded);
	// default 3 minutes (TCG on a busy two-core machine).
	BootTimeout time.Duration
	// StepGrace is how long past a step's timeout the host waits for L1's
	// own watchdog before killing L1; default 30s.
	StepGrace time.Duration
	// Echo, if set, receives every transcript line as it arrives.
	Echo func(Line)
	// FreezeTimeout: once L1 is up it prints a heartbeat every 10 s (on
	// a serial port of its own); a console and heartbeat silent this long
	// mean L1 froze. Default 60s.
	FreezeTimeout time.Duration
	// Attempts is how many times Run boots L1 for a scenario whose L1
	// froze, or vanished in the middle without a word from its kernel,
	// or one of whose steps with RetryFaults faulted (and only then);
	// default 2. TCG's emulated AMD-V very rarely loses
	// an interrupt and leaves L1 halted for ever, or resets L1 on the
	// spot while L2 runs (the lab is software all the way down, docs/lab.md; no
	// L1 process can reset L1 silently). A kernel panic or oops in L1 is
	// not retried, except the one the emulator is known to cause
	// (emulatorPanics). Retries are reported in Result.Froze.
	Attempts int
}

// heartbeatPort is L1's second serial port, which Run connects to a pipe
// of its own for L1's heartbeat.
const heartbeatPort = "/dev/ttyS1"

// defaultFreezeTimeout is Options.FreezeTimeout's default: six missed
// heartbeats.
const defaultFreezeTimeout = 60 * time.Second

// DefaultBootTimeout is Options.BootTimeout's default.
const DefaultBootTimeout = 3 * time.Minute

// Lab boots L1 VMs. It is safe for concurrent use; each Run boots its own L1.
type Lab struct {
	opts   Options
	shared *sharedImage
	// tb, when set (New), receives failed runs' transcripts at cleanup.
	tb testing.TB
	// retriesExpected: the test makes L1 fail on purpose (the harness's
	// own tests), so its retries are not reported to make test's
	// summary as the emulator's.
	retriesExpected bool
	mu              sync.Mutex
	runs            []*Result
}

// sharedImage builds an Image once for every Lab that shares it.
type sharedImage struct {
	once  sync.Once
	image *Image
	err   error
}

// NewLab returns a Lab; the L1 image is built on first use.
func NewLab(opts Options) *Lab {
	if opts.BootTimeout == 0 {
		opts.BootTimeout = DefaultBootTimeout
	}
	if opts.StepGrace == 0 {
		opts.StepGrace = defaultGrace
	}
	if opts.FreezeTimeout == 0 {
		opts.FreezeTimeout = defaultFreezeTimeout
	}
	if opts.Attempts == 0 {
		opts.Attempts = 2
	}
	opts.Machine = opts.Machine.withDefaults()
	return &Lab{opts: opts, shared: &sharedImage{}}
}

// Image returns the L1 image, building it on the first call.
func (l *Lab) Image(ctx context.Context) (*Image, error) {
	l.shared.once.Do(func() { l.shared.image, l.shared.err = BuildImage(ctx, l.opts.Image) })
	return l.shared.image, l.shared.err
}

// Close removes the lab's temporary files. Labs from New share their image
// for the process's lifetime and need no Close.
func (l *Lab) Close() error {
	if l.tb == nil && l.shared.image != nil {
		return l.shared.image.Close()
	}
	return nil
}

// prepared is an L1 boot ready to start: its initramfs in a temporary
// directory.
type prepared struct {
	dir    string
	kernel string
	initrd string
	steps  []Step
}

// prepare builds the initramfs of one run.
func (l *Lab) prepare(ctx context.Context, sc *Scenario) (*prepared, error) {
	steps, err := sc.steps()
	if err != nil {
		return nil, err
	}
	im, err := l.Image(ctx)
	if err != nil {
		return nil, err
	}
	segs, err := im.segments(ctx, sc)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "paddock-lab-run-")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	p := &prepared{dir: dir, kernel: im.L1Vmlinux, initrd: filepath.Join(dir, "initrd.cpio"), steps: steps}
	if l.opts.Machine.BootBzImage {
		p.kernel = im.L1BzImage
	}
	var scen bytes.Buffer
	if err := initramfs.Write(ctx, &scen, scenarioSpec(sc, steps)); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := concat(p.initrd, segs, &scen); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// scenarioSpec is the per-run segment: L1's /lab/config, the step list
// and scripts, and the scenario's files.
func scenarioSpec(sc *Scenario, steps []Step) initramfs.Spec {
	quiet := 0
	if sc.Quiet {
		quiet = 1
	}
	spec := initramfs.Spec{Overlay: true, Files: []initramfs.File{
		{Path: "lab/config", Data: []byte(fmt.Sprintf("LAB_QUIET=%d\nLAB_HEARTBEAT=%s\n", quiet, sc.heartbeat))},
	}}
	var list strings.Builder
	for i, st := range steps {
		n := fmt.Sprintf("%03d", i+1)
		interactive := 0
		if st.Interactive {
			interactive = 1
		}
		secs := int((st.Timeout + time.Second - 1) / time.Second)
		fmt.Fprintf(&list, "%s %s %d %d\n", n, st.Name, secs, interactive)
		spec.Files = append(spec.Files, initramfs.File{Path: "lab/steps/" + n + ".sh", Mode: 0o755, Data: []byte(st.Script)})
	}
	spec.Files = append(spec.Files, initramfs.File{Path: "lab/steps.list", Data: []byte(list.String())})
	for _, p := range sortedKeys(sc.Files) {
		f := sc.Files[p]
		mode := f.Mode
		if mode == 0 && f.Link == "" {
			mode = 0o644
			if strings.HasSuffix(p, ".sh") {
				mode = 0o755
			}
		}
		spec.Files = append(spec.Files, initramfs.File{Path: p, Mode: mode, Data: f.Data, Source: f.Source, Target: f.Link})
	}
	return spec
}

// Run boots L1 with the scenario, streams and parses its console, and
// returns when L1 powers off, a timeout expires (QEMU is then killed) or
// ctx is done. The Result is returned even with an error, for its
// transcript; the error's message ends with the transcript's tail.
func (l *Lab) Run(ctx context.Context, sc Scenario) (*Result, error) {
	var froze []string
	for attempt := 1; ; attempt++ {
		res, err := l.run(ctx, sc)
		l.mu.Lock()
		l.runs = append(l.runs, res)
		l.mu.Unlock()
		attempts := l.opts.Attempts
		if sc.Attempts != 0 {
			attempts = sc.Attempts
		}
		if attempt < attempts && ctx.Err() == nil {
			why := ""
			switch {
			case emulatorFailure(err):
				why = err.Error()
			case err == nil || errors.Is(err, ErrTimeout):
				why = faulted(sc, res, err)
			}
			if why != "" {
				froze = append(froze, why)
				if l.tb != nil {
					l.tb.Logf("lab: L1 attempt %d failed in the emulator (docs/lab.md); booting it again. %s", attempt, why)
					// The summary of make test lists the tests whose L1
					// was booted again (internal/testreport), passed or
					// not: a fault of paddock's that comes and goes must
					// not pass unseen.
					if !l.retriesExpected {
						l.tb.Attr(testenv.RetryKey, firstLine(why))
					}
				}
				continue
			}
		}
		res.Froze = froze
		return res, err
	}
}

// emulatorFailure reports whether err says L1 froze, or ended before its
// steps were done with no kernel panic or oops in its transcript, or with
// one of emulatorPanics as the first.
func emulatorFailure(err error) bool {
	var re *RunError
	if errors.Is(err, ErrFrozen) {
		return true
	}
	if !errors.Is(err, ErrIncomplete) || !errors.As(err, &re) {
		return false
	}
	if re.Panic == "" {
		return true
	}
	for _, p := range emulatorPanics {
		if strings.Contains(re.Panic, p) {
			return true
		}
	}
	return false
}

// faulted says which steps of sc with RetryFaults had a guest
// triple-fault or timed out in res, or "" if none did. err is the run's
// error, nil or ErrTimeout: a step the host's deadline ended (L1's
// watchdog could not) timed out too.
func faulted(sc Scenario, res *Result, err error) string {
	var why []string
	for _, s := range sc.Steps {
		if !s.RetryFaults {
			continue
		}
		st, ok := res.Step(s.Name)
		if !ok {
			continue
		}
		if st.L2Shutdowns > 0 {
			why = append(why, fmt.Sprintf("step %s: %d triple fault(s) of a guest in L1", s.Name, st.L2Shutdowns))
		}
		switch {
		case st.TimedOut:
			why = append(why, fmt.Sprintf("step %s timed out", s.Name))
		case errors.Is(err, ErrTimeout) && st.Begin > 0 && !st.Done:
			why = append(why, fmt.Sprintf("step %s timed out, and the host ended L1", s.Name))
		}
	}
	return strings.Join(why, "; ")
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// emulatorPanics are the L1 kernel deaths that TCG's emulated AMD-V
// causes, which Run treats like a silent reset: the thread of an L2 vCPU
// overflowing its kernel stack in an exception loop at error_entry, seen
// with paddock's and QEMU's guests after L1's KVM stopped handing a vCPU
// back (docs/lab.md). No user process can do that to a sound kernel.
var emulatorPanics = []string{"BUG: TASK stack guard page was hit at"}

func (l *Lab) run(ctx context.Context, sc Scenario) (*Result, error) {
	if err := sc.machine(l.opts.Machine).check(); err != nil {
		return &Result{}, err
	}
	sc.heartbeat = heartbeatPort
	p, err := l.prepare(ctx, &sc)
	if err != nil {
		return &Result{}, err
	}
	defer os.RemoveAll(p.dir)
	cmd := sc.machine(l.opts.Machine).command(p.kernel, p.initrd, consolePipe)
	// L1's heartbeat comes on a second serial port, into a pipe: on the
	// console, where L2's output arrives a few bytes at a time, it would
	// land in the middle of L2's lines and cut their markers in two.
	hbRead, hbWrite, err := os.Pipe()
	if err != nil {
		return &Result{}, fmt.Errorf("lab: %w", err)
	}
	defer hbRead.Close()
	cmd.ExtraFiles = []*os.File{hbWrite} // descriptor 3
	cmd.Args = append(cmd.Args, "-serial", "file:/dev/fd/3")
	// QEMU logs a triple fault of L1, and L1's accesses that no device
	// takes, here: the one account of an L1 that ends with nothing on
	// its console.
	qemuLog := filepath.Join(p.dir, "qemu.log")
	cmd.Args = append(cmd.Args, "-d", "cpu_reset,guest_errors", "-D", qemuLog)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return &Result{}, fmt.Errorf("lab: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return &Result{}, fmt.Errorf("lab: %w", err)
	}
	m := newMonitor(p.steps, l.opts.BootTimeout, l.opts.Echo)
	m.grace = l.opts.StepGrace
	overall := sc.timeout(l.opts.BootTimeout, p.steps)

	start := time.Now()
	err = cmd.Start()
	hbWrite.Close() // QEMU has its own
	if err != nil {
		return m.res, fmt.Errorf("lab: start L1 QEMU: %w", err)
	}
	m.res.QEMUPid = cmd.Process.Pid
	since := func() time.Duration { return time.Since(start) }
	lines := make(chan Line, 256)
	var readers sync.WaitGroup
	readers.Add(3)
	go func() { defer readers.Done(); readLines(stdout, Console, since, lines) }()
	go func() { defer readers.Done(); readLines(stderr, QEMUStderr, since, lines) }()
	go func() { defer readers.Done(); readLines(hbRead, Heartbeat, since, lines) }()
	go func() { readers.Wait(); close(lines) }()

	timer := time.NewTimer(overall)
	defer timer.Stop()
	var lastLine time.Duration // when the console last spoke
	frozen := func(now time.Duration) bool {
		return m.ready && now-lastLine >= l.opts.FreezeTimeout
	}
	arm := func() {
		d := overall
		if m.deadline != 0 && m.deadline < d {
			d = m.deadline
		}
		if m.ready && lastLine+l.opts.FreezeTimeout < d {
			d = lastLine + l.opts.FreezeTimeout
		}
		timer.Reset(time.Until(start.Add(d)))
	}
	var runErr error
	killed := false
	kill := func(reason error) {
		if killed {
			return
		}
		killed = true
		runErr = reason
		m.note(since(), "%s: killing L1", strings.TrimPrefix(reason.Error(), "lab: "))
		if err := killGroup(cmd); err != nil {
			m.note(since(), "%v", err)
		}
	}
	done := ctx.Done()
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			m.line(line)
			if line.Source == Console || line.Source == Heartbeat {
				lastLine = line.At
			}
			if !killed {
				arm()
			}
		case <-timer.C:
			now := since()
			if frozen(now) {
				kill(fmt.Errorf("lab: %w: no console output (not even its heartbeat) for %.0fs", ErrFrozen, (now - lastLine).Seconds()))
			} else if why, expired := m.expired(now); expired {
				kill(fmt.Errorf("lab: %w after %.0fs waiting for %s", ErrTimeout, now.Seconds(), why))
			} else if now >= overall {
				kill(fmt.Errorf("lab: %w: the run took longer than %v", ErrTimeout, overall))
			} else {
				arm()
			}
		case <-done:
			done = nil
			kill(fmt.Errorf("lab: %w", context.Cause(ctx)))
		}
	}
	waitErr := cmd.Wait()
	elapsed := since()
	if waitErr != nil && !killed {
		m.note(elapsed, "QEMU: %v", waitErr)
	}
	if err := m.finish(elapsed, waitErr == nil); runErr == nil {
		runErr = err
	}
	if runErr != nil {
		noteQEMULog(m, elapsed, qemuLog)
	}
	if runErr != nil {
		return m.res, &RunError{Err: runErr, Panic: m.res.Panic(), Tail: m.res.Tail(40)}
	}
	return m.res, nil
}

// noteQEMULog adds to a failed run's transcript the last 30 lines of
// QEMU's log that are not register dumps (every boot starts with one
// per vCPU reset): a triple fault, accesses no device took.
func noteQEMULog(m *monitor, at time.Duration, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var kept []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "CPU Reset") || registerLine.MatchString(line) {
			continue
		}
		kept = append(kept, line)
	}
	for _, line := range kept[max(0, len(kept)-30):] {
		m.note(at, "QEMU log: %s", line)
	}
}

// registerLine matches the lines of QEMU's x86 register dumps ("RAX=",
// "R8 =", "CS =", "XMM00=", "FPR0=" ...).
var registerLine = regexp.MustCompile(`^[A-Z][A-Z0-9]{0,5} *=`)

// RunError is Run's error: what went wrong, the first kernel panic or oops
// in the transcript (a long backtrace can push it out of the tail), and the
// last lines of the transcript. Error includes all three.
type RunError struct {
	Err   error
	Panic string
	Tail  string
}

func (e *RunError) Error() string {
	msg := e.Err.Error()
	if e.Panic != "" {
		msg += "\n--- first kernel panic in the transcript ---\n" + e.Panic
	}
	return msg + "\n--- last lines of the L1 transcript ---\n" + e.Tail
}

func (e *RunError) Unwrap() error { return e.Err }

// AttachOptions connect L1's serial console to the user.
type AttachOptions struct {
	Stdin  io.Reader
	Stdout io.Writer
	// Terminal says Stdin is a terminal: QEMU then reads it itself (raw
	// mode, signal=off, so Ctrl-C and Ctrl-A reach the guest, not QEMU).
	Terminal bool
	// InputAfter, for a non-terminal Stdin, holds the input back until the
	// console has shown this text (e.g. "@@LAB l2.init": the nested
	// guest's /init is running and its console buffers what it gets).
	// Input sent earlier would meet L1's line discipline and an L2 serial
	// port nobody reads yet.
	InputAfter string
}

// Attach boots L1 with the scenario and connects its serial console to
// the user, for interactive use or scripts. Nothing is parsed. It returns
// when L1 powers off: nil, or a *StepExitError if the last step failed;
// or when QEMU fails or ctx is done.
func (l *Lab) Attach(ctx context.Context, sc Scenario, ao AttachOptions) error {
	if err := sc.machine(l.opts.Machine).check(); err != nil {
		return err
	}
	p, err := l.prepare(ctx, &sc)
	if err != nil {
		return err
	}
	defer os.RemoveAll(p.dir)
	mode := consolePipe
	if ao.Terminal {
		mode = consoleTerminal
	}
	cmd := sc.machine(l.opts.Machine).command(p.kernel, p.initrd, mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var gate *gatedInput
	if ao.Terminal {
		cmd.Stdin, cmd.Stdout = ao.Stdin, ao.Stdout
	} else {
		gate = &gatedInput{src: ao.Stdin, open: make(chan struct{})}
		in, err := cmd.StdinPipe()
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		gate.dst = in
		cmd.Stdout = &watchWriter{w: ao.Stdout, want: []byte(ao.InputAfter), seen: gate.release}
		if ao.InputAfter == "" {
			gate.release()
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start L1 QEMU: %w", err)
	}
	if gate != nil {
		go gate.copy()
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		killGroup(cmd)
		<-waited
		err = context.Cause(ctx)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// isa-debug-exit: L1 wrote the last step's status N, QEMU
			// exited with 2N+1. QEMU's own failures exit with 1.
			if c := ee.ExitCode(); c >= 3 && c%2 == 1 {
				return &StepExitError{Status: c >> 1}
			}
			return fmt.Errorf("lab: L1 QEMU: %w\n%s", err, strings.TrimSpace(stderr.String()))
		}
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// StepExitError is Attach's error when the scenario's last step exited
// with a non-zero status (reported exactly up to 127; above, as 127).
type StepExitError struct {
	Status int
}

func (e *StepExitError) Error() string {
	return fmt.Sprintf("lab: the last step exited with status %d", e.Status)
}

// gatedInput copies src to dst once released, then closes dst.
type gatedInput struct {
	src  io.Reader
	dst  io.WriteCloser
	once sync.Once
	open chan struct{}
}

func (g *gatedInput) release() { g.once.Do(func() { close(g.open) }) }

func (g *gatedInput) copy() {
	<-g.open
	if g.src != nil {
		io.Copy(g.dst, g.src)
	}
	g.dst.Close()
}

// watchWriter passes writes through and calls seen once the stream has
// contained want (which may span writes).
type watchWriter struct {
	w    io.Writer
	want []byte
	seen func()
	tail []byte
	done bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	if !w.done && len(w.want) > 0 {
		buf := append(w.tail, p...)
		if bytes.Contains(buf, w.want) {
			w.done = true
			w.seen()
		} else if keep := len(w.want) - 1; len(buf) > keep {
			w.tail = append(w.tail[:0], buf[len(buf)-keep:]...)
		} else {
			w.tail = buf
		}
	}
	return w.w.Write(p)
}

func sortedKeys(m map[string]File) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
