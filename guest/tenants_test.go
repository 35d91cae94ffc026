package guest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/tenant"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// tenantVM returns a validated spec of a tiny guest of tenant ten, with
// extra in its YAML (64 MiB of memory unless extra says).
func tenantVM(t *testing.T, name, ten, extra string) *configs.VM {
	t.Helper()
	testguest.RequireKVM(t)
	if !strings.Contains(extra, "memory:") {
		extra = "memory: 64MiB\n" + extra
	}
	return parseVM(t, fmt.Sprintf("name: %s\ntenant: %s\nkernel: %s\nconsole: log\n%s", name, ten, testguest.Build(t, "counter"), extra), "")
}

// rawDisk makes a raw disk image of size bytes in dir.
func rawDisk(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTenantConcurrentCreates has 12 goroutines create VMs of a tenant
// limited to 3 VMs at once, each taking the tenant's lock on its own
// descriptor as separate commands would: exactly 3 VMs exist after, and
// every other create was refused by the quota.
func TestTenantConcurrentCreates(t *testing.T) {
	m := testManager(t)
	if _, err := m.CreateTenant("acme", tenant.Limits{VMs: 3}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	specs := make([]*configs.VM, n)
	for i := range specs {
		specs[i] = tenantVM(t, fmt.Sprintf("vm-%d", i), "acme", "")
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = m.Create(specs[i], "")
		}()
	}
	close(start)
	wg.Wait()
	made := 0
	for i, err := range errs {
		switch {
		case err == nil:
			made++
		case !errors.Is(err, tenant.ErrQuota):
			t.Errorf("vm-%d: %v", i, err)
		case !strings.HasSuffix(err.Error(), ": tenant acme: 3 of 3 VMs exist, and this asks for 1 more (--max-vms 3): remove some or raise the limit (paddock tenant set acme --max-vms ...)"):
			t.Errorf("vm-%d: message %q", i, err)
		}
	}
	in, err := m.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	if made != 3 || len(in.VMs) != 3 || in.Usage.VMs != 3 {
		t.Errorf("%d creates succeeded, tenant has %v (usage %+v); want 3", made, in.VMs, in.Usage)
	}
}

// TestTenantQuotas checks each limit's refusal, what counts towards it,
// the check at start after a limit was lowered, and that a refusal
// leaves nothing behind.
func TestTenantQuotas(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := m.CreateTenant("acme", tenant.Limits{CPUs: 4, Memory: 256 * configs.MiB, Disk: 3 * configs.GiB}); err != nil {
		t.Fatal(err)
	}
	d1 := rawDisk(t, dir, "d1.img", 2<<30)
	ro := rawDisk(t, dir, "ro.img", 10<<30)
	if _, err := m.Create(tenantVM(t, "a", "acme", "cpus: 2\ndisks: [{path: "+d1+"}, {path: "+ro+", readonly: true}]\n"), ""); err != nil {
		t.Fatal(err)
	}
	// Another tenant's VMs count nothing towards acme's limits.
	if _, err := m.Create(tenantVM(t, "other", "default", "cpus: 8\n"), ""); err != nil {
		t.Fatal(err)
	}
	in, err := m.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	if want := (tenant.Usage{VMs: 1, CPUs: 2, Memory: 64 * configs.MiB, Disk: 2 * configs.GiB}); in.Usage != want || !slices.Equal(in.VMs, []string{"a"}) {
		t.Errorf("usage %+v VMs %v; want %+v [a] (a read-only disk counts nothing)", in.Usage, in.VMs, want)
	}
	d2 := rawDisk(t, dir, "d2.img", 2<<30)
	refusals := []struct {
		name, extra, want string
	}{
		{"cpus", "cpus: 3\n", "VM b: tenant acme: 2 of 4 vCPUs are its VMs', and this asks for 3 more (--max-cpus 4): remove some or raise the limit (paddock tenant set acme --max-cpus ...)"},
		{"memory", "memory: 256MiB\n", "VM b: tenant acme: 64MiB of 256MiB of memory are its VMs', and this asks for 256MiB more (--max-memory 256MiB): remove some or raise the limit (paddock tenant set acme --max-memory ...)"},
		{"disk", "disks: [{path: " + d2 + "}]\n", "VM b: tenant acme: 2GiB of 3GiB of disk are its VMs', and this asks for 2GiB more (--max-disk 3GiB): remove some or raise the limit (paddock tenant set acme --max-disk ...)"},
	}
	for _, r := range refusals {
		vm := tenantVM(t, "b", "acme", r.extra)
		_, err := m.Create(vm, "")
		if !errors.Is(err, tenant.ErrQuota) || err.Error() != r.want {
			t.Errorf("%s: %v\nwant %s", r.name, err, r.want)
		}
		if _, err := m.store.VM("b"); err == nil {
			t.Errorf("%s: the refused VM b is in the store", r.name)
		}
	}
	// A disk another VM of the tenant has counts once.
	if _, err := m.Create(tenantVM(t, "b", "acme", "disks: [{path: "+d1+"}]\n"), ""); err != nil {
		t.Errorf("a second VM on a disk counted already: %v", err)
	}
	// Lowering a limit takes nothing away, but a VM that no longer fits
	// does not start.
	if _, err := m.SetTenantLimits("acme", func(l *tenant.Limits) error { l.CPUs = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	_, err = m.Start(ctx, "b")
	if want := "cannot start VM b: tenant acme: 2 of 2 vCPUs are its VMs', and this asks for 1 more (--max-cpus 2): remove some or raise the limit (paddock tenant set acme --max-cpus ...)"; err == nil || err.Error() != want {
		t.Errorf("start over the lowered limit: %v\nwant %s", err, want)
	}
}

// qcow2Disk makes a qcow2 image of size bytes (virtual) in dir.
func qcow2Disk(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	img, err := disk.Create(path, disk.CreateOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// setQcow2Size writes size into the virtual size field of the qcow2
// header at path, as a hostile tenant could.
func setQcow2Size(t *testing.T, path string, size uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(binary.BigEndian.AppendUint64(nil, size), 24); err != nil {
		t.Fatal(err)
	}
}

// TestTenantQuotaHostileDisk: a qcow2 header whose virtual size wraps
// the tenant's sum (2^64 - 100 GiB) can neither get its VM admitted nor,
// written into an admitted VM's disk afterwards, make room for more.
func TestTenantQuotaHostileDisk(t *testing.T) {
	m := testManager(t)
	dir := t.TempDir()
	if _, err := m.CreateTenant("acme", tenant.Limits{Disk: 200 * configs.GiB}); err != nil {
		t.Fatal(err)
	}
	big := rawDisk(t, dir, "big.img", 150<<30)
	if _, err := m.Create(tenantVM(t, "a", "acme", "disks: [{path: "+big+"}]\n"), ""); err != nil {
		t.Fatal(err)
	}
	const wrap = math.MaxUint64 - 100<<30 + 1
	evil := qcow2Disk(t, dir, "evil.qcow2", 1<<30)
	setQcow2Size(t, evil, wrap)
	_, err := m.Create(tenantVM(t, "evil", "acme", "disks: [{path: "+evil+"}]\n"), "")
	if err == nil || !strings.Contains(err.Error(), "VM evil: disk "+evil+": ") || !strings.Contains(err.Error(), "virtual size") {
		t.Errorf("a VM with a wrapping qcow2 size: %v", err)
	}
	if _, err := m.store.VM("evil"); err == nil {
		t.Error("the refused VM evil is in the store")
	}
	// Admitted with an honest header, then made hostile.
	later := qcow2Disk(t, dir, "later.qcow2", 1<<30)
	if _, err := m.Create(tenantVM(t, "b", "acme", "disks: [{path: "+later+"}]\n"), ""); err != nil {
		t.Fatal(err)
	}
	setQcow2Size(t, later, wrap)
	more := rawDisk(t, dir, "more.img", 140<<30)
	_, err = m.Create(tenantVM(t, "c", "acme", "disks: [{path: "+more+"}]\n"), "")
	if !errors.Is(err, tenant.ErrQuota) {
		t.Errorf("140 GiB more over 150 GiB used of 200 GiB: %v", err)
	}
	in, err := m.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	if in.Usage.Disk != 150*configs.GiB {
		t.Errorf("usage %s, want 150GiB (the hostile disk counts nothing)", in.Usage.Disk)
	}
	if _, err := m.Start(context.Background(), "b"); err == nil || !strings.Contains(err.Error(), "disk "+later) {
		t.Errorf("start of the VM whose disk turned hostile: %v", err)
	}
}

// TestTenantNames checks unknown tenants (with and without a near name)
// at create, and tenant rm of a tenant with VMs.
func TestTenantNames(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	if _, err := m.CreateTenant("acme", tenant.Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateTenant("acme", tenant.Limits{}); !errors.Is(err, tenant.ErrExists) {
		t.Errorf("second create: %v", err)
	}
	if _, err := m.CreateTenant("default", tenant.Limits{}); !errors.Is(err, tenant.ErrExists) {
		t.Errorf("create default: %v", err)
	}
	var nf *TenantNotFoundError
	if _, err := m.Create(tenantVM(t, "a", "acmee", ""), ""); !errors.As(err, &nf) || err.Error() != "VM a: no tenant named 'acmee'; did you mean 'acme'?" {
		t.Errorf("create in a typo's tenant: %v", err)
	}
	if _, err := m.Tenant("zzzzzz"); !errors.As(err, &nf) || err.Error() != "no tenant named 'zzzzzz' (paddock tenant ls lists them; paddock tenant create zzzzzz makes it)" {
		t.Errorf("inspect an unknown tenant: %v", err)
	}
	host := configs.Host{Tenants: m.TenantLookup()}
	vm := tenantVM(t, "a", "acme", "")
	vm.Tenant = "acmee"
	if err := vm.Validate(host); err == nil || err.Error() != `<input>:2:9: tenant: no tenant named "acmee"; did you mean "acme"? (paddock tenant ls lists them)` {
		t.Errorf("Validate: %v", err)
	}
	for _, n := range []string{"a", "b"} {
		if _, err := m.Create(tenantVM(t, n, "acme", ""), ""); err != nil {
			t.Fatal(err)
		}
	}
	err := m.RemoveTenant("acme")
	if !errors.Is(err, tenant.ErrInUse) || err.Error() != "tenant acme is in use: it has VMs a, b (paddock rm); remove them first" {
		t.Errorf("rm with VMs: %v", err)
	}
	if err := m.RemoveTenant("default"); err == nil {
		t.Error("rm default succeeded")
	}
	for _, n := range []string{"a", "b"} {
		if err := m.Remove(ctx, n, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RemoveTenant("acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Tenant("acme"); !errors.As(err, &nf) {
		t.Errorf("inspect after rm: %v", err)
	}
	names, err := m.Tenants()
	if err != nil || len(names) != 1 || names[0].Name != "default" {
		t.Errorf("tenants after rm: %v %v", names, err)
	}
}

// TestTenantNetworkOfVM checks that network: default in a VM of tenant
// acme is acme's own default network, not the default tenant's, and
// that tenant rm names the networks a tenant still has.
func TestTenantNetworkOfVM(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	if _, err := m.CreateTenant("acme", tenant.Limits{}); err != nil {
		t.Fatal(err)
	}
	nic := "nics: [{network: default}]\n"
	a, err := m.Create(tenantVM(t, "a", "acme", nic), "")
	if err != nil {
		t.Fatal(err)
	}
	d, err := m.Create(tenantVM(t, "d", "default", nic), "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.networks()
	if err != nil {
		t.Fatal(err)
	}
	acmeNet, err := st.Get("acme/default")
	if err != nil {
		t.Fatal(err)
	}
	defNet, err := st.Get("default")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Addresses) != 1 || a.Addresses[0].Network != "default" || !acmeNet.Subnet.Contains(netip.MustParseAddr(a.Addresses[0].IP)) {
		t.Errorf("acme's VM a: addresses %+v, acme's network %s", a.Addresses, acmeNet.Subnet)
	}
	if len(d.Addresses) != 1 || !defNet.Subnet.Contains(netip.MustParseAddr(d.Addresses[0].IP)) {
		t.Errorf("default's VM d: addresses %+v, default's network %s", d.Addresses, defNet.Subnet)
	}
	if err := m.Remove(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveTenant("acme"); !errors.Is(err, tenant.ErrInUse) || err.Error() != "tenant acme is in use: it has networks default (paddock network rm --tenant acme); remove them first" {
		t.Errorf("rm with a network: %v", err)
	}
	if err := st.Remove("acme/default"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveTenant("acme"); err != nil {
		t.Error(err)
	}
}

// TestTenantQuotaClone checks that clone -n makes all its clones or,
// when together they would pass a limit, none; and that a VM made from
// a template counts its overlays at their virtual sizes.
func TestTenantQuotaClone(t *testing.T) {
	m, tmpl, _ := vmTemplate(t, false, "")
	ctx := context.Background()
	root := configs.ByteSize(tmpl.Meta.Disks[0].VirtualSize)
	if _, err := m.CreateTenant("acme", tenant.Limits{VMs: 3, Disk: 4 * root}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Clone(ctx, "web-tpl", "c", CloneOptions{Numbered: true, Count: 4, Tenant: "acme"})
	if want := "clone web-tpl: tenant acme: 0 of 3 VMs exist, and this asks for 4 more (--max-vms 3): remove some or raise the limit (paddock tenant set acme --max-vms ...)"; !errors.Is(err, tenant.ErrQuota) || err.Error() != want {
		t.Errorf("4 clones: %v\nwant %s", err, want)
	}
	if names, _ := m.Names(); !slices.Equal(names, []string{"web"}) {
		t.Errorf("VMs after the refused clones: %v", names)
	}
	names, err := m.Clone(ctx, "web-tpl", "c", CloneOptions{Numbered: true, Count: 3, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if spec, err := m.Spec(n); err != nil || spec.Tenant != "acme" {
			t.Errorf("%s: tenant %v %v", n, spec, err)
		}
	}
	in, err := m.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	if in.Usage.VMs != 3 || in.Usage.Disk != 3*root {
		t.Errorf("usage %+v; want 3 VMs and 3 root disks of %s", in.Usage, root)
	}
	// A VM from the template, with a bigger root disk, passes max-disk.
	if _, err := m.SetTenantLimits("acme", func(l *tenant.Limits) error { l.VMs = 0; return nil }); err != nil {
		t.Fatal(err)
	}
	vm := fromVM(t, m, "big", "tiny", "tenant: acme\nroot_size: "+(2*root).String()+"\n")
	_, err = m.Create(vm, "")
	if want := fmt.Sprintf("VM big: tenant acme: %s of %s of disk are its VMs', and this asks for %s more (--max-disk %s): remove some or raise the limit (paddock tenant set acme --max-disk ...)", 3*root, 4*root, 2*root, 4*root); !errors.Is(err, tenant.ErrQuota) || err.Error() != want {
		t.Errorf("from: over max-disk: %v\nwant %s", err, want)
	}
}
