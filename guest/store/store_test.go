package store

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// TestMain doubles as a helper process: with PADDOCK_STORE_HELPER=lock it
// takes a VM's run lock (the VM in $PADDOCK_STORE_DIR), says "locked" on
// stdout and waits to be killed (see TestRunLockDiesWithProcess); with
// disk+lock it first takes a write lock on the file "disk" there, as a
// VMM holds its disks (see TestWaitRunUnlockedWaitsForFiles); with
// PADDOCK_STORE_HELPER=trust it prints what CheckTrusted says of
// $PADDOCK_STORE_DIR, "ok" or the error (see TestTrustNonRoot).
func TestMain(m *testing.M) {
	switch os.Getenv("PADDOCK_STORE_HELPER") {
	case "trust":
		if err := CheckTrusted(os.Getenv("PADDOCK_STORE_DIR")); err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("ok")
		}
		os.Exit(0)
	case "lock", "disk+lock":
		v := &VM{Name: "helper", Dir: os.Getenv("PADDOCK_STORE_DIR")}
		if os.Getenv("PADDOCK_STORE_HELPER") == "disk+lock" {
			// As a VMM holds its disks: opened and locked before its run
			// lock, so on a lower descriptor.
			if _, err := lockDiskFile(filepath.Join(v.Dir, "disk")); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
		}
		if _, err := v.AcquireRunLock(os.Getpid(), "helper-run"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaultHome(t *testing.T) {
	t.Setenv(EnvHome, "/srv/paddock")
	if h, err := DefaultHome(); err != nil || h != "/srv/paddock" {
		t.Errorf("with $%s: %q, %v", EnvHome, h, err)
	}
	t.Setenv(EnvHome, "relative/dir")
	wd, _ := os.Getwd()
	if h, err := DefaultHome(); err != nil || h != filepath.Join(wd, "relative/dir") {
		t.Errorf("relative $%s: %q, %v; want it made absolute", EnvHome, h, err)
	}
	t.Setenv(EnvHome, "")
	t.Setenv("XDG_DATA_HOME", "/data")
	h, err := DefaultHome()
	want := "/data/paddock"
	if os.Geteuid() == 0 {
		want = RootHome
	}
	if err != nil || h != want {
		t.Errorf("default: %q, %v; want %q", h, err, want)
	}
}

func TestOpenRelativeHome(t *testing.T) {
	if _, err := Open("relative"); err == nil {
		t.Fatal("Open of a relative home succeeded")
	}
}

func TestCreateListRemove(t *testing.T) {
	s := newStore(t)
	for _, n := range []string{"web", "db-1", "a"} {
		if _, err := s.Create(n, []byte("name: "+n+"\n"), Record{Phase: PhaseCreated}); err != nil {
			t.Fatalf("Create(%s): %v", n, err)
		}
	}
	names, err := s.Names()
	if err != nil || strings.Join(names, ",") != "a,db-1,web" {
		t.Fatalf("Names = %v, %v", names, err)
	}
	if _, err := s.Create("web", nil, Record{}); !errors.Is(err, ErrExists) {
		t.Errorf("second Create(web): %v, want ErrExists", err)
	}
	for _, bad := range []string{"", "Web", "../x", "a/b", "-a", strings.Repeat("a", 64)} {
		if _, err := s.Create(bad, nil, Record{}); !errors.Is(err, ErrBadName) {
			t.Errorf("Create(%q): %v, want ErrBadName", bad, err)
		}
		if _, err := s.VM(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("VM(%q): %v, want ErrBadName", bad, err)
		}
	}
	v, err := s.VM("web")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(v.Path(SpecFile))
	if err != nil || string(spec) != "name: web\n" {
		t.Errorf("vm.yaml = %q, %v", spec, err)
	}
	for _, f := range []string{LockFile, RecordFile} {
		fi, err := os.Stat(v.Path(f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi, err)
		}
	}
	if err := s.Remove(v); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VM("web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("VM(web) after Remove: %v, want ErrNotFound", err)
	}
	if err := s.Remove(v); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Home(), vmsDir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s in vms/", e.Name())
		}
	}
}

