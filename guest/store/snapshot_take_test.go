package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTakeSnapshotFile moves a snapshot's memory file into a private
// directory and makes it this user's, read-only; it refuses a file that
// is a link, has a second name (a hard link its VMM kept) or is still
// open for writing elsewhere, and leaves nothing behind then.
func TestTakeSnapshotFile(t *testing.T) {
	v := &VM{Name: "web", Dir: t.TempDir()}
	snaps := filepath.Join(v.Dir, SnapshotsDir)
	stage := t.TempDir()
	dst := filepath.Join(stage, "memory")
	gone := func() {
		t.Helper()
		if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind: %v", dst, err)
		}
	}

	sd := plantSnapshot(t, snaps, "s1")
	if err := v.TakeSnapshotFile("s1", SnapshotMemoryFile, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dst)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o400 {
		t.Fatalf("taken memory file: %v, %v", fi, err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "secret memory" {
		t.Fatalf("taken memory file holds %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(sd, SnapshotMemoryFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the snapshot's memory file is still there: %v", err)
	}
	os.Remove(dst)

	// A link to a file elsewhere.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	sd = plantSnapshot(t, snaps, "s2")
	os.Remove(filepath.Join(sd, SnapshotMemoryFile))
	if err := os.Symlink(secret, filepath.Join(sd, SnapshotMemoryFile)); err != nil {
		t.Fatal(err)
	}
	if err := v.TakeSnapshotFile("s2", SnapshotMemoryFile, dst); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("TakeSnapshotFile of a link: %v", err)
	}
	gone()

	// A second name the VMM kept.
	sd = plantSnapshot(t, snaps, "s3")
	if err := os.Link(filepath.Join(sd, SnapshotMemoryFile), filepath.Join(snaps, "kept")); err != nil {
		t.Fatal(err)
	}
	if err := v.TakeSnapshotFile("s3", SnapshotMemoryFile, dst); err == nil || !strings.Contains(err.Error(), "has 2 names") {
		t.Fatalf("TakeSnapshotFile of a file with another link: %v", err)
	}
	gone()

	// Still open for writing (as a VMM that kept its descriptor has it).
	sd = plantSnapshot(t, snaps, "s4")
	w, err := os.OpenFile(filepath.Join(sd, SnapshotMemoryFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := v.TakeSnapshotFile("s4", SnapshotMemoryFile, dst); err == nil || !strings.Contains(err.Error(), "still open in another process") {
		t.Fatalf("TakeSnapshotFile of a file open for writing: %v", err)
	}
	gone()
	w.Close()
	sd = plantSnapshot(t, snaps, "s5")
	if err := v.TakeSnapshotFile("s5", SnapshotMemoryFile, dst); err != nil {
		t.Fatalf("TakeSnapshotFile once nothing has it open: %v", err)
	}
}
