package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// managedTimeout bounds each wait of the managed-VM tests: tiny guests
// take milliseconds, but CPL0 code is emulated on the test hosts.
const managedTimeout = 2 * time.Minute

// managedEnv is a paddock binary built from this tree and an empty state
// directory, for tests of the managed-VM commands through the binary.
type managedEnv struct {
	t    testing.TB
	bin  string
	home string
	dir  string // YAML files and guests
}

// newManagedEnv builds ./cmd/paddock and makes a state directory, for
// tests of VMs on this host's /dev/kvm.
func newManagedEnv(t testing.TB) *managedEnv {
	t.Helper()
	testguest.RequireKVM(t)
	return newEnv(t)
}

// newEnv builds ./cmd/paddock and makes a state directory.
func newEnv(t testing.TB) *managedEnv {
	t.Helper()
	root, err := testguest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &managedEnv{t: t, bin: filepath.Join(dir, "paddock"), home: filepath.Join(dir, "home"), dir: dir}
	build := exec.Command("go", "build", "-o", e.bin, "./cmd/paddock")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/paddock: %v\n%s", err, out)
	}
	t.Cleanup(e.cleanup)
	return e
}

// cleanup kills whatever VMMs a failed test left running.
func (e *managedEnv) cleanup() {
	out, _, _ := e.paddock("ls", "-q")
	for _, name := range strings.Fields(out) {
		e.paddock("rm", "--force", name)
	}
}

// guestVM writes NAME.yaml for the tiny guest called guest, with extra
// YAML lines, and returns its path.
func (e *managedEnv) guestVM(name, guest, extra string) string {
	e.t.Helper()
	kernel := filepath.Join(e.dir, guest+".elf")
	if _, err := os.Stat(kernel); err != nil {
		if _, err := testguest.BuildIn(e.dir, guest, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	p := filepath.Join(e.dir, name+".yaml")
	y := fmt.Sprintf("name: %s\nmemory: 64MiB\nkernel: %s\nconsole: log\n%s", name, kernel, extra)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// command returns an exec.Cmd of paddock with the environment's home.
func (e *managedEnv) command(args ...string) *exec.Cmd {
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(), store.EnvHome+"="+e.home)
	cmd.Dir = e.dir
	return cmd
}

// paddock runs paddock and returns its stdout, stderr and exit status.
func (e *managedEnv) paddock(args ...string) (stdout, stderr string, status int) {
	cmd := e.command(args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("paddock %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), status
}

// ok runs paddock, fails the test unless it exits 0, and returns stdout.
func (e *managedEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, status := e.paddock(args...)
	if status != 0 {
		e.t.Fatalf("paddock %s: status %d\nstdout %s\nstderr %s", strings.Join(args, " "), status, out, errOut)
	}
	return out
}

// fails runs paddock and checks its exit status and standard error.
func (e *managedEnv) fails(status int, stderr string, args ...string) {
	e.t.Helper()
	out, errOut, st := e.paddock(args...)
	if st != status || errOut != stderr {
		e.t.Errorf("paddock %s:\nstatus %d, stderr %q (stdout %q)\nwant status %d, stderr %q", strings.Join(args, " "), st, errOut, out, status, stderr)
	}
}

// lsEntry is one VM of `paddock ls --json`.
type lsEntry struct {
	Name     string            `json:"name"`
	State    string            `json:"state"`
	CPUs     int               `json:"cpus"`
	Memory   uint64            `json:"memory"`
	Backend  string            `json:"backend"`
	PID      int               `json:"pid"`
	Uptime   float64           `json:"uptime_seconds"`
	Labels   map[string]string `json:"labels"`
	LastExit *store.Exit       `json:"last_exit"`
}

// ls returns `paddock ls --json` by name.
func (e *managedEnv) ls() map[string]lsEntry {
	e.t.Helper()
	var list []lsEntry
	out := e.ok("ls", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("ls --json: %v\n%s", err, out)
	}
	m := map[string]lsEntry{}
	for _, v := range list {
		m[v.Name] = v
	}
	return m
}

// pauseResume pauses and resumes the running VM name, with their
// refusals, as the same commands do on every backend.
func (e *managedEnv) pauseResume(name string) {
	e.t.Helper()
	if out := e.ok("pause", name); out != name+": paused\n" {
		e.t.Errorf("pause: %q", out)
	}
	if st := e.state(name); st != "paused" {
		e.t.Errorf("state after pause: %s", st)
	}
	e.fails(4, "paddock: cannot pause VM '"+name+"': it is paused\n", "pause", name)
	if out := e.ok("resume", name); out != name+": resumed\n" {
		e.t.Errorf("resume: %q", out)
	}
	e.fails(4, "paddock: cannot resume VM '"+name+"': it is running, not paused\n", "resume", name)
}

// state returns the VM's state as ls reports it.
func (e *managedEnv) state(name string) string {
	e.t.Helper()
	return e.ls()[name].State
}

// waitConsole follows the VM's console (paddock logs -f) until it has
// shown text.
func (e *managedEnv) waitConsole(name, text string) {
	e.t.Helper()
	e.waitConsoleFor(name, text, managedTimeout)
}

// waitConsoleFor is waitConsole with a timeout.
func (e *managedEnv) waitConsoleFor(name, text string, timeout time.Duration) {
	e.t.Helper()
	cmd := e.command("logs", "-f", name)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	found := make(chan bool, 1)
	go func() {
		var got []byte
		br := bufio.NewReader(out)
		for {
			b, err := br.ReadByte()
			if err != nil {
				found <- false
				return
			}
			got = append(got, b)
			if bytes.Contains(got, []byte(text)) {
				found <- true
				return
			}
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			cmd.Wait()
			e.t.Fatalf("the console of %s ended before %q (%s)", name, text, strings.TrimSpace(stderr.String()))
		}
	case <-time.After(timeout):
		e.t.Fatalf("the console of %s did not show %q", name, text)
	}
}

// vm returns the VM's directory in the store.
func (e *managedEnv) vm(name string) *store.VM {
	return &store.VM{Name: name, Dir: filepath.Join(e.home, "vms", name)}
}

// waitVMMGone waits until the VM's VMM has exited (its run lock is free).
func (e *managedEnv) waitVMMGone(name string) {
	e.t.Helper()
	if err := e.vm(name).WaitRunUnlocked(managedTimeout); err != nil {
		e.t.Fatal(err)
	}
}

// openPTY returns a new pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's slave: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// readUntil reads r until its output contains text.
func readUntil(t *testing.T, r *os.File, text string) string {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(managedTimeout))
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte(text)) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q, then %v; waiting for %q", got, err, text)
		}
	}
	return string(got)
}
