package images

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/paddock-vm/paddock/images/bzimage"
	"github.com/paddock-vm/paddock/images/cpio"
	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestPrepareAndInstallGuest(t *testing.T) {
	testenv.RequireTool(t, "apt-get", "apt")
	testenv.RequireTool(t, "dpkg-deb", "dpkg")
	testenv.RequireTool(t, "xz", "xz-utils")
	ctx := context.Background()
	g, err := PrepareGuest(ctx, GuestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := PrepareGuest(ctx, GuestOptions{})
	if err != nil || *again.Kernel != *g.Kernel || again.Initrd != g.Initrd || again.Vmlinux != g.Vmlinux {
		t.Fatalf("second PrepareGuest differs: %+v vs %+v (%v)", again, g, err)
	}
	dir := filepath.Join(t.TempDir(), "build", "guest")
	inst, err := g.Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{inst.Vmlinuz, inst.Vmlinux, inst.Initrd} {
		if filepath.Dir(p) != dir {
			t.Errorf("%s not installed in %s", p, dir)
		}
	}
	vmlinuz, _ := os.ReadFile(inst.Vmlinuz)
	orig, _ := os.ReadFile(g.Kernel.BzImage)
	if !bytes.Equal(vmlinuz, orig) {
		t.Error("installed vmlinuz differs from the Debian bzImage")
	}
	f, err := os.Open(inst.Vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := bzimage.PVHEntry(f); err != nil {
		t.Errorf("installed vmlinux: %v", err)
	}
	initrd, err := os.Open(inst.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer initrd.Close()
	entries, err := cpio.ReadAll(initrd, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, e := range entries {
		found[e.Name] = true
	}
	for _, want := range []string{"init", "bin/busybox", "bin/sh", "dev/console", "etc/paddock/scripts/facts.sh"} {
		if !found[want] {
			t.Errorf("initrd lacks %s", want)
		}
	}
}
