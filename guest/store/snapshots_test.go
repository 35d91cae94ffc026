package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidSnapshotName(t *testing.T) {
	for _, ok := range []string{"a", "before-upgrade", "snap-20261206-103000", "v1.2_rc", strings.Repeat("x", MaxNameLen)} {
		if !ValidSnapshotName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "_x", "a/b", "..", "a b", "é", strings.Repeat("x", MaxNameLen+1)} {
		if ValidSnapshotName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestSnapshotDirs builds a snapshot aside and commits it, refuses a
// second of the same name, lists complete snapshots only, reads
// snapshot.json strictly, and removes it.
func TestSnapshotDirs(t *testing.T) {
	v := &VM{Name: "web", Dir: t.TempDir()}
	if names, err := v.SnapshotNames(); err != nil || names != nil {
		t.Fatalf("SnapshotNames of a VM without snapshots = %v, %v", names, err)
	}
	tmp, err := v.NewSnapshotDir("s1")
	if err != nil {
		t.Fatal(err)
	}
	meta := SnapshotMeta{Format: SnapshotMetaFormat, Name: "s1", VM: "web", Created: time.Now().UTC(), VMState: "running", CPUs: 1, Memory: 64 << 20,
		Disks: []SnapshotDisk{{Index: 0, Path: "/d.qcow2", Snapshot: "s1"}}}
	b, _ := json.Marshal(meta)
	if err := WriteFileAtomic(filepath.Join(tmp, SnapshotMetaFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Half-built: not listed, not readable.
	if names, _ := v.SnapshotNames(); len(names) != 0 {
		t.Fatalf("a snapshot being built is listed: %v", names)
	}
	if _, err := v.ReadSnapshot("s1"); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("ReadSnapshot of a snapshot being built: %v", err)
	}
	if err := v.CommitSnapshotDir(tmp, "s1"); err != nil {
		t.Fatal(err)
	}
	got, err := v.ReadSnapshot("s1")
	if err != nil || got.Name != "s1" || len(got.Disks) != 1 || !got.Created.Equal(meta.Created) {
		t.Fatalf("ReadSnapshot = %+v, %v", got, err)
	}
	if _, err := v.NewSnapshotDir("s1"); !errors.Is(err, ErrSnapshotExists) {
		t.Fatalf("second NewSnapshotDir(s1): %v", err)
	}
	if _, err := v.NewSnapshotDir("../s"); !errors.Is(err, ErrBadSnapshotName) {
		t.Fatalf("NewSnapshotDir(../s): %v", err)
	}
	if names, _ := v.SnapshotNames(); !slices.Equal(names, []string{"s1"}) {
		t.Fatalf("SnapshotNames = %v", names)
	}
	// A snapshot.json of another format, or with fields this paddock does
	// not know, is refused.
	for _, bad := range []string{`{"format": 2, "name": "s1"}`, `{"format": 1, "name": "s1", "colour": "red"}`} {
		if err := os.WriteFile(filepath.Join(v.SnapshotDir("s1"), SnapshotMetaFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := v.ReadSnapshot("s1"); err == nil {
			t.Errorf("ReadSnapshot accepted %s", bad)
		}
	}
	// An interrupted creation's directory is swept.
	if _, err := v.NewSnapshotDir("s2"); err != nil {
		t.Fatal(err)
	}
	v.SweepSnapshotDirs()
	if entries, _ := os.ReadDir(filepath.Join(v.Dir, SnapshotsDir)); len(entries) != 1 {
		t.Fatalf("after the sweep: %v", entries)
	}
	if err := v.RemoveSnapshotDir("s1"); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveSnapshotDir("s1"); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("second RemoveSnapshotDir: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(v.Dir, SnapshotsDir)); len(entries) != 0 {
		t.Fatalf("after the removal: %v", entries)
	}
}
