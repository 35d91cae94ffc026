package lab

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kvmScript reports what L1's KVM looks like.
const kvmScript = `
echo "@@LAB kvm.svm $(grep -c -w svm /proc/cpuinfo)"
echo "@@LAB kvm.dev $(stat -c '%F %t:%T' /dev/kvm)"
echo "@@LAB kvm.tun $(stat -c '%F' /dev/net/tun)"
echo "@@LAB kvm.vhost-net $(stat -c '%F' /dev/vhost-net)"
echo "@@LAB kvm.modules $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
`

// TestLab boots L1 once and runs several scenarios in it: kvm-amd and
// /dev/kvm; QEMU booting the stock Debian kernel as L2 from the bzImage and
// from the ELF vmlinux (PVH) with the hello guest's "facts" script; L1's
// heartbeat, on a port of its own; and L1's step watchdog.
func TestLab(t *testing.T) {
	l := New(t)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := BootScenario([]VMM{QEMU{}}, []L2{HelloL2(false, "facts"), HelloL2(true, "facts")}, 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sc := boot
	sc.Steps = append([]Step{{Name: "kvm", Script: kvmScript, Timeout: time.Minute}}, boot.Steps...)
	sc.Steps = append(sc.Steps,
		// One console line written over 12 s, longer than the heartbeat's
		// 10: the heartbeat, on its own port, does not cut it.
		Step{Name: "slowline", Script: "printf '@@LAB slow.line '\nfor i in $(seq 24); do printf x; usleep 500000; done\necho\n", Timeout: time.Minute},
		Step{Name: "watchdog", Script: "echo '@@LAB watchdog.started'\nsleep 1000\necho '@@LAB watchdog.survived'\n", Timeout: 3 * time.Second},
		Step{Name: "after", Script: "echo '@@LAB after.ran yes'\nexit 7\n", Timeout: time.Minute},
	)
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ExitOK {
		t.Errorf("L1 did not finish cleanly")
	}
	if m, ok := res.Marker("l1.init"); ok {
		t.Logf("L1 reached /init %.2fs after QEMU started (guest uptime %s)", m.At.Seconds(), m.Value)
	}

	t.Run("kvm-amd", func(t *testing.T) {
		if m, _ := res.Marker("l1.kvm"); m.Value != "ok" {
			t.Fatalf("l1.kvm = %q, want ok (insmod failures: %v)", m.Value, res.MarkersWithKey("l1.insmod-failed"))
		}
		st := step(t, res, "kvm", 0)
		if n, _ := strconv.Atoi(value(t, st, "kvm.svm")); n < 1 {
			t.Errorf("no svm flag in L1's /proc/cpuinfo")
		}
		if v := value(t, st, "kvm.dev"); v != "character special file a:e8" {
			t.Errorf("/dev/kvm: %q, want character device 10:232", v)
		}
		for _, dev := range []string{"kvm.tun", "kvm.vhost-net"} {
			if v := value(t, st, dev); v != "character special file" {
				t.Errorf("%s: %q", dev, v)
			}
		}
		mods := " " + value(t, st, "kvm.modules") + " "
		for _, m := range []string{"kvm_amd", "kvm", "ccp", "irqbypass", "tun", "bridge", "veth", "vhost_net"} {
			if !strings.Contains(mods, " "+m+" ") {
				t.Errorf("module %s not loaded; loaded: %s", m, mods)
			}
		}
	})

	for _, g := range []string{"bzimage", "pvh"} {
		t.Run("qemu-"+g, func(t *testing.T) {
			st := step(t, res, "qemu/"+g, 0)
			if v := value(t, st, "l2.cmdline"); !strings.Contains(v, "paddock.script=facts") {
				t.Errorf("L2 cmdline %q lacks paddock.script=facts", v)
			}
			if v := value(t, st, "l2.nproc"); v != "1" {
				t.Errorf("L2 nproc %q, want 1", v)
			}
			kib, err := strconv.Atoi(value(t, st, "l2.memtotal-kib"))
			if err != nil || kib < 400<<10 || kib > 512<<10 {
				t.Errorf("L2 MemTotal %d KiB (%v), want 400-512 MiB of the 512 MiB VM", kib, err)
			}
			if v := value(t, st, "l2.release"); v != im.Guest.Kernel.Release {
				t.Errorf("L2 runs %q, want the Debian kernel %q", v, im.Guest.Kernel.Release)
			}
			if v := value(t, st, "l2.script-end"); v != "facts 0" {
				t.Errorf("l2.script-end %q, want \"facts 0\"", v)
			}
			if up, err := marker(t, st, "l2.init").Float(); err != nil || up <= 0 {
				t.Errorf("l2.init uptime %v, %v", up, err)
			}
			if d, err := st.Between("vmm.exec", "l2.init"); err == nil {
				t.Logf("QEMU in L1 booted the %s to /init in %.2fs", g, d.Seconds())
			}
		})
	}

	t.Run("heartbeat", func(t *testing.T) {
		st := step(t, res, "slowline", 0)
		if v := value(t, st, "slow.line"); v != strings.Repeat("x", 24) {
			t.Errorf("a console line written over 12 s came as %q", v)
		}
		beats := 0
		for _, l := range res.Lines {
			if l.Source == Heartbeat && l.At > st.Begin && l.At < st.End && strings.HasPrefix(l.Text, "@@LAB l1.hb ") {
				beats++
			}
		}
		if beats == 0 {
			t.Errorf("no heartbeat on its port in the %v of step slowline", st.End-st.Begin)
		}
	})

	t.Run("watchdog", func(t *testing.T) {
		st := step(t, res, "watchdog", 137)
		if !st.TimedOut {
			t.Error("step not reported as timed out")
		}
		if _, ok := st.Marker("watchdog.started"); !ok {
			t.Error("the step never started")
		}
		if _, ok := st.Marker("watchdog.survived"); ok {
			t.Error("the step's sleep outlived its watchdog")
		}
		after := step(t, res, "after", 7)
		if value(t, after, "after.ran") != "yes" || after.TimedOut {
			t.Errorf("the step after the watchdog: %+v", after)
		}
	})
}

// TestHarnessFailures checks the host side of failures: a wedged step is
// killed by the host's deadline, and an L1 crash is reported as incomplete.
// Each case boots its own L1.
func TestHarnessFailures(t *testing.T) {
	t.Run("host-step-timeout", func(t *testing.T) {
		l := New(t)
		l.opts.StepGrace = 2 * time.Second
		// Stop L1's watchdog (its sleep) so only the host can end the step.
		script := "until killall -STOP sleep 2>/dev/null; do usleep 20000; done\necho '@@LAB stall.stopped'\nexec sleep 100000\n"
		res, err := l.Run(context.Background(), Scenario{Steps: []Step{{Name: "stall", Script: script, Timeout: 15 * time.Second}}})
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "step stall") {
			t.Fatalf("error %v, want a timeout of step stall", err)
		}
		if _, ok := res.Marker("stall.stopped"); !ok {
			t.Error("the step did not stop L1's watchdog")
		}
		if st, _ := res.Step("stall"); st.Done || res.ExitOK {
			t.Errorf("step %+v, ExitOK %v after a host kill", st, res.ExitOK)
		}
		assertGone(t, res.QEMUPid)
		if !strings.Contains(res.Transcript(), "lab: timed out") {
			t.Error("the transcript does not say the harness killed L1")
		}
	})
	t.Run("l1-crash", func(t *testing.T) {
		l := New(t)
		res, err := l.Run(context.Background(), Scenario{Steps: []Step{
			{Name: "crash", Script: "echo c > /proc/sysrq-trigger\nsleep 60\n", Timeout: time.Minute},
			{Name: "never", Script: "true"},
		}})
		if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "in step crash") {
			t.Fatalf("error %v, want ErrIncomplete in step crash", err)
		}
		var re *RunError
		if !errors.As(err, &re) || !strings.Contains(re.Panic, "sysrq triggered crash") || !strings.Contains(err.Error(), re.Panic) {
			t.Errorf("the error does not show the panic:\n%v", err)
		}
		if st, _ := res.Step("never"); st.Done {
			t.Error("a step after the crash ran")
		}
		if len(res.Froze) != 0 {
			t.Errorf("a kernel panic was retried: %q", res.Froze)
		}
		assertGone(t, res.QEMUPid)
	})
	t.Run("l1-silent-reset", func(t *testing.T) {
		// An immediate reset (no panic, no shutdown) looks like TCG
		// resetting L1: Run boots L1 once more, then reports it.
		l := New(t)
		l.retriesExpected = true
		res, err := l.Run(context.Background(), Scenario{Steps: []Step{
			{Name: "reset", Script: "echo b > /proc/sysrq-trigger\nsleep 60\n", Timeout: time.Minute},
		}})
		if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "in step reset") {
			t.Fatalf("error %v, want ErrIncomplete in step reset", err)
		}
		if len(res.Froze) != 1 || !strings.Contains(res.Froze[0], "in step reset") {
			t.Errorf("earlier attempts %q, want one that reset in step reset", res.Froze)
		}
		assertGone(t, res.QEMUPid)
	})
	t.Run("scenario-attempts", func(t *testing.T) {
		// The scenario's Attempts overrides the lab's: with one, the
		// silent reset is reported at once.
		l := New(t)
		res, err := l.Run(context.Background(), Scenario{Attempts: 1, Steps: []Step{
			{Name: "reset", Script: "echo b > /proc/sysrq-trigger\nsleep 60\n", Timeout: time.Minute},
		}})
		if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "in step reset") {
			t.Fatalf("error %v, want ErrIncomplete in step reset", err)
		}
		if len(res.Froze) != 0 {
			t.Errorf("earlier attempts %q with Attempts 1, want none", res.Froze)
		}
	})
	t.Run("step-faults", func(t *testing.T) {
		// A step with RetryFaults that times out boots L1 again, once
		// (the lab's two attempts); the last attempt's result is
		// returned as it is, for the test to fail on.
		l := New(t)
		l.retriesExpected = true
		res, err := l.Run(context.Background(), Scenario{Steps: []Step{
			{Name: "hang", Script: "echo '@@LAB hang.started'\nsleep 60\n", Timeout: 3 * time.Second, RetryFaults: true},
			{Name: "after", Script: "echo '@@LAB after.ran yes'\n"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Froze) != 1 || res.Froze[0] != "step hang timed out" {
			t.Errorf("earlier attempts %q, want one whose step hang timed out", res.Froze)
		}
		if st, ok := res.Step("hang"); !ok || !st.TimedOut {
			t.Errorf("step hang of the last attempt: %+v, want timed out", st)
		}
		if v, ok := res.Marker("after.ran"); !ok || v.Value != "yes" {
			t.Errorf("the step after the hang did not run in the last attempt: %+v", v)
		}
		if n := strings.Count(res.Transcript(), "@@LAB hang.started"); n != 1 {
			t.Errorf("the last attempt's transcript shows step hang starting %d times, want 1", n)
		}
	})
	t.Run("context-cancel", func(t *testing.T) {
		l := New(t)
		ctx, cancel := context.WithCancelCause(context.Background())
		errStop := errors.New("test stops the run")
		l.opts.Echo = func(line Line) {
			if strings.Contains(line.Text, "@@LAB step.begin wait") {
				cancel(errStop)
			}
		}
		res, err := l.Run(ctx, Scenario{Steps: []Step{{Name: "wait", Script: "sleep 1000", Timeout: time.Hour}}})
		if !errors.Is(err, errStop) {
			t.Fatalf("error %v, want the cancel cause", err)
		}
		assertGone(t, res.QEMUPid)
	})
}

func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid == 0 {
		t.Fatal("no QEMU pid recorded")
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("QEMU (pid %d) still exists after Run returned: kill(0) = %v", pid, err)
	}
}

// step returns a finished step with the given exit status.
func step(t *testing.T, res *Result, name string, rc int) *StepResult {
	t.Helper()
	st, ok := res.Step(name)
	if !ok || !st.Done {
		t.Fatalf("step %s did not finish", name)
	}
	if st.RC != rc {
		t.Errorf("step %s exited %d, want %d", name, st.RC, rc)
	}
	return st
}

func marker(t *testing.T, st *StepResult, key string) Marker {
	t.Helper()
	m, ok := st.Marker(key)
	if !ok {
		t.Fatalf("step %s printed no %s marker", st.Name, key)
	}
	return m
}

func value(t *testing.T, st *StepResult, key string) string {
	t.Helper()
	return marker(t, st, key).Value
}

// TestAttachExitStatus attaches to L1 as `paddock-lab demo` does, with
// piped input: the input reaches the interactive step, and its exit
// status comes back as a StepExitError (nil for 0).
func TestAttachExitStatus(t *testing.T) {
	l := New(t)
	ctx := context.Background()
	for _, tc := range []struct {
		input string
		want  int
	}{{"exit 42\n", 42}, {"exit 0\n", 0}} {
		t.Run(strings.TrimSpace(tc.input), func(t *testing.T) {
			sc := Scenario{Quiet: true, Steps: []Step{{Name: "shell", Script: "echo ready; exec sh", Interactive: true}}}
			var out strings.Builder
			err := l.Attach(ctx, sc, AttachOptions{Stdin: strings.NewReader(tc.input), Stdout: &out, InputAfter: "ready"})
			var se *StepExitError
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("Attach = %v, want nil\n%s", err, out.String())
			case tc.want != 0 && !errors.As(err, &se):
				t.Fatalf("Attach = %v, want a StepExitError\n%s", err, out.String())
			case se != nil && se.Status != tc.want:
				t.Errorf("step status %d, want %d", se.Status, tc.want)
			}
		})
	}
}
