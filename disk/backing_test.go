package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/disk/qemutest"
)

// TestConfinedTo: the policy template and clone code use. A clone's
// overlay in the VM's directory over a template's base in the template's
// directory opens when both directories are allowed; a disk whose header
// a guest rewrote to name a host file is refused by Open, Convert, Commit
// and Rebase, each with one sentence naming the disk and the file.
func TestConfinedTo(t *testing.T) {
	root := qemutest.TempDir(t)
	tmpl := filepath.Join(root, "templates", "debian")
	vm := filepath.Join(root, "vms", "web", "disks")
	for _, d := range []string{tmpl, vm} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := filepath.Join(tmpl, "base.qcow2")
	if err := qcow2.Create(base, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(vm, "root.qcow2")
	policy := ConfinedTo(filepath.Join(root, "templates"), filepath.Join(root, "vms", "web"))
	if err := qcow2.Create(clone, qcow2.CreateOptions{BackingFile: "../../../templates/debian/base.qcow2", Backing: policy}); err != nil {
		t.Fatalf("clone overlay: %v", err)
	}
	img, err := Open(clone, Options{Format: FormatQcow2, Backing: policy})
	if err != nil {
		t.Fatalf("clone through the policy: %v", err)
	}
	img.Close()
	if _, err := Open(clone, Options{Format: FormatQcow2, Backing: ConfinedTo(vm)}); !errors.Is(err, qcow2.ErrBackingRefused) {
		t.Fatalf("template directory not allowed: %v", err)
	}

	// A guest-written disk naming a host file.
	hostile := filepath.Join(vm, "data.qcow2")
	if err := qcow2.Create(hostile, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	q, err := qcow2.Open(hostile, qcow2.Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetBacking("/etc/passwd", "raw"); err != nil {
		t.Fatal(err)
	}
	q.Close()
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, qcow2.ErrBackingRefused) || !strings.Contains(err.Error(), hostile) || !strings.Contains(err.Error(), "/etc/passwd") {
			t.Fatalf("%s: %v; want a refusal naming %s and /etc/passwd", what, err, hostile)
		}
	}
	_, err = Open(hostile, Options{Format: FormatQcow2, Backing: policy})
	refused("Open", err)
	refused("Convert", Convert(context.Background(), hostile, filepath.Join(root, "out.qcow2"), ConvertOptions{Backing: policy}))
	if _, err := os.Stat(filepath.Join(root, "out.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused convert left its destination behind")
	}
	refused("Commit", Commit(context.Background(), hostile, CommitOptions{Backing: policy}))
	refused("Rebase", Rebase(context.Background(), hostile, "", "", RebaseOptions{Backing: policy}))
	// Without a policy, as qemu-img, the name is followed.
	if img, err := Open(hostile, Options{Format: FormatQcow2}); err != nil {
		t.Fatalf("default policy: %v", err)
	} else {
		img.Close()
	}
}

// TestCreateRefusedKeepsTarget: Create over an existing image that is
// refused before anything is written (a backing file the policy refuses
// or that is missing, bad options) leaves the image as it was, as
// qemu-img create does; an accepted one still replaces it.
func TestCreateRefusedKeepsTarget(t *testing.T) {
	dir := qemutest.TempDir(t)
	p := filepath.Join(dir, "disk.qcow2")
	img, err := Create(p, CreateOptions{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("keep me"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    qcow2.CreateOptions
		want error
	}{
		{"refused backing file", qcow2.CreateOptions{BackingFile: "/etc/passwd", BackingFormat: "raw", Backing: ConfinedToImage(p)}, qcow2.ErrBackingRefused},
		{"missing backing file", qcow2.CreateOptions{BackingFile: "missing.qcow2", BackingFormat: "qcow2"}, os.ErrNotExist},
		{"bad cluster size", qcow2.CreateOptions{ClusterSize: 3000}, nil},
	} {
		_, err := Create(p, CreateOptions{Size: 1 << 20, Qcow2: tc.o})
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if after, _ := os.ReadFile(p); string(after) != string(before) {
			t.Errorf("%s: a refused create changed the image (%d bytes, was %d)", tc.name, len(after), len(before))
		}
	}
	qemutest.Check(t, p)
	// Accepted, it replaces the image: the old data is gone.
	img, err = Create(p, CreateOptions{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := img.ReadAt(buf, 4096); err != nil || string(buf) == "keep me" {
		t.Errorf("a replaced image still reads %q (%v)", buf, err)
	}
	img.Close()
}

// TestCommitWritesBaseJudged: Commit writes into the base it judged, under
// a writer's lock, even when the base's name is swapped for a link out of
// the allowed directory right after the judgement (a caller that judged,
// then opened by name, would write into the file outside): while the
// data is copied qemu-io can neither write nor read the file judged and
// the file outside is free; afterwards the file judged holds the chain's
// data and the file outside is unchanged.
func TestCommitWritesBaseJudged(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	root := qemutest.TempDir(t)
	dir := filepath.Join(root, "images")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(root, "secret.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", secret, "4M")
	qemutest.QemuIO(t, secret, "write -P 0x55 0 4M")
	secretBefore := qemutest.Raw(t, secret)
	base, judged := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "judged.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", base, "4M")
	qemutest.QemuIO(t, base, "write -P 0x11 0 4M")
	top := filepath.Join(dir, "top.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, "4M")
	qemutest.QemuIO(t, top, "write -P 0x22 100k 300k", "write -z 1M 128k", "write -P 0x33 3M 4k")
	want := qemutest.Raw(t, top)

	imagefile.OnReopen(t, qemutest.SwapOnce(t, base, judged, secret))
	progress := whileBusy(t, func() {
		qemutest.WantLocks(t, "qcow2", judged, false, false)
		qemutest.WantLocks(t, "qcow2", secret, true, true)
	})
	if err := Commit(context.Background(), top, CommitOptions{Progress: progress, Backing: ConfinedToImage(top)}); err != nil {
		t.Fatal(err)
	}
	qemutest.SameBytes(t, "the base judged after commit", qemutest.Raw(t, judged), want)
	qemutest.SameBytes(t, "the file outside", qemutest.Raw(t, secret), secretBefore)
	qemutest.Check(t, judged)
}

// TestRebaseComparesBackingJudged: a safe Rebase compares with the new
// backing file it judged, under a reader's lock, even when its name is
// swapped for another file right after the judgement: while it compares,
// qemu-io can read but not write the file judged and the other file is
// free, and afterwards the image over the file judged reads as it did
// before (compared with the other file, it would not).
func TestRebaseComparesBackingJudged(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	dir := qemutest.TempDir(t)
	old := filepath.Join(dir, "old.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", old, "4M")
	qemutest.QemuIO(t, old, "write -P 0x11 0 2M")
	nb, judged, decoy := filepath.Join(dir, "new.raw"), filepath.Join(dir, "judged.raw"), filepath.Join(dir, "decoy.raw")
	qemutest.WriteRawImage(t, nb, 4<<20, 5)
	qemutest.WriteRawImage(t, decoy, 4<<20, 6)
	top := filepath.Join(dir, "top.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", "old.qcow2", "-F", "qcow2", top, "4M")
	qemutest.QemuIO(t, top, "write -P 0x22 512k 64k")
	want := qemutest.Raw(t, top)

	imagefile.OnReopen(t, qemutest.SwapOnce(t, nb, judged, decoy))
	progress := whileBusy(t, func() {
		qemutest.WantLocks(t, "raw", judged, false, true)
		qemutest.WantLocks(t, "raw", decoy, true, true)
	})
	if err := Rebase(context.Background(), top, "new.raw", "", RebaseOptions{Progress: progress, Backing: ConfinedToImage(top)}); err != nil {
		t.Fatal(err)
	}
	// Put the file judged back under its name: the image over it reads
	// as before the rebase.
	if err := os.Rename(judged, nb); err != nil {
		t.Fatal(err)
	}
	qemutest.SameBytes(t, "the image over the backing file judged", qemutest.Raw(t, top), want)
	qemutest.Check(t, top)
}

// whileBusy returns a Progress callback that runs check at its first
// call, while the operation has its images open; the test fails if it
// never ran.
func whileBusy(t *testing.T, check func()) func(done, total int64) {
	ran := false
	t.Cleanup(func() {
		if !ran {
			t.Error("the operation reported no progress")
		}
	})
	return func(done, total int64) {
		if !ran {
			ran = true
			check()
		}
	}
}
