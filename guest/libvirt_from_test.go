package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/paddock-vm/paddock/configs"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
)

// libvirtFromVM returns the validated spec of a libvirt VM from the
// template called from, with extra YAML lines.
func libvirtFromVM(t *testing.T, m *Manager, name, from, extra string) *configs.VM {
	t.Helper()
	return specFrom(t, m, fmt.Sprintf("name: %s\nfrom: %s\nmemory: 256MiB\nbackend: libvirt\n%s", name, from, extra))
}

// poolVolume describes the named volume of the daemon's pool and returns
// its content's SHA-256.
func poolVolume(t *testing.T, pool *lv.Pool, name string) (*libvirtxml.StorageVolume, string) {
	t.Helper()
	desc, err := pool.Describe(name)
	if err != nil {
		t.Fatal(err)
	}
	var data bytes.Buffer
	if err := pool.Download(name, &data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data.Bytes())
	return desc, hex.EncodeToString(sum[:])
}

// TestLibvirtFromTemplate makes libvirt VMs from a template (the Debian
// kernel and the hello initrd with virtio disks, and a qcow2 base disk
// with a pattern): the template's kernel, initrd and base disk go into
// the host's pool once, named by the SHA-256s template.json records;
// each VM's root disk is a qcow2 volume of its own on the base volume,
// of root_size or the base's size; the guest boots from the template,
// reads the base's pattern through its overlay and writes its overlay,
// never the base. A base changed on the host is never used: refused
// while a VM's overlay is on it, uploaded again once none is. rm removes
// a VM's overlay and seed; the base stays for the next VM.
func TestLibvirtFromTemplate(t *testing.T) {
	ctx := context.Background()
	m, d := libvirtManager(t)
	tmpl, pattern := libvirtTemplate(t, m)
	baseVol := "sha256-" + tmpl.Meta.Disks[0].SHA256

	a, err := m.CreateContext(ctx, libvirtFromVM(t, m, "a", "tiny", "root_size: 128MiB\ncloud_init: true\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.CreateContext(ctx, libvirtFromVM(t, m, "b", "tiny", "cloud_init: false\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	pool := hostPool(t, d)
	// Uploaded once, under the names template.json's SHA-256s give.
	for _, f := range tmpl.Meta.Files() {
		if got := poolNames(t, d, "sha256-"+f.SHA256); len(got) != 1 {
			t.Errorf("the pool has %v for the template's %s", got, f.File)
		}
	}
	base, baseSum := poolVolume(t, pool, baseVol)
	if baseSum != tmpl.Meta.Disks[0].SHA256 {
		t.Fatalf("the base volume's content is %s, not the template's", baseSum)
	}
	checkOverlayVolume(t, m, pool, a, base, 128<<20)
	checkOverlayVolume(t, m, pool, b, base, baseSize)
	if got := poolNames(t, d, "vm-"+a.UUID+".seed.iso"); len(got) != 1 {
		t.Errorf("a's seed volume: %v", got)
	}

	// The guest boots from the template and sees its overlay: the base's
	// pattern, root_size large; it writes the overlay.
	if _, err := m.Start(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitHello(t, m, "a")
	want := hex.EncodeToString(pattern[:8])
	out := typeLine(t, m, "a", "echo head=$(head -c 8 /dev/vda | od -An -tx1 | tr -d ' \\n') sectors=$(cat /sys/block/vda/size) end-$((4*4))", "end-16")
	if !strings.Contains(out, "head="+want+" sectors=262144") {
		t.Errorf("the guest's root disk: %q; want head=%s sectors=262144", tailOf(out), want)
	}
	typeLine(t, m, "a", "echo overlay | dd of=/dev/vda conv=fsync 2>/dev/null; echo wrote-$((2+3))", "wrote-5")
	if _, err := m.Kill(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, sum := poolVolume(t, pool, baseVol); sum != tmpl.Meta.Disks[0].SHA256 {
		t.Errorf("the base volume changed: %s", sum)
	}

	// rm takes a VM's overlay and seed, never the base.
	if err := m.Remove(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if left := poolNames(t, d, "vm-"+a.UUID); len(left) != 0 {
		t.Errorf("a's volumes left: %v", left)
	}
	if got := poolNames(t, d, baseVol); len(got) != 1 {
		t.Errorf("the base volume is gone after rm of one of its VMs")
	}

	// A base changed on the host: refused while b's overlay is on it.
	spoilVolume(t, d, base.Target.Path)
	_, err = m.CreateContext(ctx, libvirtFromVM(t, m, "c", "tiny", "cloud_init: false\n"), "")
	var me *lv.ContentMismatchError
	if !errors.As(err, &me) || me.Volume != baseVol || len(me.Users) != 1 || me.Users[0] != "vm-"+b.UUID+".disk0" {
		t.Fatalf("create on a changed base = %v", err)
	}
	if names, _ := m.Names(); len(names) != 1 {
		t.Errorf("VMs after the refused create: %v", names)
	}
	// Once no VM is on it, it is uploaded again.
	if err := m.Remove(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateContext(ctx, libvirtFromVM(t, m, "c", "tiny", "cloud_init: false\n"), ""); err != nil {
		t.Fatal(err)
	}
	if _, sum := poolVolume(t, pool, baseVol); sum != tmpl.Meta.Disks[0].SHA256 {
		t.Errorf("the changed base was not uploaded again: %s", sum)
	}
	if err := m.Remove(ctx, "c", false); err != nil {
		t.Fatal(err)
	}
	nothingLeft(t, m, d, "c")
}

// spoilVolume changes a byte of the daemon's volume at path (a path in
// its pool, as the daemon sees it), behind libvirt's back.
func spoilVolume(t *testing.T, d *libvirttest.Daemon, path string) {
	t.Helper()
	rest, ok := strings.CutPrefix(path, "/var/lib/libvirt/")
	if !ok {
		t.Fatalf("%s is not in the daemon's /var/lib/libvirt", path)
	}
	f, err := os.OpenFile(filepath.Join(d.Dir, "lib", rest), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("SPOILED"), 1<<20+4096); err != nil {
		t.Fatal(err)
	}
}
