package guest

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// typeLine types line into the VM's console and reads until want.
func typeLine(t *testing.T, m *Manager, name, line, want string) string {
	t.Helper()
	conn, err := m.Attach(context.Background(), name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	return readUntil(t, conn, want, guestTimeout)
}

// diskBytes reads the first n bytes of the guest's view of the qcow2
// image at path with qemu-io, while QEMU holds it (-U).
func diskBytes(t *testing.T, path string, n int) string {
	t.Helper()
	qio := testenv.RequireTool(t, "qemu-io", "qemu-utils")
	out, err := exec.Command(qio, "-U", "-r", "-f", "qcow2", "-c", "read -v 0 "+strconv.Itoa(n), path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	// qemu-io -v prints "00000000:  64 69 73 6b ...  diskone".
	line, _, _ := strings.Cut(string(out), "\n")
	if i := strings.LastIndex(line, "  "); i >= 0 {
		return strings.TrimSpace(line[i:])
	}
	return line
}

// TestLibvirtSnapshot takes an internal snapshot of a running libvirt VM
// whose guest wrote to its memory and its disk, lets the guest change
// both, and reverts: memory and disk are back to the snapshot's instant,
// together. qemu-img and qemu-io, on the volume in the host's pool, see
// the snapshot and the disk's content.
func TestLibvirtSnapshot(t *testing.T) {
	ctx := context.Background()
	m, d := libvirtManager(t)
	vm := libvirtVMOf(t, libvirttest.DiskGuest(t), "web")
	info, err := m.CreateContext(ctx, vm, "")
	if err != nil {
		t.Fatal(err)
	}
	// Not running: nothing to save; the same words as for a native VM.
	var se *StateError
	if _, err := m.CreateSnapshot(ctx, "web", "s0", false); !errors.As(err, &se) ||
		err.Error() != "cannot snapshot VM 'web': it is created; "+notRunningHint {
		t.Errorf("snapshot of a created VM: %v", err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	waitHello(t, m, "web")
	if out := typeLine(t, m, "web", "test -b /dev/vda && echo vda-$((6*7)); cat /proc/partitions; lsmod", "vda-42"); !strings.Contains(out, "vda-42") {
		t.Fatalf("the guest has no virtio disk: %q", tailOf(out))
	}
	typeLine(t, m, "web", "echo one > /tmp/mem; echo diskone | dd of=/dev/vda conv=fsync 2>/dev/null; echo wrote-$((0+1))", "wrote-1")
	volume := filepath.Join(d.Dir, "lib", "paddock", "vm-"+info.UUID+".disk0")
	if got := diskBytes(t, volume, 7); got != "diskone" {
		t.Fatalf("the disk holds %q, not what the guest wrote", got)
	}

	s, err := m.CreateSnapshot(ctx, "web", "s1", false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "s1" || s.VM != "web" || s.VMState != "running" || s.Memory != 256<<20 || len(s.Disks) != 1 || s.Disks[0] != "disks[0]" ||
		s.Backend != "libvirt" || s.Paused <= 0 || time.Since(s.Created) > time.Hour {
		t.Errorf("snapshot %+v", s)
	}
	var exists *SnapshotExistsError
	if _, err := m.CreateSnapshot(ctx, "web", "s1", false); !errors.As(err, &exists) {
		t.Errorf("a second s1: %v", err)
	}
	if _, err := m.CreateSnapshot(ctx, "web", "-bad", false); err == nil || !strings.Contains(err.Error(), "cannot name a snapshot") {
		t.Errorf("a bad name: %v", err)
	}
	qimg := testenv.RequireTool(t, "qemu-img", "qemu-utils")
	if out, err := exec.Command(qimg, "snapshot", "-U", "-l", volume).CombinedOutput(); err != nil || !strings.Contains(string(out), " s1 ") {
		t.Errorf("qemu-img snapshot -l: %v\n%s", err, out)
	}

	// The guest goes on and changes both.
	typeLine(t, m, "web", "echo two > /tmp/mem; echo disktwo | dd of=/dev/vda conv=fsync 2>/dev/null; echo wrote-$((1+1))", "wrote-2")
	if got := diskBytes(t, volume, 7); got != "disktwo" {
		t.Fatalf("the disk holds %q after the second write", got)
	}
	snaps, err := m.Snapshots("web")
	if err != nil || len(snaps) != 1 || snaps[0].Name != "s1" || snaps[0].VMState != "running" {
		t.Errorf("Snapshots = %+v, %v", snaps, err)
	}

	// Back to s1: a running VM only with force.
	if _, err := m.RestoreSnapshot(ctx, "web", "s1", false); !errors.As(err, &se) ||
		err.Error() != "cannot restore a snapshot of VM 'web': it is running; "+restoreRunningHint("web") {
		t.Errorf("restore of a running VM without force: %v", err)
	}
	var none *NoSnapshotError
	if _, err := m.RestoreSnapshot(ctx, "web", "s9", true); !errors.As(err, &none) || err.Error() != "VM 'web' has no snapshot called 's9' (paddock snapshot ls web lists them)" {
		t.Errorf("restore of a missing snapshot: %v", err)
	}
	if info, err := m.RestoreSnapshot(ctx, "web", "s1", true); err != nil || info.State != store.StateRunning {
		t.Fatalf("RestoreSnapshot = %+v, %v", info, err)
	}
	if got := diskBytes(t, volume, 7); got != "diskone" {
		t.Errorf("the disk holds %q after the restore, not the snapshot's", got)
	}
	// The guest's memory is the snapshot's too: the shell's file in
	// tmpfs, and what it reads from its disk.
	out := typeLine(t, m, "web", "echo mem=$(cat /tmp/mem) disk=$(head -c 7 /dev/vda)", "mem=one disk=diskone")
	if strings.Contains(out, "mem=two") {
		t.Errorf("the guest's memory was not rolled back: %q", tailOf(out))
	}

	if err := m.RemoveSnapshot(ctx, "web", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveSnapshot(ctx, "web", "s1"); !errors.As(err, &none) {
		t.Errorf("second RemoveSnapshot: %v", err)
	}
	if snaps, err := m.Snapshots("web"); err != nil || len(snaps) != 0 {
		t.Errorf("Snapshots after remove = %+v, %v", snaps, err)
	}
	if out, err := exec.Command(qimg, "snapshot", "-U", "-l", volume).CombinedOutput(); err != nil || strings.Contains(string(out), " s1 ") {
		t.Errorf("qemu-img snapshot -l after remove: %v\n%s", err, out)
	}
	if err := m.Remove(ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	nothingLeft(t, m, d, "web")
}

// TestLibvirtSnapshotNeedsQcow2: a VM with a writable raw disk cannot
// have a libvirt snapshot, and is told why before anything happens.
func TestLibvirtSnapshotNeedsQcow2(t *testing.T) {
	ctx := context.Background()
	m, _ := libvirtManager(t)
	vm := libvirtVM(t, "raw")
	vm.Disks[0].Format = "raw"
	if _, err := m.CreateContext(ctx, vm, ""); err != nil {
		t.Fatal(err)
	}
	_, err := m.CreateSnapshot(ctx, "raw", "s1", false)
	if err == nil || !strings.HasPrefix(err.Error(), "VM raw: a libvirt snapshot lives inside the VM's disks, which must all be qcow2: disks[0] (") {
		t.Errorf("CreateSnapshot = %v", err)
	}
	if err := m.Remove(ctx, "raw", false); err != nil {
		t.Fatal(err)
	}
}
