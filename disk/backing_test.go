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