// TestConcurrentCreate checks that of many concurrent creations of one
// name exactly one wins and the others get ErrExists.
func TestConcurrentCreate(t *testing.T) {
	s := newStore(t)
	const n = 16
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Create("web", []byte(fmt.Sprint(i)), Record{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrExists):
			t.Errorf("Create: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d creations won, want 1", won)
	}
}

func TestSweep(t *testing.T) {
	s := newStore(t)
	vms := filepath.Join(s.Home(), vmsDir)
	trash := filepath.Join(vms, trashPrefix+"x-1")
	fresh := filepath.Join(vms, newPrefix+"y-1")
	stale := filepath.Join(vms, newPrefix+"z-1")
	for _, d := range []string{trash, fresh, stale} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleNewDirs)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Home()); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{trash: false, fresh: true, stale: false} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}

func TestLock(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("web", nil, Record{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := v.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Lock(); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Lock: %v, want ErrBusy", err)
	}
	l.Unlock()
	l.Unlock() // twice is fine
	l2, err := v.Lock()
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if err := s.Remove(v); err != nil {
		t.Fatal(err)
	}
	l2.Unlock()
	if _, err := v.Lock(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lock of a removed VM: %v, want ErrNotFound", err)
	}
}

func TestRunLock(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("web", nil, Record{})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := v.RunHolder(); err != nil || h.Alive {
		t.Fatalf("RunHolder before any VMM: %+v, %v", h, err)
	}
	rl, err := v.AcquireRunLock(os.Getpid(), "run-1")
	if err != nil {
		t.Fatal(err)
	}
	h, err := v.RunHolder()
	if err != nil || !h.Alive || h.PID != os.Getpid() || h.RunID != "run-1" {
		t.Fatalf("RunHolder = %+v, %v; want alive, our pid, run-1", h, err)
	}
	if _, err := v.AcquireRunLock(os.Getpid(), "run-2"); !errors.Is(err, ErrRunning) {
		t.Fatalf("second AcquireRunLock: %v, want ErrRunning", err)
	}
	if err := v.WaitRunUnlocked(10 * time.Millisecond); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("WaitRunUnlocked while held: %v, want ErrWaitTimeout", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- v.WaitRunUnlocked(time.Minute) }()
	rl.Release()
	rl.Release()
	if err := <-waited; err != nil {
		t.Fatalf("WaitRunUnlocked: %v", err)
	}
	if h, err := v.RunHolder(); err != nil || h.Alive {
		t.Fatalf("RunHolder after Release: %+v, %v", h, err)
	}
	// A waiter's read lock does not make a VMM alive, nor keep one out.
	rl, err = v.AcquireRunLock(os.Getpid(), "run-3")
	if err != nil {
		t.Fatalf("AcquireRunLock after Release: %v", err)
	}
	rl.Release()
}

// startLockHelper starts this test binary as the helper process mode
// (see TestMain) for v and returns once it has its locks.
func startLockHelper(t *testing.T, v *VM, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PADDOCK_STORE_HELPER="+mode, "PADDOCK_STORE_DIR="+v.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if strings.TrimSpace(string(buf[:n])) != "locked" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q", buf[:n])
	}
	return cmd
}

