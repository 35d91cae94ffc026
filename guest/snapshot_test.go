package guest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// ticksVM returns the spec of the ticks guest with a writable qcow2 disk.
func ticksVM(t *testing.T, name string) (*configs.VM, string) {
	t.Helper()
	testguest.RequireKVM(t)
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	img, err := disk.Create(path, disk.CreateOptions{Format: disk.FormatQcow2, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	y := fmt.Sprintf("name: %s\nmemory: 64MiB\nkernel: %s\nconsole: log\ndisks:\n  - path: %s\n    format: qcow2\n", name, testguest.Build(t, "ticks"), path)
	vm, err := configs.Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{}); err != nil {
		t.Fatal(err)
	}
	return vm, path
}

// snapshotWeb creates the ticks VM web on m, starts it, follows it until
// its guest has ticked n times and takes the snapshot s1 (stopping the
// VM if stop). It returns the start's Info and the VM's disk.
func snapshotWeb(t *testing.T, m *Manager, n uint32, stop bool) (*Info, string) {
	t.Helper()
	ctx := context.Background()
	vm, diskPath := ticksVM(t, "web")
	if _, err := m.Create(vm, ""); err != nil {
		t.Fatal(err)
	}
	started, err := m.Start(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	followTicks(t, m, "web").until(n)
	if _, err := m.CreateSnapshot(ctx, "web", "s1", stop); err != nil {
		t.Fatal(err)
	}
	return started, diskPath
}

// ticks reads the ticks guest's console lines from one VMM's stream.
type ticks struct {
	t     *testing.T
	lines *bufio.Scanner
	rc    io.Closer
	seen  []string
}

var tickLine = regexp.MustCompile(`^tick ([0-9a-f]{8})$`)

func followTicks(t *testing.T, m *Manager, name string) *ticks {
	t.Helper()
	rc, err := m.Logs(context.Background(), name, LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return &ticks{t: t, lines: bufio.NewScanner(rc), rc: rc}
}

// until reads lines until a complete tick line of at least n and
// returns the complete tick numbers read so far, in order.
func (tk *ticks) until(n uint32) []uint32 {
	tk.t.Helper()
	for {
		var got []uint32
		for _, l := range tk.seen {
			if mm := tickLine.FindStringSubmatch(l); mm != nil {
				v, _ := strconv.ParseUint(mm[1], 16, 32)
				got = append(got, uint32(v))
			}
		}
		if len(got) > 0 && got[len(got)-1] >= n {
			return got
		}
		if !tk.lines.Scan() {
			tk.t.Fatalf("the console ended before tick %d: %v; read %q", n, tk.lines.Err(), tk.seen)
		}
		tk.seen = append(tk.seen, tk.lines.Text())
	}
}

// snapshotCount reads the ticks guest's count from a snapshot's memory
// file: guest-physical 0x90000 is that offset of the file.
func snapshotCount(t *testing.T, m *Manager, name, snap string) uint32 {
	t.Helper()
	v, err := m.vm(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(v.SnapshotDir(snap), store.SnapshotMemoryFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], 0x90000); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint32(b[:])
}

// TestSnapshotLifecycle takes snapshots of a managed VM (running,
// paused, and with --stop), lists them, restores one in a new VMM
// (where the guest continues from the snapshot's tick, after the old
// run went well past it) and removes them, with the VM running and
// stopped; the disk's internal snapshots come and go with them.
func TestSnapshotLifecycle(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	vm, diskPath := ticksVM(t, "web")
	if _, err := m.Create(vm, ""); err != nil {
		t.Fatal(err)
	}
	var se *StateError
	if _, err := m.CreateSnapshot(ctx, "web", "s0", false); !errors.As(err, &se) || !strings.Contains(err.Error(), "it is created; a snapshot saves a running or paused VM") {
		t.Fatalf("snapshot of a VM never started: %v", err)
	}
	first, err := m.Start(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	out := followTicks(t, m, "web")
	out.until(5)
	s1, err := m.CreateSnapshot(ctx, "web", "s1", false)
	if err != nil {
		t.Fatal(err)
	}
	if s1.VMState != "running" || len(s1.Disks) != 1 || s1.Disks[0] != "disks[0]" || s1.Memory != 64<<20 ||
		s1.MemoryWritten <= 0 || s1.MemoryWritten >= int64(s1.Memory)/2 || s1.MemoryOnDisk > int64(s1.Memory)/2 {
		t.Fatalf("snapshot s1: %+v", s1)
	}
	var sx *SnapshotExistsError
	if _, err := m.CreateSnapshot(ctx, "web", "s1", false); !errors.As(err, &sx) {
		t.Fatalf("second snapshot s1: %v", err)
	}
	if _, err := m.CreateSnapshot(ctx, "web", "../etc", false); err == nil || !strings.Contains(err.Error(), "cannot name a snapshot") {
		t.Fatalf("snapshot named ../etc: %v", err)
	}
	k := snapshotCount(t, m, "web", "s1")
	out.until(k + 5) // the VM runs on after the snapshot
	if lst := qemutest.QemuImg(t, "snapshot", "-U", "-l", diskPath); !strings.Contains(lst, "s1") {
		t.Fatalf("the disk has no internal snapshot s1:\n%s", lst)
	}

	if _, err := m.RestoreSnapshot(ctx, "web", "s1", false); !errors.As(err, &se) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over a running VM: %v", err)
	}
	var ns *NoSnapshotError
	if _, err := m.RestoreSnapshot(ctx, "web", "nope", true); !errors.As(err, &ns) {
		t.Fatalf("restore of a missing snapshot: %v", err)
	}
	info, err := m.RestoreSnapshot(ctx, "web", "s1", true)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateRunning || info.PID == first.PID {
		t.Fatalf("restored: %+v (the first VMM was pid %d)", info, first.PID)
	}
	got := followTicks(t, m, "web").until(k + 3)
	if got[0] != k && got[0] != k+1 {
		t.Fatalf("the restored guest's first ticks %v: want it to go on from tick %d, where the snapshot was", got, k)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("restored ticks %v skip or repeat", got)
		}
	}

	// Paused: the snapshot says so, and the VM stays paused.
	if _, err := m.Pause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	s2, err := m.CreateSnapshot(ctx, "web", "s2", false)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(ctx, "web"); err != nil || st.State != "paused" || s2.VMState != "paused" {
		t.Fatalf("after a paused snapshot: %+v, %v; snapshot %+v", st, err, s2)
	}
	if _, err := m.Resume(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	// Removing a snapshot of a running VM goes through its VMM.
	if err := m.RemoveSnapshot(ctx, "web", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveSnapshot(ctx, "web", "s1"); !errors.As(err, &ns) {
		t.Fatalf("second removal of s1: %v", err)
	}
	// --stop: the snapshot, then the VM stops.
	s3, err := m.CreateSnapshot(ctx, "web", "s3", true)
	if err != nil {
		t.Fatal(err)
	}
	if in, err := m.Inspect("web"); err != nil || in.State != store.StateStopped {
		t.Fatalf("after --stop: %+v, %v", in, err)
	}
	if _, err := m.CreateSnapshot(ctx, "web", "s4", false); !errors.As(err, &se) || !strings.Contains(err.Error(), "it is stopped") {
		t.Fatalf("snapshot of a stopped VM: %v", err)
	}
	snaps, err := m.Snapshots("web")
	if err != nil || len(snaps) != 2 || snaps[0].Name != "s2" || snaps[1].Name != s3.Name {
		t.Fatalf("Snapshots = %+v, %v; want s2 and s3", snaps, err)
	}
	// Removing a snapshot of a stopped VM opens its disks.
	if err := m.RemoveSnapshot(ctx, "web", "s2"); err != nil {
		t.Fatal(err)
	}
	lst := qemutest.QemuImg(t, "snapshot", "-l", diskPath)
	if strings.Contains(lst, "s1") || strings.Contains(lst, "s2") || !strings.Contains(lst, "s3") {
		t.Fatalf("the disk's internal snapshots after removing s1 and s2:\n%s", lst)
	}
	qemutest.Check(t, diskPath)
	// The stopped VM restores.
	if info, err := m.RestoreSnapshot(ctx, "web", "s3", false); err != nil || info.State != store.StateRunning {
		t.Fatalf("restore of a stopped VM: %+v, %v", info, err)
	}
}

// TestSnapshotRestoreRefusals restores snapshots that cannot be: the
// VM's spec changed (another vCPU count), the memory file was cut short
// or is missing, the state file is corrupted, of a newer format, or from
// a CPU with features this host lacks. Each is refused with an error
// saying so, and the VM is left as it was: stopped, its disk's current
// contents (written after the snapshot) not rolled back.
func TestSnapshotRestoreRefusals(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	_, diskPath := snapshotWeb(t, m, 2, true)
	qemutest.QemuIO(t, diskPath, "write -P 0x5a 0 4k") // after the snapshot
	v, err := m.vm("web")
	if err != nil {
		t.Fatal(err)
	}
	dir := v.SnapshotDir("s1")
	statePath, memPath := filepath.Join(dir, store.SnapshotStateFile), filepath.Join(dir, store.SnapshotMemoryFile)
	goodState, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(v.Path(store.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	restoreFiles := func() {
		t.Helper()
		if err := os.WriteFile(statePath, goodState, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(v.Path(store.SpecFile), spec, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	memSize := func() int64 {
		fi, err := os.Stat(memPath)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	size := memSize()
	for _, tc := range []struct {
		name string
		edit func(t *testing.T)
		want string
	}{
		{"more vCPUs in the spec", func(t *testing.T) {
			more := regexp.MustCompile(`(?m)^cpus: 1$`).ReplaceAll(spec, []byte("cpus: 2"))
			if bytes.Equal(more, spec) {
				t.Fatalf("no 'cpus: 1' in the spec:\n%s", spec)
			}
			if err := os.WriteFile(v.Path(store.SpecFile), more, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "the snapshot has 1 vCPUs (1 saved), the machine 2"},
		{"memory file cut short", func(t *testing.T) {
			if err := os.Truncate(memPath, size/2); err != nil {
				t.Fatal(err)
			}
		}, "it is not this guest's memory, or it was cut short"},
		{"state file corrupted", func(t *testing.T) {
			b := append([]byte(nil), goodState...)
			b[len(b)-10] ^= 1
			if err := os.WriteFile(statePath, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "checksum does not match: the file is corrupt"},
		{"state file of a newer format", func(t *testing.T) {
			b := append([]byte(nil), goodState...)
			binary.LittleEndian.PutUint32(b[len(snapshot.Magic):], snapshot.Version+1)
			if err := os.WriteFile(statePath, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("format version %d (a newer format, written by paddock test); this paddock reads versions %d to %d", snapshot.Version+1, snapshot.MinVersion, snapshot.Version)},
		{"another CPU", func(t *testing.T) {
			f, err := snapshot.Decode(goodState)
			if err != nil {
				t.Fatal(err)
			}
			st, err := machine.DecodeState(f)
			if err != nil {
				t.Fatal(err)
			}
			for i := range st.VCPUs[0].CPUID {
				if e := &st.VCPUs[0].CPUID[i]; e.Function == 7 && e.Index == 0 {
					e.EBX = ^uint32(0)
				}
			}
			f2, err := st.File(f.Header)
			if err != nil {
				t.Fatal(err)
			}
			b, err := snapshot.Encode(f2)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(statePath, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "CPU features this host's KVM does not offer"},
		{"state file that does not decode", func(t *testing.T) {
			// Whole, its checksums right, as a VMM that wrote it could
			// make it: the restoring VMM refuses it, not the command.
			if err := os.WriteFile(statePath, undecodableState(t, goodState), 0o600); err != nil {
				t.Fatal(err)
			}
		}, `the snapshot's "vcpu/0" section: json: unknown field "Bogus"`},
		{"memory file missing", func(t *testing.T) {
			if err := os.Rename(memPath, memPath+".away"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Rename(memPath+".away", memPath) })
		}, "its memory file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restoreFiles()
			if err := os.Truncate(memPath, size); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			tc.edit(t)
			_, err := m.RestoreSnapshot(ctx, "web", "s1", false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v\nwant an error saying %q", err, tc.want)
			}
			if in, err := m.Inspect("web"); err != nil || in.State != store.StateStopped {
				t.Fatalf("after the refused restore: %+v, %v", in, err)
			}
			qemutest.QemuIO(t, diskPath, "read -P 0x5a 0 4k")
		})
	}
	restoreFiles()
	if err := os.Truncate(memPath, size); err != nil {
		t.Fatal(err)
	}
	running, err := m.RestoreSnapshot(ctx, "web", "s1", false)
	if err != nil {
		t.Fatalf("the repaired snapshot: %v", err)
	}

	// --force kills the VM that runs only for a snapshot that the VMM
	// would restore: the state file is decoded before.
	if err := os.WriteFile(statePath, undecodableState(t, goodState), 0o600); err != nil {
		t.Fatal(err)
	}
	want := `the snapshot's "vcpu/0" section: json: unknown field "Bogus"`
	if _, err := m.RestoreSnapshot(ctx, "web", "s1", true); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore --force of a state file that does not decode: %v\nwant an error saying %q", err, want)
	}
	if in, err := m.Inspect("web"); err != nil || in.State != store.StateRunning || in.PID != running.PID {
		t.Fatalf("after the refused restore --force: %+v, %v; want VMM %d running still", in, err, running.PID)
	}
}

// undecodableState returns the state file good with the section of
// vCPU 0 replaced by JSON of a field no vCPU state has, every checksum
// right.
func undecodableState(t *testing.T, good []byte) []byte {
	t.Helper()
	f, err := snapshot.Decode(good)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i := range f.Sections {
		if f.Sections[i].ID == "vcpu/0" {
			f.Sections[i].Data, found = []byte(`{"Bogus":1}`), true
		}
	}
	if !found {
		t.Fatal("the state file has no vcpu/0 section")
	}
	b, err := snapshot.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
