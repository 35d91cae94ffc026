package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/tenant"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
	"github.com/paddock-vm/paddock/netdev"
	"golang.org/x/sys/unix"
)

// vmData is what the source VM wrote to its disk, past the template's
// pattern, before it became a template.
var vmData = []byte("written by VM web before it became a template")

// vmTemplate makes the template tiny (the counter guest), the VM web
// from it with extra in its YAML, writes vmData into web's overlay at
// 2 MiB (as its guest would) and makes the template web-tpl of web. It
// returns the manager, the new template and web's overlay's SHA-256.
func vmTemplate(t *testing.T, cloudInit bool, extra string) (*Manager, *store.Template, string) {
	t.Helper()
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	m := testManager(t)
	testTemplate(t, m, "tiny", testguest.Build(t, "counter"), "")
	vm := fromVM(t, m, "web", "tiny", extra)
	vm.CloudInit = cloudInit
	if _, err := m.Create(vm, ""); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(m.Home(), "vms", "web", "disks", "root.qcow2")
	writeDisk(t, overlay, vmData, 2<<20)
	sum := sha(t, overlay)
	tmpl, err := m.CreateTemplateFromVM(context.Background(), "web-tpl", "web", TemplateFromVMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m, tmpl, sum
}

// writeDisk writes p at off into the qcow2 image at path (its backing
// chain open read-only, wherever it is).
func writeDisk(t testing.TB, path string, p []byte, off int64) {
	t.Helper()
	img, err := disk.Open(path, disk.Options{Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
}

// readDisk reads n bytes at off from the image at path.
func readDisk(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	img, err := disk.Open(path, disk.Options{ReadOnly: true, ForceShare: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	p := make([]byte, n)
	if _, err := img.ReadAt(p, off); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTemplateFromVM: a stopped VM's writable disk becomes the
// template's read-only base, its backing chain flattened (no backing
// file; qemu-img check clean), holding the VM's own writes; the kernel,
// initrd and command line are the VM's; spec.yaml has no name, MAC,
// or writable disk; the VM itself is unchanged, and the
// template records where it came from.
func TestTemplateFromVM(t *testing.T) {
	m, tmpl, sum := vmTemplate(t, false, "nics: [{bridge: "+hostLink(t, "bridge")+", mac: '52:54:00:12:34:56'}]\n")
	if tmpl.Meta.Origin.Kind != store.OriginVM || tmpl.Meta.Origin.VM != "web" || tmpl.Meta.Cmdline != "root=UUID=x console=ttyS0" || len(tmpl.Meta.Disks) != 1 {
		t.Errorf("metadata: %+v", tmpl.Meta)
	}
	base := tmpl.Path(tmpl.Meta.Disks[0].File)
	if fi, err := os.Stat(base); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("the base disk's mode: %v, %v; want 0400", fi, err)
	}
	var qi struct {
		BackingFile string `json:"backing-filename"`
		VirtualSize int64  `json:"virtual-size"`
	}
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", base).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &qi); err != nil {
		t.Fatal(err)
	}
	if qi.BackingFile != "" || qi.VirtualSize != baseSize {
		t.Errorf("qemu-img info of the base: %+v; want no backing file and %d bytes", qi, baseSize)
	}
	if out, err := exec.Command("qemu-img", "check", "-U", base).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check of the base: %v\n%s", err, out)
	}
	if got := readDisk(t, base, 2<<20, len(vmData)); !bytes.Equal(got, vmData) {
		t.Errorf("the base does not hold the VM's writes: %q", got)
	}
	if _, err := tmpl.Verify(nil); err != nil {
		t.Errorf("the new template does not verify: %v", err)
	}
	spec, err := os.ReadFile(tmpl.Path(store.TemplateSpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(spec), "\ncloud_init: false\n") {
		t.Errorf("spec.yaml of a VM without cloud_init does not keep it off (its clones would get a seed):\n%s", spec)
	}
	for _, leak := range []string{"name: web", "52:54:00:12:34:56", "root.qcow2", "vmlinuz"} {
		if strings.Contains(string(spec), leak) {
			t.Errorf("spec.yaml holds %q, part of the VM's identity or the template's files:\n%s", leak, spec)
		}
	}
	if sha(t, filepath.Join(m.Home(), "vms", "web", "disks", "root.qcow2")) != sum {
		t.Error("making the template changed the VM's disk")
	}
	users, err := m.TemplateUsers("web-tpl")
	if err != nil || len(users) != 0 {
		t.Errorf("the source VM depends on the template: %v, %v", users, err)
	}
}

// TestCloneCold: -n 3 makes web-1 .. web-3 from a VM-made template, each
// with its own UUID, MAC and seed (instance-id = its UUID, hostname its
// name), an overlay on the template's base that reads the VM's data and
// takes the clone's own writes; clones are ordinary VMs that boot on
// KVM, template rm refuses naming them, and rm of a clone removes only
// its overlay.
func TestCloneCold(t *testing.T) {
	m, tmpl, _ := vmTemplate(t, true, "nics: [{bridge: "+hostLink(t, "bridge")+"}]\n")
	base := tmpl.Path(tmpl.Meta.Disks[0].File)
	baseSum := sha(t, base)
	names, err := m.Clone(context.Background(), "web-tpl", "c", CloneOptions{Numbered: true, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "c-1 c-2 c-3" {
		t.Fatalf("clones %v", names)
	}
	uuids, macs := map[string]bool{}, map[netdev.MAC]bool{}
	for _, n := range names {
		v, err := m.store.VM(n)
		if err != nil {
			t.Fatal(err)
		}
		id, ok, err := v.ReadIdentity()
		if err != nil || !ok {
			t.Fatalf("%s: identity %v %v", n, ok, err)
		}
		uuids[id.UUID.String()] = true
		spec, err := m.Spec(n)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Kernel != tmpl.Path("vmlinuz") || !spec.CloudInit || len(spec.Disks) != 1 {
			t.Errorf("%s: spec kernel %q cloud_init %v disks %+v", n, spec.Kernel, spec.CloudInit, spec.Disks)
		}
		got, err := vmm.NICMACs(spec)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: MACs %v %v", n, got, err)
		}
		macs[got[0]] = true
		seed, err := seedImage(spec, id.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(seed, []byte("instance-id: "+id.UUID.String())) || !bytes.Contains(seed, []byte("hostname: "+n)) {
			t.Errorf("%s: the seed does not carry its UUID and name", n)
		}
		overlay := spec.Disks[0].Path
		if got := readDisk(t, overlay, 2<<20, len(vmData)); !bytes.Equal(got, vmData) {
			t.Errorf("%s: the overlay does not read the template's data: %q", n, got)
		}
		writeDisk(t, overlay, []byte(n), 3<<20)
	}
	if len(uuids) != 3 || len(macs) != 3 {
		t.Errorf("the clones share identities: UUIDs %v MACs %v", uuids, macs)
	}
	for _, n := range names {
		spec, _ := m.Spec(n)
		if got := readDisk(t, spec.Disks[0].Path, 3<<20, len(n)); string(got) != n {
			t.Errorf("%s reads %q, not its own write", n, got)
		}
	}
	if sha(t, base) != baseSum {
		t.Error("the clones' writes changed the template's base")
	}
	var iu *TemplateInUseError
	if err := m.RemoveTemplate("web-tpl"); !errors.As(err, &iu) || strings.Join(iu.VMs, " ") != "c-1 c-2 c-3" {
		t.Errorf("template rm with clones: %v", err)
	}
	if err := m.Remove(context.Background(), "c-2", false); err != nil {
		t.Fatal(err)
	}
	if users, _ := m.TemplateUsers("web-tpl"); strings.Join(users, " ") != "c-1 c-3" {
		t.Errorf("dependants after rm c-2: %v", users)
	}
	if _, err := m.Template("web-tpl"); err != nil || sha(t, base) != baseSum {
		t.Errorf("rm of a clone touched its template: %v", err)
	}
}

// TestCloneTenantLockFree: Clone lets go of the tenant's lock once all
// its clones are in the store: while their backends set them up (a
// libvirt host's uploads take minutes), another command can take it;
// and every clone is in the store before the first is set up.
func TestCloneTenantLockFree(t *testing.T) {
	m, _, _ := vmTemplate(t, true, "")
	ts, err := tenant.Open(m.Home())
	if err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(ts.Dir(tenant.Default), tenant.LockFile)
	var mu sync.Mutex
	free := map[string]error{}
	testHookCloneSetUp = func(name string) {
		// The clones are set up in parallel: one probe at a time, or
		// one hook's probe would find the lock another hook holds.
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
		if err == nil {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			f.Close() // releases the lock if it was taken
		}
		if err == nil {
			for _, n := range []string{"k-1", "k-2", "k-3"} {
				if _, serr := m.store.VM(n); serr != nil {
					err = fmt.Errorf("%s is not in the store yet: %w", n, serr)
				}
			}
		}
		free[name] = err
	}
	defer func() { testHookCloneSetUp = nil }()
	if _, err := m.Clone(context.Background(), "web-tpl", "k", CloneOptions{Numbered: true, Count: 3}); err != nil {
		t.Fatal(err)
	}
	if len(free) != 3 {
		t.Fatalf("set-ups seen: %v, want one for each of the 3 clones", free)
	}
	for name, err := range free {
		if err != nil {
			t.Errorf("while %s was set up: %v", name, err)
		}
	}
}

// TestCloneBuilt: a built template (paddock template build), which has
// no VM spec, clones as a two-line YAML file with from: would make VMs:
// its kernel, an overlay on its root disk, paddock's defaults and one
// NIC on the managed network default, each clone with its own MAC.
func TestCloneBuilt(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	m := testManager(t)
	tmpl, _ := testTemplate(t, m, "tiny", testguest.Build(t, "counter"), "")
	names, err := m.Clone(context.Background(), "tiny", "b", CloneOptions{Numbered: true, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	macs := map[netdev.MAC]bool{}
	for _, n := range names {
		spec, err := m.Spec(n)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Name != n || spec.Kernel != tmpl.Path("vmlinuz") || spec.Memory != configs.DefaultMemory || spec.CPUs != configs.DefaultCPUs || spec.Tenant != configs.DefaultTenant || !spec.CloudInit {
			t.Errorf("%s: spec name %q kernel %q memory %d cpus %d tenant %q", n, spec.Name, spec.Kernel, spec.Memory, spec.CPUs, spec.Tenant)
		}
		if len(spec.NICs) != 1 || spec.NICs[0].Network != "default" {
			t.Errorf("%s: NICs %+v, want one on network default", n, spec.NICs)
		}
		if len(spec.Disks) != 1 || filepath.Dir(spec.Disks[0].Path) != filepath.Join(m.Home(), "vms", n, "disks") {
			t.Errorf("%s: disks %+v, want its own overlay", n, spec.Disks)
		}
		got, err := vmm.NICMACs(spec)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: MACs %v %v", n, got, err)
		}
		macs[got[0]] = true
	}
	if len(macs) != 2 {
		t.Errorf("the clones share a MAC: %v", macs)
	}
	if users, _ := m.TemplateUsers("tiny"); strings.Join(users, " ") != "b-1 b-2" {
		t.Errorf("template users %v, want b-1 b-2", users)
	}
}

// TestCloneStart: clones started by Clone run on this host's KVM, each
// its own VMM; a clone that cannot start removes every clone made.
func TestCloneStart(t *testing.T) {
	testguest.RequireKVM(t)
	m, _, _ := vmTemplate(t, false, "")
	ctx := context.Background()
	names, err := m.Clone(ctx, "web-tpl", "run", CloneOptions{Numbered: true, Count: 2, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, n := range names {
		st, err := m.Status(ctx, n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		in, err := m.Inspect(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != "running" || in.PID == 0 {
			t.Errorf("%s: state %q pid %d", n, st.State, in.PID)
		}
		pids[in.PID] = true
	}
	if len(pids) != 2 {
		t.Errorf("the clones share a VMM: %v", pids)
	}
}

// TestCloneRefusals: -n 0, a name that exists (alone, or one of -n's),
// a template whose base changed, and --memory on a
// stopped VM are refused in one sentence each, leaving the state
// directory as it was (no VM, overlay, lease or file of any kind); a
// start that fails removes every clone made.
func TestCloneRefusals(t *testing.T) {
	tap := hostLink(t, "tap")
	m, tmpl, _ := vmTemplate(t, false, "nics: [{tap: "+tap+"}]\n")
	ctx := context.Background()
	// c-2 exists: -n 3 of c must not make c-1 or c-3.
	if _, err := m.Clone(ctx, "web-tpl", "c-2", CloneOptions{}); err != nil {
		t.Fatal(err)
	}
	before, _ := m.Names()
	tree := stateTree(t, m.Home())
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", what, err, want)
		}
		if names, _ := m.Names(); strings.Join(names, " ") != strings.Join(before, " ") {
			t.Errorf("%s left VMs: %v", what, names)
		}
		if now := stateTree(t, m.Home()); now != tree {
			t.Errorf("%s changed the state directory:\nbefore:\n%s\nafter:\n%s", what, tree, now)
		}
	}
	_, err := m.Clone(ctx, "web-tpl", "c", CloneOptions{Numbered: true, Count: 0})
	check("-n 0", err, "-n 0: the number of clones must be 1 to 1000")
	_, err = m.Clone(ctx, "web-tpl", "web", CloneOptions{})
	check("an existing name", err, "a VM named 'web' exists already")
	_, err = m.Clone(ctx, "web-tpl", "c", CloneOptions{Numbered: true, Count: 3})
	check("-n 3 with c-2 there", err, "a VM named 'c-2' exists already")
	_, err = m.CreateTemplateFromVM(ctx, "warm", "web", TemplateFromVMOptions{Memory: true})
	check("--memory on a stopped VM", err, "--memory saves a running VM's memory: start it first")
	if _, err := m.Template("warm"); err == nil {
		t.Error("a refused template create left a template")
	}
	// The clones share the source VM's tap: the first to start holds
	// it, the next cannot open it, and all go.
	testguest.RequireKVM(t)
	_, err = m.Clone(ctx, "web-tpl", "d", CloneOptions{Numbered: true, Count: 3, Start: true})
	check("a start that fails", err, tap)
	spoil(t, tmpl.Path(tmpl.Meta.Disks[0].File))
	var ce *store.TemplateChangedError
	_, err = m.Clone(ctx, "web-tpl", "d", CloneOptions{Numbered: true, Count: 2})
	if !errors.As(err, &ce) {
		t.Errorf("a changed base: %v", err)
	}
	check("a changed base", err, "changed after the template was made")
}

// stateTree lists every file and directory under home, one per line,
// with its type and size (directories' sizes left out), sorted: what a
// refused command must leave as it found it. The host-wide places the
// first start of any VM makes (the networks and jail-root directories,
// jail.lock) are left out; what is in them is not.
func stateTree(t *testing.T, home string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(home, p)
		switch rel {
		case "networks", "jail-root", "jail.lock":
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().Type().String()
		if fi.Mode().IsRegular() {
			line += fmt.Sprintf(" %d", fi.Size())
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// hostLink makes a bridge or a tap on the host, removed when the test
// ends, and returns its name.
func hostLink(t *testing.T, kind string) string {
	t.Helper()
	testenv.RequireRoot(t, "this test makes a "+kind)
	testenv.RequireTool(t, "ip", "iproute2")
	name := fmt.Sprintf("pdcl%d", os.Getpid()%100000)
	if kind == "tap" {
		name += "t"
	}
	args := []string{"link", "add", name, "type", "bridge"}
	if kind == "tap" {
		args = []string{"tuntap", "add", name, "mode", "tap"}
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	return name
}
