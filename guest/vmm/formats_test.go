package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// plantQcow2 overwrites the start of the raw image at path with the
// header of a qcow2 image whose backing file is a missing file, as a
// guest that got past the device's guard could: detected again, the
// disk would read as that qcow2 image and fail to open.
func plantQcow2(t *testing.T, path string) {
	t.Helper()
	dir := t.TempDir()
	hdr, backing := filepath.Join(dir, "planted.qcow2"), filepath.Join(dir, "guest-chosen")
	if err := disk.CreateRaw(backing, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(hdr, qcow2.CreateOptions{Size: 1 << 20, BackingFile: backing, BackingFormat: disk.FormatRaw}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(backing); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := disk.Detect(path); err != nil || got != disk.FormatQcow2 {
		t.Fatalf("the planted header reads as %q, %v", got, err)
	}
}

// rawDisk creates a 1 MiB raw image in dir.
func rawDisk(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := disk.CreateRaw(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPinFormats(t *testing.T) {
	dir := t.TempDir()
	raw := rawDisk(t, dir, "raw.img")
	q := filepath.Join(dir, "disk.qcow2")
	if err := qcow2.Create(q, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	explicit := rawDisk(t, dir, "explicit.img")
	vm := &configs.VM{Name: "web", Disks: []configs.Disk{{Path: raw}, {Path: q}, {Path: explicit, Format: disk.FormatRaw}}}

	s, err := store.Open(filepath.Join(dir, "home"))
	if err != nil {
		t.Fatal(err)
	}
	formats, err := DetectFormats(vm)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.DiskFormat{{Index: 0, Path: raw, Format: "raw"}, {Index: 1, Path: q, Format: "qcow2"}}
	if !equalFormats(formats, want) {
		t.Fatalf("DetectFormats = %+v, want %+v", formats, want)
	}
	v, err := s.Create("web", []byte("name: web\n"), store.Record{}, formats...)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := PinFormats(v, vm)
	if err != nil || strings.Join(pins, ",") != "raw,qcow2," {
		t.Fatalf("PinFormats = %q, %v; want raw, qcow2 and none for the explicit format", pins, err)
	}

	// The format changed since: refused, naming the disk and the way out.
	plantQcow2(t, raw)
	_, err = PinFormats(v, vm)
	var fe *FormatChangedError
	if !errors.As(err, &fe) {
		t.Fatalf("PinFormats after the raw disk got a qcow2 header: %v", err)
	}
	wantMsg := "disks[0]: " + raw + " was a raw image when VM web was created and reads as qcow2 now, and paddock does not let a disk's contents change its format; if you converted it yourself, set disks[0].format: qcow2 in the VM's YAML and create the VM again (paddock rm web, then paddock create)"
	if err.Error() != wantMsg {
		t.Errorf("error:\n %s\nwant:\n %s", err, wantMsg)
	}
	// An explicit format is the user's word: no check.
	plantQcow2(t, explicit)
	vm.Disks[0].Format = disk.FormatRaw
	if pins, err := PinFormats(v, vm); err != nil || strings.Join(pins, ",") != ",qcow2," {
		t.Errorf("with disks[0].format set: %q, %v", pins, err)
	}

	// A VM created before formats were recorded: the first start
	// records them.
	vm.Disks[0] = configs.Disk{Path: rawDisk(t, dir, "fresh.img")}
	if err := os.Remove(v.Path(store.FormatsFile)); err != nil {
		t.Fatal(err)
	}
	if pins, err := PinFormats(v, vm); err != nil || strings.Join(pins, ",") != "raw,qcow2," {
		t.Fatalf("first pin of a legacy VM: %q, %v", pins, err)
	}
	recorded, err := v.ReadFormats()
	want = []store.DiskFormat{{Index: 0, Path: vm.Disks[0].Path, Format: "raw"}, {Index: 1, Path: q, Format: "qcow2"}}
	if err != nil || !equalFormats(recorded, want) {
		t.Errorf("recorded %+v, %v; want %+v", recorded, err, want)
	}
	plantQcow2(t, vm.Disks[0].Path)
	if _, err := PinFormats(v, vm); !errors.As(err, &fe) {
		t.Errorf("after recording at first start, a changed format: %v", err)
	}

	// A damaged formats.json is an error, never a reason to detect again.
	if err := os.WriteFile(v.Path(store.FormatsFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := PinFormats(v, vm); err == nil || !strings.Contains(err.Error(), "remove it to detect the disks' formats again") {
		t.Errorf("damaged formats.json: %v", err)
	}
}

func equalFormats(a, b []store.DiskFormat) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPinnedAcrossReboots checks that a session opens a pinned disk in its
// pinned format on every boot: a raw disk that gained a qcow2 header
// during one boot is raw again on the next, instead of a qcow2 image
// whose backing file (here a missing one) the guest chose.
func TestPinnedAcrossReboots(t *testing.T) {
	testguest.RequireKVM(t)
	raw := rawDisk(t, t.TempDir(), "raw.img")
	vm := &configs.VM{Name: "s", Kernel: testguest.Build(t, "reset"), Memory: 64 * configs.MiB,
		OnReboot: configs.RebootRestart, Disks: []configs.Disk{{Path: raw}}}
	vm.FillDefaults()
	if err := vm.ValidateStructure(); err != nil {
		t.Fatal(err)
	}
	s := NewSession(vm, Options{
		Handles: openHandles(t, vm, OpenOptions{Formats: []string{disk.FormatRaw}}),
		Backoff: Backoff{First: time.Millisecond, Max: time.Millisecond, Window: time.Hour, Limit: 2},
		OnBoot: func(boot int, _ *machine.Machine) {
			if boot == 0 {
				plantQcow2(t, raw)
			}
		},
	})
	if err := s.Boot(); err != nil {
		t.Fatal(err)
	}
	r := s.Run(context.Background())
	if r.Boots != 3 || strings.Contains(r.Detail, "restart failed") {
		t.Errorf("result %+v: want 3 boots, the disk opened as raw after the planted header", r)
	}
}
