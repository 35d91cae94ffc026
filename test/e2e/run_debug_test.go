package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/internal/testguest"
)

// TestRunDebugDump sends SIGUSR1 to `paddock run` of a tiny guest with a
// virtio-rng and expects the devices' state on standard error; the VM
// keeps running until SIGTERM ends it with status 143.
func TestRunDebugDump(t *testing.T) {
	e := newManagedEnv(t)
	kernel, err := testguest.BuildIn(e.dir, "idle", nil)
	if err != nil {
		t.Fatal(err)
	}
	yaml := filepath.Join(e.dir, "debug.yaml")
	if err := os.WriteFile(yaml, []byte("name: debug\nmemory: 64MiB\nkernel: "+kernel+"\nrng: true\nconsole: stdio\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := e.command("run", "-f", yaml)
	stdoutR, stdoutW := pipe(t)
	stderrR, stderrW := pipe(t)
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdoutW.Close()
	stderrW.Close()
	defer cmd.Process.Kill()
	readUntil(t, stdoutR, "!") // the guest runs
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	dump := readUntil(t, stderrR, "queue 0:")
	for _, want := range []string{"machine: running", "virtio-rng: status 0x0"} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Errorf("paddock run after SIGTERM: %v, want status 143", err)
	}
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestRunTripleFault: a guest that triple-faults ends `paddock run` with
// the reboot status, and the message says it was a triple fault.
func TestRunTripleFault(t *testing.T) {
	e := newManagedEnv(t)
	kernel, err := testguest.BuildIn(e.dir, "reset", nil)
	if err != nil {
		t.Fatal(err)
	}
	yaml := filepath.Join(e.dir, "tf.yaml")
	if err := os.WriteFile(yaml, []byte("name: tf\nmemory: 64MiB\nkernel: "+kernel+"\nconsole: stdio\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, status := e.paddock("run", "-f", yaml)
	if status != 3 || !strings.Contains(stderr, "VM tf rebooted (on_reboot: exit): vCPU 0 triple-faulted (RIP=") {
		t.Errorf("status %d, stderr %q; want 3 and the triple fault with registers", status, stderr)
	}
}