// TestRunLockDiesWithProcess checks that a VMM killed with SIGKILL frees
// its run lock: liveness does not depend on pids.
func TestRunLockDiesWithProcess(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("web", nil, Record{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := startLockHelper(t, v, "lock")
	h, err := v.RunHolder()
	if err != nil || !h.Alive || h.PID != cmd.Process.Pid || h.RunID != "helper-run" {
		t.Errorf("RunHolder = %+v, %v; want the helper (pid %d)", h, err, cmd.Process.Pid)
	}
	if _, err := v.AcquireRunLock(os.Getpid(), "mine"); !errors.Is(err, ErrRunning) {
		t.Errorf("AcquireRunLock while the helper holds it: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitRunUnlocked(time.Minute); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if h, err := v.RunHolder(); err != nil || h.Alive {
		t.Errorf("RunHolder after SIGKILL: %+v, %v", h, err)
	}
}

// lockDiskFile opens path, creating it, and takes an open-file-description
// write lock on it, as an image lock is.
func lockDiskFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// TestWaitRunUnlockedWaitsForFiles checks that once WaitRunUnlocked
// returns after a VMM was killed, the VMM's other files are closed too:
// the kernel closes a dead process's files highest descriptor first, so
// its run lock alone would be free a moment before the disk it opened
// earlier.
// Without the wait for the process's exit, this failed within the first
// two rounds on a 2-CPU machine (docs/hosts.md).
func TestWaitRunUnlockedWaitsForFiles(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("web", nil, Record{})
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(v.Dir, "disk")
	for round := 0; round < 40; round++ {
		cmd := startLockHelper(t, v, "disk+lock")
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		werr := v.WaitRunUnlocked(time.Minute)
		// Not reaped yet: the wait must not need the parent's wait(2).
		f, lerr := lockDiskFile(disk)
		cmd.Wait()
		if werr != nil {
			t.Fatal(werr)
		}
		if lerr != nil {
			t.Fatalf("round %d: the disk's lock after WaitRunUnlocked: %v", round, lerr)
		}
		f.Close()
	}
}

// TestProcExiting reads PF_EXITING from stat files: this process's (not
// exiting), and made-up ones with a command name holding spaces and
// parentheses, with and without the flag, cut short, and missing.
func TestProcExiting(t *testing.T) {
	if procExiting(procRoot, os.Getpid()) {
		t.Errorf("this process: exiting")
	}
	root := t.TempDir()
	stat := func(pid int, s string) {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A name with spaces and parentheses; flags 0x404044 (PF_EXITING set)
	// and 0x400040 (not).
	stat(10, "10 (a) b (c) R 1 10 10 0 -1 4210756 0 0 0 0\n")
	stat(11, "11 (paddock) S 1 11 11 0 -1 4194368 0 0 0 0\n")
	stat(12, "12 (short) R 1\n")
	for pid, want := range map[int]bool{10: true, 11: false, 12: false, 13: false} {
		if got := procExiting(root, pid); got != want {
			t.Errorf("procExiting(%d) = %v, want %v", pid, got, want)
		}
	}
}

func TestRecord(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("web", nil, Record{CreatedAt: time.Unix(1e9, 0).UTC(), Phase: PhaseCreated})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := v.ReadRecord()
	if err != nil || rec.Phase != PhaseCreated || rec.Version != RecordVersion || !rec.CreatedAt.Equal(time.Unix(1e9, 0)) {
		t.Fatalf("ReadRecord = %+v, %v", rec, err)
	}
	rec.Phase, rec.RunID, rec.PID = PhaseExited, "r", 7
	rec.Exit = &Exit{Reason: exit.Crash, Detail: "boom", ConsoleTail: []string{"a", "b"}}
	if err := v.WriteRecord(rec); err != nil {
		t.Fatal(err)
	}
	back, err := v.ReadRecord()
	if err != nil || back.Exit == nil || back.Exit.Detail != "boom" || len(back.Exit.ConsoleTail) != 2 || back.PID != 7 {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	ents, _ := os.ReadDir(v.Dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temporary file %s", e.Name())
		}
	}
	if err := os.Remove(v.Path(RecordFile)); err != nil {
		t.Fatal(err)
	}
	if rec, err := v.ReadRecord(); err != nil || rec.Phase != PhaseCreated {
		t.Errorf("missing state.json reads as %+v, %v; want created", rec, err)
	}
}

func TestParseRecordErrors(t *testing.T) {
	tests := []struct{ data, want string }{
		{`{"version": 2, "phase": "running"}`, "x.json: version 2 written by a newer paddock (this one reads version 1)"},
		{`{"version": 1, "phase": "dancing"}`, `x.json: unknown phase "dancing"`},
		{`{"version": 1, `, "x.json: unexpected end of JSON input"},
		{`[]`, "x.json: json: cannot unmarshal array into Go value of type store.Record"},
	}
	for _, tt := range tests {
		_, err := ParseRecord([]byte(tt.data), "x.json")
		if err == nil || err.Error() != "store: "+tt.want {
			t.Errorf("ParseRecord(%s) = %v, want %q", tt.data, err, tt.want)
		}
	}
	if r, err := ParseRecord([]byte(`{"version": 1}`), "x.json"); err != nil || r.Phase != PhaseCreated {
		t.Errorf("no phase: %+v, %v; want created", r, err)
	}
}

func TestDerive(t *testing.T) {
	live := Holder{Alive: true, PID: 10, RunID: "r1"}
	crash := &Exit{Reason: exit.Crash}
	died := &Exit{Reason: exit.VMMDied}
	off := &Exit{Reason: exit.PowerOff}
	tests := []struct {
		name  string
		rec   Record
		h     Holder
		want  State
		stale bool
	}{
		{"never started", Record{Phase: PhaseCreated}, Holder{}, StateCreated, false},
		{"VMM taking its lock", Record{Phase: PhaseCreated}, Holder{Alive: true}, StateStarting, false},
		{"VMM before its first record", Record{Phase: PhaseExited, RunID: "r0", Exit: off}, live, StateStarting, false},
		{"starting", Record{Phase: PhaseStarting, RunID: "r1"}, live, StateStarting, false},
		{"running", Record{Phase: PhaseRunning, RunID: "r1"}, live, StateRunning, false},
		{"paused", Record{Phase: PhasePaused, RunID: "r1"}, live, StatePaused, false},
		{"stopping", Record{Phase: PhaseStopping, RunID: "r1"}, live, StateStopping, false},
		{"restarting", Record{Phase: PhaseRestarting, RunID: "r1"}, live, StateRestarting, false},
		{"recorded its end, not exited yet", Record{Phase: PhaseExited, RunID: "r1", Exit: off}, live, StateStopping, false},
		{"powered off", Record{Phase: PhaseExited, RunID: "r1", Exit: off}, Holder{}, StateStopped, false},
		{"stopped", Record{Phase: PhaseExited, Exit: &Exit{Reason: exit.Stop}}, Holder{}, StateStopped, false},
		{"killed", Record{Phase: PhaseExited, Exit: &Exit{Reason: exit.Kill}}, Holder{}, StateStopped, false},
		{"rebooted", Record{Phase: PhaseExited, Exit: &Exit{Reason: exit.Reboot}}, Holder{}, StateStopped, false},
		{"crashed", Record{Phase: PhaseExited, Exit: crash}, Holder{}, StateCrashed, false},
		{"VMM died, recorded", Record{Phase: PhaseExited, Exit: died}, Holder{}, StateCrashed, false},
		{"only failed starts", Record{Phase: PhaseExited, StartError: "no kernel"}, Holder{}, StateCreated, false},
		{"VMM died running", Record{Phase: PhaseRunning, RunID: "r1"}, Holder{}, StateCrashed, true},
		{"VMM died paused", Record{Phase: PhasePaused, RunID: "r1"}, Holder{}, StateCrashed, true},
		{"VMM died starting", Record{Phase: PhaseStarting, RunID: "r1"}, Holder{}, StateCrashed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Derive(tt.rec, tt.h); got != tt.want {
				t.Errorf("Derive = %s, want %s", got, tt.want)
			}
			if got := Stale(tt.rec, tt.h); got != tt.stale {
				t.Errorf("Stale = %v, want %v", got, tt.stale)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer", ""} {
		if err := WriteFileAtomic(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("content %q, %v; want %q", b, err, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory, want 1", len(ents))
	}
	if err := WriteFileAtomic(filepath.Join(dir, "nodir", "f"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func BenchmarkRunHolder(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "home"))
	if err != nil {
		b.Fatal(err)
	}
	v, err := s.Create("web", nil, Record{})
	if err != nil {
		b.Fatal(err)
	}
	rl, err := v.AcquireRunLock(os.Getpid(), "r")
	if err != nil {
		b.Fatal(err)
	}
	defer rl.Release()
	for b.Loop() {
		if h, err := v.RunHolder(); err != nil || !h.Alive {
			b.Fatal(h, err)
		}
	}
}

// FuzzParseRecord checks that no state.json content makes ParseRecord
// panic, and that what it accepts has a known phase and version.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"version": 1, "phase": "running", "run_id": "r", "pid": 3}`))
	f.Add([]byte(`{"version": 1, "phase": "exited", "exit": {"reason": "crash", "console_tail": ["a"]}}`))
	f.Add([]byte(`{"version": 2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data, "state.json")
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RecordError", err)
			}
			return
		}
		if r.Version > RecordVersion {
			t.Fatalf("accepted version %d", r.Version)
		}
		_ = Derive(r, Holder{})
	})
}
