package guest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/guest/store"
)

// TestSnapshotRemoveOwnDisksOnly removes a snapshot of a stopped VM
// whose snapshot.json (written by the VM's VMM, maybe jailed) names
// another image as well as the VM's disk: the internal snapshot goes
// from the VM's own disk only, the other image keeps its own. Its memory
// file, a link to another file, is listed as taking nothing.
func TestSnapshotRemoveOwnDisksOnly(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	_, diskPath := snapshotWeb(t, m, 1, true)
	other := filepath.Join(t.TempDir(), "other.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", other, "1M")
	qemutest.QemuImg(t, "snapshot", "-c", "s1", other)

	v, err := m.vm("web")
	if err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(v.SnapshotDir("s1"), store.SnapshotMetaFile)
	meta, err := v.ReadSnapshot("s1")
	if err != nil {
		t.Fatal(err)
	}
	meta.Disks = append(meta.Disks,
		store.SnapshotDisk{Index: 0, Path: other, Snapshot: "s1"},
		store.SnapshotDisk{Index: 7, Path: other, Snapshot: "s1"})
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A memory file that links elsewhere is not measured through the link.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	memPath := filepath.Join(v.SnapshotDir("s1"), store.SnapshotMemoryFile)
	if err := os.Rename(memPath, memPath+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(big, memPath); err != nil {
		t.Fatal(err)
	}
	if snaps, err := m.Snapshots("web"); err != nil || len(snaps) != 1 || snaps[0].MemoryOnDisk != 0 {
		t.Fatalf("Snapshots with a linked memory file: %+v, %v; want it on disk as 0 bytes", snaps, err)
	}
	if err := m.RemoveSnapshot(ctx, "web", "s1"); err != nil {
		t.Fatal(err)
	}
	if lst := qemutest.QemuImg(t, "snapshot", "-l", diskPath); strings.Contains(lst, "s1") {
		t.Fatalf("the VM's disk keeps its internal snapshot s1:\n%s", lst)
	}
	if lst := qemutest.QemuImg(t, "snapshot", "-l", other); !strings.Contains(lst, "s1") {
		t.Fatalf("removing VM web's snapshot deleted s1 from %s, which is not its disk:\n%s", other, lst)
	}
}
