package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// testVM returns a validated spec of a tiny guest.
func testVM(t *testing.T, name, guest string) *configs.VM {
	t.Helper()
	testguest.RequireKVM(t)
	return parseVM(t, fmt.Sprintf("name: %s\nmemory: 64MiB\nkernel: %s\nconsole: log\n", name, testguest.Build(t, guest)), "")
}

// startCounter creates and starts the VM name of the counter guest.
func startCounter(t *testing.T, m *Manager, name string) *Info {
	t.Helper()
	if _, err := m.Create(testVM(t, name, "counter"), ""); err != nil {
		t.Fatal(err)
	}
	info, err := m.Start(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// parseVM parses, fills and validates the YAML of a VM (file names it).
func parseVM(t *testing.T, yaml, file string) *configs.VM {
	t.Helper()
	vm, err := configs.Parse([]byte(yaml), file)
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{}); err != nil {
		t.Fatal(err)
	}
	return vm
}

func TestManagerLifecycle(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	info, err := m.Create(testVM(t, "web", "counter"), "/some/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateCreated || info.CPUs != 1 || info.Memory != 64<<20 || info.Source != "/some/web.yaml" {
		t.Errorf("created: %+v", info)
	}
	_, err = m.Create(testVM(t, "web", "counter"), "")
	if err == nil || err.Error() != "a VM named 'web' exists already: remove it (paddock rm web) or pick another name (--name)" {
		t.Errorf("second Create: %v", err)
	}
	info, err = m.Start(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateRunning || info.PID == 0 || info.PID == os.Getpid() || info.Boots != 1 {
		t.Fatalf("started: %+v", info)
	}
	var se *StateError
	if _, err := m.Start(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot start VM 'web': it is running" {
		t.Errorf("second Start: %v", err)
	}
	var nf *NotFoundError
	if _, err := m.Pause(ctx, "wbe"); !errors.As(err, &nf) || err.Error() != "no VM named 'wbe'; did you mean 'web'?" {
		t.Errorf("Pause of a typo: %v", err)
	}
	if _, err := m.Pause(ctx, "zzzzzz"); !errors.As(err, &nf) || err.Error() != "no VM named 'zzzzzz' (paddock ls lists them)" {
		t.Errorf("Pause of an unknown VM: %v", err)
	}
	if st, err := m.Pause(ctx, "web"); err != nil || st.State != "paused" {
		t.Fatalf("Pause = %+v, %v", st, err)
	}
	if infos, err := m.List(); err != nil || len(infos) != 1 || infos[0].State != store.StatePaused {
		t.Errorf("List while paused: %v, %v", infos, err)
	}
	if _, err := m.Pause(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot pause VM 'web': it is paused" {
		t.Errorf("second Pause: %v", err)
	}
	if st, err := m.Resume(ctx, "web"); err != nil || st.State != "running" {
		t.Fatalf("Resume = %+v, %v", st, err)
	}

	// Follow the console while the VM runs; the stream ends when it stops.
	follow, err := m.Logs(ctx, "web", LogOptions{Follow: true, Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(follow)
		followed <- string(b)
	}()
	res, err := m.Stop(ctx, "web", 100*time.Millisecond)
	if err != nil || res.How != api.StopForced {
		t.Fatalf("Stop = %+v, %v; want forced (the counter ignores the button)", res, err)
	}
	if got := <-followed; got != "counting\n" {
		t.Errorf("followed console %q", got)
	}
	info, err = m.Inspect("web")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateStopped || info.PID != 0 || info.LastExit == nil || info.LastExit.How != api.StopForced ||
		info.Config == nil || info.Config.Name != "web" || info.Paths == nil {
		t.Errorf("inspect after stop: %+v", info)
	}
	logs, err := m.Logs(ctx, "web", LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(logs); string(b) != "counting\n" {
		t.Errorf("logs %q", b)
	}
	if _, err := m.Pause(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot pause VM 'web': it is stopped" {
		t.Errorf("Pause of a stopped VM: %v", err)
	}
	if _, err := m.Stop(ctx, "web", time.Second); !errors.As(err, &se) {
		t.Errorf("Stop of a stopped VM: %v", err)
	}
	if err := m.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Inspect("web"); !errors.As(err, &nf) {
		t.Errorf("Inspect after Remove: %v", err)
	}
}

// TestManagerVMMKilled kills a VMM with SIGKILL: the VM shows as crashed
// with the VMM's last words, is cleaned up, and starts again.
func TestManagerVMMKilled(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	info := startCounter(t, m, "web")
	waitLog(t, m, "web", "counting")
	waitLogFile(t, m, "web", "counting")
	if err := syscall.Kill(info.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v, _ := m.store.VM("web")
	if err := v.WaitRunUnlocked(time.Minute); err != nil {
		t.Fatal(err)
	}
	infos, err := m.List()
	if err != nil || len(infos) != 1 {
		t.Fatal(infos, err)
	}
	in := infos[0]
	if in.State != store.StateCrashed || in.LastExit == nil || in.LastExit.Reason != exit.VMMDied ||
		!strings.Contains(in.LastExit.Detail, fmt.Sprintf("the VMM (pid %d) ended without recording why", info.PID)) {
		t.Fatalf("after SIGKILL: %+v, exit %+v", in, in.LastExit)
	}
	if ct := in.LastExit.ConsoleTail; len(ct) == 0 || ct[len(ct)-1] != "counting" {
		t.Errorf("console tail %q", ct)
	}
	if vt := in.LastExit.VMMLogTail; len(vt) == 0 || !strings.Contains(strings.Join(vt, "\n"), "boot 1: PVH") {
		t.Errorf("VMM log tail %q", vt)
	}
	if _, err := os.Stat(v.Path(store.SocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead VMM's socket was not cleaned up: %v", err)
	}
	// Recorded once: a second look shows the same.
	if again, _ := m.Inspect("web"); again.LastExit == nil || !again.LastExit.At.Equal(in.LastExit.At) {
		t.Errorf("the death was recorded again: %+v", again.LastExit)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatalf("Start after the crash: %v", err)
	}
	var se *StateError
	if err := m.Remove(ctx, "web", false); !errors.As(err, &se) {
		t.Errorf("Remove of a running VM: %v", err)
	}
	if err := m.Remove(ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	if names, _ := m.Names(); len(names) != 0 {
		t.Errorf("names after Remove: %v", names)
	}
}

// waitLog follows the console until it shows text.
func waitLog(t *testing.T, m *Manager, name, text string) { waitLogTB(t, m, name, text) }

// waitLogTB is waitLog for tests and benchmarks.
func waitLogTB(t testing.TB, m *Manager, name, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := m.Logs(ctx, name, LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []byte
	buf := make([]byte, 64)
	for !strings.Contains(string(got), text) {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("console ended before %q: %q, %v", text, got, err)
		}
	}
}

func TestManagerStartFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("initrd outgrew the VM", func(t *testing.T) {
		// Validation passes (the initrd is a non-empty file); the VMM's
		// loader finds it larger than the guest's RAM.
		m := testManager(t)
		vm := testVM(t, "web", "counter")
		initrd := filepath.Join(t.TempDir(), "initrd.img")
		os.WriteFile(initrd, []byte("070701"), 0o644)
		vm.Initrd = initrd
		if _, err := m.Create(vm, ""); err != nil {
			t.Fatal(err)
		}
		os.Truncate(initrd, 2*int64(vm.Memory))
		_, err := m.Start(ctx, "web")
		var se *StartError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "start VM 'web': ") || !strings.Contains(err.Error(), "does not fit") {
			t.Fatalf("Start = %v", err)
		}
		info, _ := m.Inspect("web")
		if info.State != store.StateCreated || info.StartError == "" {
			t.Errorf("after the failed start: %s, start error %q", info.State, info.StartError)
		}
	})
	t.Run("VMM dies", func(t *testing.T) {
		m := testManager(t)
		m.opts.VMMCommand = []string{"/bin/sh", "-c", "echo 'the VMM fell over' >&2; exit 7", "sh"}
		if _, err := m.Create(testVM(t, "web", "counter"), ""); err != nil {
			t.Fatal(err)
		}
		_, err := m.Start(ctx, "web")
		if err == nil || !strings.Contains(err.Error(), "the VMM exited before the guest ran (exit status 7)") || !strings.Contains(err.Error(), "the VMM fell over") {
			t.Fatalf("Start = %v", err)
		}
		info, _ := m.Inspect("web")
		if info.State != store.StateCreated {
			t.Errorf("state after a dead VMM: %s", info.State)
		}
	})
	t.Run("spec invalid now", func(t *testing.T) {
		m := testManager(t)
		vm := testVM(t, "web", "counter")
		vm.Initrd = filepath.Join(t.TempDir(), "initrd")
		os.WriteFile(vm.Initrd, []byte("x"), 0o644)
		if _, err := m.Create(vm, ""); err != nil {
			t.Fatal(err)
		}
		os.Remove(vm.Initrd)
		_, err := m.Start(ctx, "web")
		if err == nil || !strings.Contains(err.Error(), "initrd: "+vm.Initrd+": no such file or directory") {
			t.Fatalf("Start = %v", err)
		}
	})
}

// TestManagerConcurrent runs commands on one VM at once: one wins, the
// others get a clear error.
func TestManagerConcurrent(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	if _, err := m.Create(testVM(t, "web", "counter"), ""); err != nil {
		t.Fatal(err)
	}
	const n = 4
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Start(ctx, "web")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		var be *BusyError
		var se *StateError
		switch {
		case err == nil:
			won++
		case errors.As(err, &be):
			if err.Error() != "VM 'web' is busy: another paddock command is changing it; try again when it is done" {
				t.Errorf("busy message: %v", err)
			}
		case errors.As(err, &se):
		default:
			t.Errorf("Start: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent starts won, want 1", won)
	}
	if infos, _ := m.List(); len(infos) != 1 || infos[0].State != store.StateRunning {
		t.Errorf("after the race: %+v", infos)
	}
}

// TestManagerKillUnanswering kills a VMM whose control socket is gone:
// the kill falls back to SIGKILL and records it.
func TestManagerKillUnanswering(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	if _, err := m.Create(testVM(t, "web", "counter"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	v, _ := m.store.VM("web")
	if err := os.Remove(v.Path(store.SocketFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Pause(ctx, "web"); err == nil || !strings.Contains(err.Error(), "does not answer on its control socket") {
		t.Errorf("Pause without a socket: %v", err)
	}
	res, err := m.Kill(ctx, "web")
	if err != nil || res.How != api.StopKilled {
		t.Fatalf("Kill = %+v, %v", res, err)
	}
	info, _ := m.Inspect("web")
	if info.State != store.StateStopped || info.LastExit == nil || info.LastExit.Reason != exit.Kill ||
		info.LastExit.Detail != "the VMM did not answer; killed with SIGKILL" {
		t.Errorf("after the SIGKILL: %s %+v", info.State, info.LastExit)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"web-1", "web-2", "database", "cache"}
	tests := []struct{ in, want string }{
		{"web-3", "web-1"},
		{"databse", "database"},
		{"data", "database"},
		{"cahce", "cache"},
		{"zz", ""},
		{"wbe-1", "web-1"},
		{"mail", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, names); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestManagerDamagedRecord checks that a damaged state.json neither hides
// the VM nor blocks starting or removing it.
func TestManagerDamagedRecord(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	if _, err := m.Create(testVM(t, "web", "counter"), ""); err != nil {
		t.Fatal(err)
	}
	v, _ := m.store.VM("web")
	os.WriteFile(v.Path(store.RecordFile), []byte("{garbage"), 0o600)
	infos, err := m.List()
	if err != nil || len(infos) != 1 || !strings.Contains(infos[0].Problem, "state.json") {
		t.Fatalf("List with a damaged record: %+v, %v", infos, err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatalf("Start with a damaged record: %v", err)
	}
	if info, _ := m.Inspect("web"); info.State != store.StateRunning || info.Problem != "" {
		t.Errorf("after the start: %+v", info)
	}
	os.WriteFile(v.Path(store.RecordFile), []byte(`{"version": 99}`), 0o600)
	if err := m.Remove(ctx, "web", true); err != nil {
		t.Fatalf("Remove --force with a newer record: %v", err)
	}
}

// TestManagerIdentity checks the VM's UUID: recorded at create, shown by
// inspect, kept across starts, and recorded at the next start of a VM
// created before paddock recorded identities.
func TestManagerIdentity(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	info, err := m.Create(testVM(t, "web", "counter"), "")
	if err != nil {
		t.Fatal(err)
	}
	created, err := uuid.Parse(info.UUID)
	if err != nil || created.Version() != 4 {
		t.Fatalf("created with UUID %q (%v); want a random UUID", info.UUID, err)
	}
	if in, err := m.Inspect("web"); err != nil || in.UUID != info.UUID || in.Paths.Identity == "" {
		t.Fatalf("Inspect = %+v, %v; want UUID %s and the identity file", in, err, info.UUID)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Kill(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if in, _ := m.Inspect("web"); in.UUID != info.UUID {
		t.Errorf("UUID after a run: %q, want %q", in.UUID, info.UUID)
	}

	// A VM created before identities: none until its next start.
	in, _ := m.Inspect("web")
	if err := os.Remove(in.Paths.Identity); err != nil {
		t.Fatal(err)
	}
	if in, _ := m.Inspect("web"); in.UUID != "" || in.Problem != "" {
		t.Errorf("without identity.json: UUID %q, problem %q; want none", in.UUID, in.Problem)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	started, _ := m.Inspect("web")
	if _, err := m.Kill(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if u, err := uuid.Parse(started.UUID); err != nil || u == created {
		t.Errorf("UUID given at start: %q (%v); want a new one", started.UUID, err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Inspect("web"); again.UUID != started.UUID {
		t.Errorf("UUID changed across starts: %q, then %q", started.UUID, again.UUID)
	}
}

// TestLogsFollowStarting: logs -f of a VM whose VMM is still starting
// (it holds the run lock, has written no record yet, and its control
// socket is not up) waits for the socket and streams from it, instead
// of printing the log file so far and stopping.
func TestLogsFollowStarting(t *testing.T) {
	m := testManager(t)
	if _, err := m.Create(testVM(t, "web", "counter"), ""); err != nil {
		t.Fatal(err)
	}
	v, err := m.store.VM("web")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.Path(store.ConsoleFile), []byte("the log file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rl, err := v.AcquireRunLock(os.Getpid(), "a-starting-run")
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Release()
	if in, err := m.Inspect("web"); err != nil || in.State != store.StateStarting {
		t.Fatalf("state %q (%v), want starting", in.State, err)
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		rc, err := m.Logs(context.Background(), "web", LogOptions{Follow: true})
		if err != nil {
			done <- result{err: err}
			return
		}
		defer rc.Close()
		out, err := io.ReadAll(rc)
		done <- result{string(out), err}
	}()
	l, err := net.Listen("unix", v.Path(store.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the VMM's stream\n")
	})}
	go srv.Serve(l)
	defer srv.Close()
	select {
	case r := <-done:
		if r.err != nil || r.out != "the VMM's stream\n" {
			t.Errorf("logs -f of a starting VM: %q, %v; want the VMM's stream", r.out, r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("logs -f did not return within a minute of the socket's start")
	}
}

// TestVMMDebugSignal: SIGUSR1 to a running VM's VMM writes the
// machine's state to vmm.log, in one piece between two markers: each
// vCPU's exits, the console UART's registers and the virtio devices.
func TestVMMDebugSignal(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	info := startCounter(t, m, "web")
	t.Cleanup(func() { m.Kill(context.Background(), "web") })
	if err := syscall.Kill(info.PID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	v, err := m.store.VM("web")
	if err != nil {
		t.Fatal(err)
	}
	const end = "(end of the machine's state)\n"
	var log string
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(log, end); {
		if time.Now().After(deadline) {
			t.Fatalf("no machine state in vmm.log 30 s after SIGUSR1: %q", log)
		}
		time.Sleep(20 * time.Millisecond) // the VMM writes the file; nothing to wait on
		b, _ := os.ReadFile(v.Path(store.VMMLogFile))
		log = string(b)
	}
	dump := log[strings.Index(log, "SIGUSR1: the machine's state follows"):]
	for _, want := range []string{"machine: running\n", "vCPU 0: ", "serial 0x3f8: ier "} {
		if !strings.Contains(dump, want) {
			t.Errorf("the machine's state lacks %q:\n%s", want, dump)
		}
	}
	if st, err := m.Status(ctx, "web"); err != nil || st.State != "running" {
		t.Errorf("after SIGUSR1 the VM is %q (%v), want running", st.State, err)
	}
}
