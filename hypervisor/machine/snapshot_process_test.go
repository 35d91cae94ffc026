package machine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// helperEnv makes the test binary run TestSnapshotHelper as a VMM-like
// helper process: "save" or "restore".
const helperEnv = "PADDOCK_MACHINE_SNAPSHOT_HELPER"

// helperResult is what a helper process prints, one JSON line.
type helperResult struct {
	Reports []report
	Err     string
}

// TestMain runs the test binary as a helper process of
// TestSnapshotAcrossProcesses when helperEnv says so.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		snapshotHelper(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fataler is the part of testing.TB the snapshot tests' helpers use, so
// that a helper process, which has no testing.T, can use them too.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// helperT is a helper process's fataler: a failure is printed as its
// result and ends the process; cleanups are left to the process's end.
type helperT struct{}

func (helperT) Helper()                           {}
func (helperT) Cleanup(func())                    {}
func (helperT) Fatal(args ...any)                 { helperFail(fmt.Sprint(args...)) }
func (helperT) Fatalf(format string, args ...any) { helperFail(fmt.Sprintf(format, args...)) }

func helperFail(msg string) {
	json.NewEncoder(os.Stdout).Encode(helperResult{Err: msg})
	os.Exit(1)
}

// snapshotHelper is a helper process of TestSnapshotAcrossProcesses: it
// saves the cpl3count guest into a snapshot directory (and then waits to
// be killed), or restores one and reports what the guest does next.
func snapshotHelper(mode string) {
	var t helperT
	dir := os.Getenv("SNAPSHOT_DIR")
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) { helperFail(err.Error()) }
	sys, err := kvm.Open(kvm.DefaultPath)
	if err != nil {
		fail(err)
	}
	cfg := Config{KVM: sys, CPUs: 1, Memory: 64 << 20}
	switch mode {
	case "save":
		st, before := saveCounting(t, cfg, os.Getenv("SNAPSHOT_KERNEL"), dir, os.Getenv("SNAPSHOT_AT") == "io-exit")
		if err := writeStateFile(filepath.Join(dir, "state"), st); err != nil {
			fail(err)
		}
		out.Encode(helperResult{Reports: before})
		// The process lives on until it is killed.
		select {}
	case "restore":
		f, err := snapshot.ReadFile(filepath.Join(dir, "state"))
		if err != nil {
			fail(err)
		}
		st, err := DecodeState(f)
		if err != nil {
			fail(err)
		}
		mem, err := os.Open(filepath.Join(dir, "memory"))
		if err != nil {
			fail(err)
		}
		m, err := Restore(cfg, st, mem)
		if err != nil {
			fail(err)
		}
		rep := newReporter(t, m, 0)
		out.Encode(helperResult{Reports: rep.wait(t, 3, runMachine(t, m))})
	}
}

// writeStateFile writes st as a snapshot state file.
func writeStateFile(path string, st *State) error {
	f, err := st.File(snapshot.Header{Paddock: "test", Created: time.Now()})
	if err != nil {
		return err
	}
	b, err := snapshot.Encode(f)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// helper starts a helper process and returns it with its first line of
// output.
func helper(t *testing.T, mode, dir, kernel, at string) (*exec.Cmd, helperResult) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "SNAPSHOT_DIR="+dir, "SNAPSHOT_KERNEL="+kernel, "SNAPSHOT_AT="+at)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var res helperResult
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("%s helper: no result: %v", mode, err)
	}
	if err := json.Unmarshal(line, &res); err != nil {
		t.Fatalf("%s helper printed %q: %v", mode, line, err)
	}
	if res.Err != "" {
		t.Fatalf("%s helper: %s", mode, res.Err)
	}
	return cmd, res
}

// TestSnapshotAcrossProcesses saves the counting guest in one process,
// kills that process with SIGKILL, and restores the snapshot in a new process: the guest
// continues exactly where it was, saved both on an I/O exit and in the
// middle of its CPL3 loop. Nothing of the old process is needed: only
// the state file and the memory file.
func TestSnapshotAcrossProcesses(t *testing.T) {
	requireKVM(t)
	kernel := buildGuest(t, "cpl3count", nil)
	for _, at := range []string{"io-exit", "cpl3-loop"} {
		t.Run(at, func(t *testing.T) {
			dir := t.TempDir()
			saver, saved := helper(t, "save", dir, kernel, at)
			if err := saver.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			saver.Wait()
			_, restored := helper(t, "restore", dir, kernel, at)
			n := len(saved.Reports)
			want := expectedReports(n + 3)
			if !reflect.DeepEqual(saved.Reports, want[:n]) {
				t.Fatalf("reports before the save %v, want %v", saved.Reports, want[:n])
			}
			if len(restored.Reports) < 3 || !reflect.DeepEqual(restored.Reports[:3], want[n:]) {
				t.Fatalf("the restored guest reported %v, want %v", restored.Reports, want[n:])
			}
		})
	}
}
