package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVMMFilesHostile puts in place of state.json and vmm.lock, which a
// jailed VMM owns, what it could: a FIFO (opening it for reading would
// block paddock ls for good), a link to another VM's file, a sparse file
// of a TiB. Each is refused at once, as a damaged record or a run lock
// error, and read no further.
func TestVMMFilesHostile(t *testing.T) {
	root := t.TempDir()
	v := &VM{Name: "web", Dir: filepath.Join(root, "web")}
	other := &VM{Name: "other", Dir: filepath.Join(root, "other")}
	for _, d := range []string{v.Dir, other.Dir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.WriteRecord(Record{Version: RecordVersion, Phase: PhaseRunning, PID: 4242}); err != nil {
		t.Fatal(err)
	}
	lk, err := other.AcquireRunLock(4242, "run")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()

	done := make(chan struct{})
	timer := time.AfterFunc(time.Minute, func() {
		select {
		case <-done:
		default:
			panic("a read of a FIFO blocked")
		}
	})
	defer func() { close(done); timer.Stop() }()

	var re *RecordError
	for _, name := range []string{RecordFile, RunLockFile} {
		if err := syscall.Mkfifo(v.Path(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.ReadRecord(); !errors.As(err, &re) {
		t.Fatalf("ReadRecord of a FIFO: %v, want a damaged record", err)
	}
	if _, err := v.RunHolder(); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("RunHolder of a FIFO: %v", err)
	}
	if err := v.WaitRunUnlocked(time.Second); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("WaitRunUnlocked of a FIFO: %v", err)
	}

	for _, name := range []string{RecordFile, RunLockFile} {
		os.Remove(v.Path(name))
		if err := os.Symlink(other.Path(name), v.Path(name)); err != nil {
			t.Fatal(err)
		}
	}
	if rec, err := v.ReadRecord(); !errors.As(err, &re) {
		t.Fatalf("ReadRecord of a link to another VM's: %+v, %v, want a damaged record", rec, err)
	}
	if h, err := v.RunHolder(); err == nil || h.Alive {
		t.Fatalf("RunHolder of a link to another VM's run lock: %+v, %v", h, err)
	}

	os.Remove(v.Path(RecordFile))
	f, err := os.Create(v.Path(RecordFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := v.ReadRecord(); !errors.As(err, &re) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ReadRecord of a sparse TiB: %v", err)
	}
}
