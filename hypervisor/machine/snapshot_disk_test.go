package machine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// qcow2Image creates an empty qcow2 image of size bytes.
func qcow2Image(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	img, err := disk.Create(p, disk.CreateOptions{Format: disk.FormatQcow2, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeDisk writes s at offset 0 of the machine's disk i, through the
// image it holds open (as the guest's writes would arrive).
func writeDisk(t *testing.T, m *Machine, i int, s string) {
	t.Helper()
	if _, err := m.virtio.funcs[i].image.WriteAt([]byte(s), 0); err != nil {
		t.Fatal(err)
	}
}

// readDisk reads n bytes at offset 0 of the machine's disk i.
func readDisk(t *testing.T, m *Machine, i, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := m.virtio.funcs[i].image.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// heldSave builds a machine of cfg running the cpl3count guest, holds it
// and saves it with opts into a new directory's memory file. It returns
// the machine (still open: the caller closes it), the save's result and
// the directory.
func heldSave(t *testing.T, cfg Config, opts SaveOptions) (*Machine, SaveResult, string) {
	t.Helper()
	m, err := New(cfg, BootConfig{Kernel: guestKernel(t, "cpl3count", nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Hold(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	dir := t.TempDir()
	mem, err := os.Create(filepath.Join(dir, "memory"))
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	opts.Memory = mem
	res, err := m.Save(opts)
	mem.Close()
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, res, dir
}

// TestSaveRestoreDisk takes a snapshot of a machine with a writable
// qcow2 disk and a read-only one: the writable disk gets an internal
// snapshot of the same instant (which qemu-img lists, with the image
// clean), later writes are rolled back by the restore, and restoring the
// same snapshot twice gives two independent runs from the same disk
// contents.
func TestSaveRestoreDisk(t *testing.T) {
	requireKVM(t)
	path := qcow2Image(t, 1<<20)
	open := func() Disk { return openDisk(t, path, disk.Options{Format: disk.FormatQcow2}) }
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20, Disks: []Disk{
		open(),
		openDisk(t, rawImage(t, 1<<16), disk.Options{Format: disk.FormatRaw, ReadOnly: true}),
	}}
	// What the disk holds at the snapshot, written before the guest runs.
	if _, err := cfg.Disks[0].Image.WriteAt([]byte("at the snapshot"), 0); err != nil {
		t.Fatal(err)
	}
	m, res, dir := heldSave(t, cfg, SaveOptions{DiskSnapshot: "snap1"})
	if got := res.State.Virtio[0].Snapshot; got != "snap1" {
		t.Fatalf("disk 0's snapshot recorded as %q", got)
	}
	if got := res.State.Virtio[1].Snapshot; got != "" {
		t.Fatalf("the read-only disk got a snapshot %q", got)
	}
	// A second snapshot of the same name is refused before anything.
	if _, err := m.Save(SaveOptions{DiskSnapshot: "snap1"}); err == nil || !strings.Contains(err.Error(), `already has an internal snapshot named "snap1"`) {
		t.Fatalf("a second snap1: %v", err)
	}
	writeDisk(t, m, 0, "after the snapshot")
	m.Close()
	// The machine left the image open and locked; qemu-img needs it
	// closed.
	if err := cfg.Disks[0].Image.Close(); err != nil {
		t.Fatal(err)
	}

	qemutest.Check(t, path)
	if out := qemutest.QemuImg(t, "snapshot", "-l", path); !strings.Contains(out, "snap1") {
		t.Fatalf("qemu-img snapshot -l does not list snap1:\n%s", out)
	}
	for run := 0; run < 2; run++ {
		cfg.Disks[0] = open()
		m2 := restoreFrom(t, cfg, res.State, dir)
		if got := readDisk(t, m2, 0, 15); got != "at the snapshot" {
			t.Fatalf("restore %d: the disk reads %q, want what it held at the snapshot", run, got)
		}
		writeDisk(t, m2, 0, "run "+string(rune('0'+run)))
		m2.Close()
		cfg.Disks[0].Image.Close()
	}
	qemutest.Check(t, path)
}

// TestSaveRefusesRawDisk: a writable raw disk cannot keep its contents
// of the snapshot's instant, so a save that asks for disk snapshots is
// refused, naming the disk, before it writes anything.
func TestSaveRefusesRawDisk(t *testing.T) {
	requireKVM(t)
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20, Disks: []Disk{openDisk(t, rawImage(t, 1<<16), disk.Options{Format: disk.FormatRaw})}}
	m, err := New(cfg, BootConfig{Kernel: guestKernel(t, "cpl3count", nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Hold(); err != nil {
		t.Fatal(err)
	}
	mem, err := os.Create(filepath.Join(t.TempDir(), "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	_, err = m.Save(SaveOptions{Memory: mem, DiskSnapshot: "s"})
	if err == nil || !strings.Contains(err.Error(), "disks[0] ("+cfg.Disks[0].Name+") is a raw image") {
		t.Fatalf("Save with a writable raw disk: %v", err)
	}
	if fi, _ := mem.Stat(); fi.Size() != 0 {
		t.Fatalf("the refused save wrote %d bytes of memory", fi.Size())
	}
}

// TestRestoreRefuses restores snapshots that do not fit: a machine with
// another vCPU count or memory size, a memory file that is missing its
// end, a CPU with features the host lacks, a disk without the snapshot's
// internal snapshot. Each is refused with an error saying what differs,
// the disk keeps what it held, and the memory file and the VM the
// machine was to take over (Config.VM) are closed.
func TestRestoreRefuses(t *testing.T) {
	requireKVM(t)
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20, Disks: []Disk{openDisk(t, qcow2Image(t, 1<<20), disk.Options{Format: disk.FormatQcow2})}}
	m, res, dir := heldSave(t, cfg, SaveOptions{DiskSnapshot: "snap1"})
	writeDisk(t, m, 0, "the disk now")
	m.Close()

	short := filepath.Join(t.TempDir(), "memory")
	if err := os.WriteFile(short, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	other := *res.State
	other.VCPUs = append([]VCPUState(nil), res.State.VCPUs...)
	other.VCPUs[0].CPUID = append([]kvm.CPUIDEntry(nil), other.VCPUs[0].CPUID...)
	for i := range other.VCPUs[0].CPUID {
		if e := &other.VCPUs[0].CPUID[i]; e.Function == 7 && e.Index == 0 {
			e.EBX = ^uint32(0) // every leaf-7 feature there is
		}
	}
	// The same, from another CPU vendor: "CyrixInstead" in leaf 0.
	vendor := *res.State
	vendor.VCPUs = append([]VCPUState(nil), res.State.VCPUs...)
	vendor.VCPUs[0].CPUID = append([]kvm.CPUIDEntry(nil), vendor.VCPUs[0].CPUID...)
	for i := range vendor.VCPUs[0].CPUID {
		if e := &vendor.VCPUs[0].CPUID[i]; e.Function == 0 {
			e.EBX, e.EDX, e.ECX = 0x69727943, 0x736e4978, 0x64616574
		}
	}
	noSnap := *res.State
	noSnap.Virtio = append([]VirtioState(nil), res.State.Virtio...)
	noSnap.Virtio[0].Snapshot = "never-taken"
	twoCPUs, bigger := cfg, cfg
	twoCPUs.CPUs, bigger.Memory = 2, 128<<20

	for _, tc := range []struct {
		name   string
		cfg    Config
		st     *State
		memory string
		want   string
	}{
		{"vCPU count", twoCPUs, res.State, "", "the snapshot has 1 vCPUs (1 saved), the machine 2"},
		{"memory size", bigger, res.State, "", "the snapshot has 64 MiB of memory, the machine 128 MiB"},
		{"short memory file", cfg, res.State, short, "holds 4096 bytes, the guest has 64 MiB of RAM"},
		{"CPU features", cfg, &other, "", "CPU features this host's KVM does not offer (CPUID leaf 0x7.0 EBX"},
		{"CPU vendor", cfg, &vendor, "", "the snapshot was taken on a CyrixInstead CPU, this host has a "},
		{"no such disk snapshot", cfg, &noSnap, "", `disks[0] (` + cfg.Disks[0].Name + `) has no internal snapshot "never-taken"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.memory
			if path == "" {
				path = filepath.Join(dir, "memory")
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			c := tc.cfg
			if c.VM, err = c.KVM.CreateVMAhead().Take(); err != nil {
				t.Fatal(err)
			}
			m, err := Restore(c, tc.st, f)
			if err == nil {
				m.Close()
				t.Fatal("restored")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant it to say %q", err, tc.want)
			}
			// The memory file and the VM created ahead were closed by
			// Restore.
			if err := f.Close(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Restore left the memory file open")
			}
			if c.VM.Fd() >= 0 {
				t.Errorf("Restore left the VM created ahead (Config.VM) open")
			}
			// The disk is as it was: not reverted to snap1.
			b := make([]byte, 12)
			if _, err := cfg.Disks[0].Image.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			if string(b) != "the disk now" {
				t.Fatalf("the refused restore changed the disk: it reads %q", b)
			}
		})
	}
}

// TestRestoreHostileState restores states edited the way a hostile or
// corrupted state file could (every one decodes): each restore fails
// with an error, and nothing panics.
func TestRestoreHostileState(t *testing.T) {
	requireKVM(t)
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20, RNG: true}
	m, res, dir := heldSave(t, cfg, SaveOptions{})
	m.Close()
	good := res.State
	for _, tc := range []struct {
		name string
		edit func(st *State)
	}{
		{"short LAPIC", func(st *State) { st.VCPUs[0].LAPIC = st.VCPUs[0].LAPIC[:10] }},
		{"bogus MSR", func(st *State) { st.VCPUs[0].MSRs = append(st.VCPUs[0].MSRs, kvm.MSREntry{Index: 0xdead0000, Data: 1}) }},
		{"bogus control registers", func(st *State) { st.VCPUs[0].Sregs.CR4 = ^uint64(0) }},
		{"bogus MP state", func(st *State) { st.VCPUs[0].MP = 99 }},
		{"serial FIFO overflow", func(st *State) { st.Serial.RX = make([]byte, 1000) }},
		{"PCI config cut short", func(st *State) { st.PCI.Bridge.Data = st.PCI.Bridge.Data[:10] }},
		{"virtio queue count", func(st *State) { st.Virtio[0].Transport.Queues = nil }},
		{"virtio queue outside RAM", func(st *State) {
			tr := &st.Virtio[0].Transport
			tr.Queues = append([]virtio.QueueState(nil), tr.Queues...)
			tr.Queues[0].Size, tr.Queues[0].Ready, tr.Queues[0].Desc = 8, true, 1<<40
			tr.Status = 15
			tr.DriverFeatures = 1 << 32
		}},
		{"virtio MSI-X table", func(st *State) { st.Virtio[0].Transport.MSIX = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := cloneState(t, good)
			tc.edit(st)
			f, err := os.Open(filepath.Join(dir, "memory"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Restore(cfg, st, f)
			if err == nil {
				m.Close()
				t.Fatal("restored")
			}
			t.Log(err)
		})
	}
}

// cloneState returns a deep copy of st, through its snapshot encoding.
func cloneState(t *testing.T, st *State) *State {
	t.Helper()
	f, err := st.File(snapshot.Header{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeState(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
