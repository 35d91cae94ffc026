package guest

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLibvirtClone: clone --host of a template made of a native VM makes
// libvirt VMs on that host: -n 2 --start makes and starts both; the
// template's base disk goes into the host's pool once, named by its
// SHA-256; each clone's disk is a qcow2 volume of its own backed by it,
// and nothing of a clone is made in its directory here. The guest reads
// what the source VM wrote before it became a template. rm of the
// clones leaves the base for the next clone, and nothing of theirs.
// With host auto, both clones go to the host picked for the first.
func TestLibvirtClone(t *testing.T) {
	ctx := context.Background()
	m, d := libvirtManager(t)
	libvirtTemplate(t, m)
	if _, err := m.Create(specFrom(t, m, "name: web\nfrom: tiny\nmemory: 256MiB\ncloud_init: false\n"), ""); err != nil {
		t.Fatal(err)
	}
	writeDisk(t, filepath.Join(m.Home(), "vms", "web", "disks", "root.qcow2"), vmData, 2<<20)
	tmpl, err := m.CreateTemplateFromVM(ctx, "web-tpl", "web", TemplateFromVMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	baseVol := "sha256-" + tmpl.Meta.Disks[0].SHA256

	names, err := m.Clone(ctx, "web-tpl", "b", CloneOptions{Numbered: true, Count: 2, Start: true, LibvirtHost: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "b-1 b-2" {
		t.Fatalf("clones %v", names)
	}
	pool := hostPool(t, d)
	if got := poolNames(t, d, baseVol); len(got) != 1 {
		t.Fatalf("the pool has %v for the template's base disk", got)
	}
	base, sum := poolVolume(t, pool, baseVol)
	if sum != tmpl.Meta.Disks[0].SHA256 {
		t.Fatalf("the base volume's content is %s, not the template's", sum)
	}
	for _, n := range names {
		in, err := m.Inspect(n)
		if err != nil {
			t.Fatal(err)
		}
		if in.Backend != "libvirt" || in.Host != "local" || in.State != "running" {
			t.Errorf("%s: backend %s, host %s, state %s; want a running libvirt VM on local", n, in.Backend, in.Host, in.State)
		}
		checkOverlayVolume(t, m, pool, in, base, baseSize)
	}
	// One guest is enough to read the template through: the other stops.
	if _, err := m.Kill(ctx, "b-2"); err != nil {
		t.Fatal(err)
	}
	waitHello(t, m, "b-1")
	out := typeLine(t, m, "b-1", "echo data=$(dd if=/dev/vda bs=1M skip=2 count=1 2>/dev/null | head -c "+
		strconv.Itoa(len(vmData))+" | od -An -tx1 | tr -d ' \\n') end-$((4*4))", "end-16")
	if want := hex.EncodeToString(vmData); !strings.Contains(out, "data="+want) {
		t.Errorf("b-1 reads %q at 2 MiB; want data=%s (the source VM's write)", tailOf(out), want)
	}
	for _, n := range names {
		if err := m.Remove(ctx, n, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := poolNames(t, d, baseVol); len(got) != 1 {
		t.Errorf("the base volume went with the clones: %v", got)
	}
	nothingLeft(t, m, d, "b-1")

	// host auto: the host auto placement picks for the first clone
	// takes them all (here the one host).
	names, err = m.Clone(ctx, "web-tpl", "a", CloneOptions{Numbered: true, Count: 2, LibvirtHost: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		in, err := m.Inspect(n)
		if err != nil {
			t.Fatal(err)
		}
		if in.Backend != "libvirt" || in.Host != "local" {
			t.Errorf("%s: backend %s, host %s; want a libvirt VM on local", n, in.Backend, in.Host)
		}
		if err := m.Remove(ctx, n, true); err != nil {
			t.Fatal(err)
		}
	}
}
