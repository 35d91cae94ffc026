package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// plantSnapshot writes a complete snapshot called name into dir (a VM's
// snapshots directory, or anywhere): snapshot.json, state and memory.
func plantSnapshot(t *testing.T, dir, name string) string {
	t.Helper()
	sd := filepath.Join(dir, name)
	if err := os.MkdirAll(sd, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(SnapshotMeta{Format: SnapshotMetaFormat, Name: name, VM: "other", Created: time.Now().UTC(), VMState: "running", CPUs: 1, Memory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{SnapshotMetaFile: b, SnapshotStateFile: []byte("state"), SnapshotMemoryFile: []byte("secret memory")} {
		if err := os.WriteFile(filepath.Join(sd, file), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return sd
}

// TestSnapshotLinksNotFollowed plants what a jailed VMM could in the
// snapshots directory it owns: the directory itself a link to another
// VM's snapshots, a snapshot that is a link to another VM's, files that
// are links or FIFOs. paddock reads, removes and sweeps none of what
// the links name, and never blocks on the FIFO.
func TestSnapshotLinksNotFollowed(t *testing.T) {
	root := t.TempDir()
	otherSnaps := filepath.Join(root, "other", SnapshotsDir)
	victim := plantSnapshot(t, otherSnaps, "s1")
	plantSnapshot(t, otherSnaps, ".trash-x") // what a sweep would remove
	v := &VM{Name: "web", Dir: filepath.Join(root, "web")}
	if err := os.Mkdir(v.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	intact := func() {
		t.Helper()
		for _, p := range []string{filepath.Join(victim, SnapshotMetaFile), filepath.Join(victim, SnapshotMemoryFile), filepath.Join(otherSnaps, ".trash-x", SnapshotMemoryFile)} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("the other VM's %s: %v", p, err)
			}
		}
	}

	// The snapshots directory is a link to the other VM's.
	if err := os.Symlink(otherSnaps, filepath.Join(v.Dir, SnapshotsDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ReadSnapshot("s1"); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("ReadSnapshot through a linked snapshots directory: %v", err)
	}
	if f, err := v.OpenSnapshotFile("s1", SnapshotMemoryFile); err == nil {
		f.Close()
		t.Fatal("OpenSnapshotFile opened the other VM's memory file through a linked snapshots directory")
	}
	if err := v.RemoveSnapshotDir("s1"); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("RemoveSnapshotDir through a linked snapshots directory: %v", err)
	}
	if _, err := v.NewSnapshotDir("s2"); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("NewSnapshotDir in a linked snapshots directory: %v", err)
	}
	v.SweepSnapshotDirs()
	intact()

	// A real snapshots directory whose snapshot is a link.
	if err := os.Remove(filepath.Join(v.Dir, SnapshotsDir)); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(v.Dir, SnapshotsDir)
	if err := os.Mkdir(snaps, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(snaps, "s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ReadSnapshot("s1"); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("ReadSnapshot of a linked snapshot: %v", err)
	}
	if err := v.RemoveSnapshotDir("s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(snaps, "s1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the link s1 is still there: %v", err)
	}
	intact()

	// A snapshot whose files are links, or a FIFO, and which holds a
	// link to the other VM's snapshot directory.
	own := plantSnapshot(t, snaps, "s3")
	for _, f := range []string{SnapshotMetaFile, SnapshotMemoryFile} {
		os.Remove(filepath.Join(own, f))
		if err := os.Symlink(filepath.Join(victim, f), filepath.Join(own, f)); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(own, SnapshotStateFile))
	if err := syscall.Mkfifo(filepath.Join(own, SnapshotStateFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(own, "sub")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ReadSnapshot("s3"); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("ReadSnapshot of a linked snapshot.json: %v", err)
	}
	if f, err := v.OpenSnapshotFile("s3", SnapshotMemoryFile); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenSnapshotFile of a linked memory file: %v", err)
	}
	if f, err := v.OpenSnapshotFile("s3", SnapshotStateFile); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenSnapshotFile of a FIFO: %v", err)
	}
	if err := v.RemoveSnapshotDir("s3"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(own); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("snapshot s3 is still there: %v", err)
	}
	intact()
	if _, err := v.ReadSnapshot("s3"); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("ReadSnapshot of a removed snapshot: %v", err)
	}
}

// TestSnapshotFileOwner refuses a snapshot file owned by another user
// than root, the current one and the VM's jail user.
func TestSnapshotFileOwner(t *testing.T) {
	testenv.RequireRoot(t, "this test gives a file to another user")
	v := &VM{Name: "web", Dir: t.TempDir()}
	sd := plantSnapshot(t, filepath.Join(v.Dir, SnapshotsDir), "s1")
	if err := os.Lchown(filepath.Join(sd, SnapshotMemoryFile), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	var ue *UnsafeError
	if f, err := v.OpenSnapshotFile("s1", SnapshotMemoryFile); !errors.As(err, &ue) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenSnapshotFile of another user's memory file: %v", err)
	}
	f, err := v.OpenSnapshotFile("s1", SnapshotStateFile)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
