package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
