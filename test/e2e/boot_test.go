// Package e2e holds paddock's end-to-end tests: the real binary, real
// guests. The tests that need a stock Linux guest run inside the nested
// KVM lab (test/lab), because the build hosts' own KVM cannot boot one.
package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/images/hello"
	"github.com/paddock-vm/paddock/test/lab"
)

// bootTimeout bounds one L2 boot-and-power-off in L1 (software-emulated
// SVM under a loaded CI host: generous, but a hang still fails).
const bootTimeout = 4 * time.Minute

// interactiveYAML is a hello guest with a shell on its console (no
// built-in script), for the input and reboot tests.
func interactiveYAML(name, extra string) string {
	return fmt.Sprintf(`name: %s
cpus: 1
memory: 256MiB
kernel: %s
initrd: %s
cmdline: console=ttyS0 quiet
%s`, name, lab.GuestVmlinux, lab.GuestInitrd, extra)
}

// waitBanner is an L1 shell function: it waits until the hello banner has
// appeared N times in FILE (the guest booted N times) or the VMM exited.
const waitBanner = `
wait_banner() {
	while [ "$(grep -c 'paddock hello guest' "$2")" -lt "$1" ]; do
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.2
	done
}
`

// TestBootStockKernel boots the stock Debian kernel under paddock in the
// nested lab, in one L1 boot: from the bzImage and from the ELF vmlinux
// (PVH), with 1 and 2 vCPUs and different memory sizes and command lines,
// checked from inside the guest; console input; poweroff; and reboot with
// on_reboot exit and restart.
func TestBootStockKernel(t *testing.T) {
	l := lab.New(t)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}

	bz := lab.HelloL2(false, "facts")
	bz.Name, bz.CPUs, bz.MemoryMiB, bz.Cmdline = "bz", 1, 512, bz.Cmdline+" paddock.e2e=bz-one"
	pvh := lab.HelloL2(true, "facts")
	pvh.Name, pvh.CPUs, pvh.MemoryMiB, pvh.Cmdline = "pvh", 2, 384, pvh.Cmdline+" paddock.e2e=pvh-two"
	sc, err := lab.BootScenario([]lab.VMM{lab.Paddock{}}, []lab.L2{bz, pvh}, bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	sc.Files["/e2e/input.yaml"] = lab.File{Data: []byte(interactiveYAML("input", ""))}
	sc.Files["/e2e/reboot.yaml"] = lab.File{Data: []byte(interactiveYAML("reboot", "on_reboot: exit\n"))}
	sc.Files["/e2e/restart.yaml"] = lab.File{Data: []byte(interactiveYAML("restart", "on_reboot: restart\n"))}
	sc.Steps = append(sc.Steps,
		// Typed input is evaluated by the guest's shell: the marker
		// carries the result of arithmetic only the guest did (and the
		// terminal's echo of the typed line is not itself a marker).
		lab.Step{Name: "input", Timeout: bootTimeout, Script: `
printf 'm=LAB; echo "@@$m e2e.input $((6*7))"\npoweroff -f\n' | paddock run -f /e2e/input.yaml
echo "@@LAB e2e.input-rc $?"
`},
		lab.Step{Name: "reboot-exit", Timeout: bootTimeout, Script: `
printf 'reboot -f\n' | paddock run -f /e2e/reboot.yaml
echo "@@LAB e2e.reboot-rc $?"
`},
		// A boot that triple-faults (the emulated AMD-V, docs/lab.md) is
		// one more reboot, which on_reboot: restart takes too: paddock
		// says so on its standard error. Such a run is made once more,
		// and the last run counts.
		lab.Step{Name: "reboot-restart", Timeout: 4 * bootTimeout, Script: waitBanner + `
for run in 1 2; do
	rm -f /tmp/in
	mkfifo /tmp/in
	paddock run -f /e2e/restart.yaml < /tmp/in > /tmp/restart.log 2>&1 &
	pid=$!
	exec 3> /tmp/in
	wait_banner 1 /tmp/restart.log $pid && echo 'reboot -f' >&3
	wait_banner 2 /tmp/restart.log $pid && echo 'poweroff -f' >&3
	wait $pid
	rc=$?
	exec 3>&-
	grep 'paddock: ' /tmp/restart.log
	grep -q 'triple-faulted' /tmp/restart.log || break
	echo "@@LAB e2e.restart-again $run"
done
echo "@@LAB e2e.restart-rc $rc $(grep -c 'paddock hello guest' /tmp/restart.log)"
`},
	)
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}

	for _, g := range []struct {
		l2    lab.L2
		token string
	}{{bz, "paddock.e2e=bz-one"}, {pvh, "paddock.e2e=pvh-two"}} {
		t.Run(g.l2.Name, func(t *testing.T) {
			st := step(t, res, "paddock/"+g.l2.Name)
			if st.RC != 0 {
				t.Errorf("paddock exited %d after the guest's poweroff, want 0", st.RC)
			}
			if v := value(t, st, "l2.cmdline"); !strings.Contains(v, g.token) || !strings.Contains(v, hello.ScriptOption+"=facts") {
				t.Errorf("guest /proc/cmdline %q lacks %q", v, g.token)
			}
			if v := value(t, st, "l2.nproc"); v != strconv.Itoa(g.l2.CPUs) {
				t.Errorf("guest sees %s online CPUs, want %d", v, g.l2.CPUs)
			}
			kib, err := strconv.Atoi(value(t, st, "l2.memtotal-kib"))
			total := g.l2.MemoryMiB << 10
			// MemTotal is RAM minus what the kernel reserves for itself
			// (its image, page tables...): within 25% below the size.
			if err != nil || kib > total || kib < total*3/4 {
				t.Errorf("guest MemTotal %d KiB (%v), want 75-100%% of %d KiB", kib, err, total)
			}
			if v := value(t, st, "l2.release"); v != im.Guest.Kernel.Release {
				t.Errorf("guest runs %q, want the stock kernel %q", v, im.Guest.Kernel.Release)
			}
			if d, err := st.Between("vmm.exec", "l2.init"); err == nil {
				t.Logf("paddock booted the %s to /init in %.2fs (L1 wall time)", g.l2.Name, d.Seconds())
			}
		})
	}
	t.Run("input", func(t *testing.T) {
		st := step(t, res, "input")
		if v := value(t, st, "e2e.input"); v != "42" {
			t.Errorf("guest shell printed %q, want 42", v)
		}
		if v := value(t, st, "e2e.input-rc"); v != "0" {
			t.Errorf("paddock exit status %s after poweroff -f, want 0", v)
		}
	})
	t.Run("reboot-exit", func(t *testing.T) {
		st := step(t, res, "reboot-exit")
		if v := value(t, st, "e2e.reboot-rc"); v != "3" {
			t.Errorf("paddock exit status %s after reboot -f with on_reboot: exit, want 3", v)
		}
	})
	t.Run("reboot-restart", func(t *testing.T) {
		st := step(t, res, "reboot-restart")
		if n := lastMarker(st, "e2e.restart-again"); n != "" {
			t.Logf("a boot of the restart VM triple-faulted (the emulated AMD-V: docs/lab.md); the VM ran again")
		}
		if v := value(t, st, "e2e.restart-rc"); v != "0 2" {
			t.Errorf("restart: exit status and boots %q, want \"0 2\" (rebooted once, then powered off)", v)
		}
	})
}

// step returns the named step's result; it must have finished.
func step(t *testing.T, res *lab.Result, name string) *lab.StepResult {
	t.Helper()
	st, ok := res.Step(name)
	if !ok || !st.Done {
		t.Fatalf("step %s did not finish; transcript tail:\n%s", name, res.Tail(40))
	}
	return st
}

// value returns a marker's value in a step, failing when it is missing.
func value(t *testing.T, st *lab.StepResult, key string) string {
	t.Helper()
	m, ok := st.Marker(key)
	if !ok {
		t.Fatalf("step %s: no %s marker", st.Name, key)
	}
	return m.Value
}
