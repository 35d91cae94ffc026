package guest

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/guest/store"
)

// TestSnapshotRestoreAfterPowerLoss is a host reboot as far as one test
// can make one: a running VM is snapshotted, then its VMM dies by
// SIGKILL (no clean-up of any kind, as when the power goes), the
// snapshot's files and the disk are pushed out of the page cache (so
// the restore reads them from the disk, as after a reboot), and a new
// Manager, sharing nothing with the old one but PADDOCK_HOME, restores
// the snapshot. The guest goes on from the snapshot's tick, and the disk
// is clean: a restore needs nothing the old process held.
func TestSnapshotRestoreAfterPowerLoss(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	first, diskPath := snapshotWeb(t, m, 5, false)
	k := snapshotCount(t, m, "web", "s1")

	// The power goes: the VMM is killed without a word.
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v, err := m.vm("web")
	if err != nil {
		t.Fatal(err)
	}
	// The kernel lets go of the VMM's run lock once all of its threads
	// are gone.
	if err := v.WaitRunUnlocked(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	evict(t, diskPath)
	entries, err := os.ReadDir(v.SnapshotDir("s1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		evict(t, filepath.Join(v.SnapshotDir("s1"), e.Name()))
	}

	// The host is back: a new manager on the same home.
	m2, err := Open(Options{Home: m.Home(), VMMCommand: m.opts.VMMCommand})
	if err != nil {
		t.Fatal(err)
	}
	if in, err := m2.Inspect("web"); err != nil || in.State != store.StateCrashed {
		t.Fatalf("after its VMM died, the VM is %+v (%v); want it crashed (its VMM died without a word)", in, err)
	}
	info, err := m2.RestoreSnapshot(ctx, "web", "s1", false)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateRunning || info.PID == first.PID {
		t.Fatalf("restored: %+v", info)
	}
	got := followTicks(t, m2, "web").until(k + 3)
	if got[0] != k && got[0] != k+1 {
		t.Fatalf("the restored guest's first ticks %v: want it to go on from tick %d, where the snapshot was", got, k)
	}
	if _, err := m2.Kill(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	qemutest.Check(t, diskPath)
}

// evict writes path's dirty pages and drops its pages from the page
// cache, so the next read comes from the disk.
func evict(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise DONTNEED %s: %v", path, err)
	}
}
