package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// TestTenantQuotaProcesses starts eight paddock create processes at once
// for a tenant limited to three VMs: the tenant's lock makes exactly
// three of them succeed, and each other one exits with status 4 naming
// the limit, leaving no VM behind.
func TestTenantQuotaProcesses(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("tenant", "create", "acme", "--max-vms", "3")
	const n = 8
	files := make([]string, n)
	for i := range files {
		files[i] = e.guestVM(fmt.Sprintf("vm-%d", i), "counter", "tenant: acme\n")
	}
	type result struct {
		status int
		stderr string
	}
	results := make([]result, n)
	cmds := make([]*exec.Cmd, n)
	errs := make([]bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = e.command("create", "-f", files[i])
		cmds[i].Stderr = &errs[i]
	}
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Run()
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee):
				results[i].status = ee.ExitCode()
			case err != nil:
				results[i].status = -1
			}
			results[i].stderr = errs[i].String()
		}()
	}
	wg.Wait()
	made := 0
	for i, r := range results {
		switch {
		case r.status == 0:
			made++
		case r.status != 4 || r.stderr != fmt.Sprintf("paddock: VM vm-%d: tenant acme: 3 of 3 VMs exist, and this asks for 1 more (--max-vms 3): remove some or raise the limit (paddock tenant set acme --max-vms ...)\n", i):
			t.Errorf("create vm-%d: status %d, stderr %q", i, r.status, r.stderr)
		}
	}
	if ls := e.ls(); made != 3 || len(ls) != 3 {
		t.Errorf("%d creates succeeded, %d VMs exist; want 3", made, len(ls))
	}
}

// TestTenantNetworks runs a VM of tenant acme and one of the default
// tenant, both on network default, in a network namespace (paddock's
// host): each network comes up with its own bridge and nftables table
// and the same subnet, acme's in acme's namespace (where its netd runs),
// each VM's tap on its own tenant's bridge; both go down with their last
// VM, and acme's namespace and uplink with acme's.
func TestTenantNetworks(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	testenv.RequireTool(t, "nsenter", "util-linux")
	e := newManagedEnv(t)
	ns := inNamespace(t, e)
	e.ok("tenant", "create", "acme")
	e.ok("up", "-f", e.guestVM("a", "counter", "tenant: acme\nnics: [{network: default}]\n"))
	e.ok("up", "-f", e.guestVM("d", "counter", "nics: [{network: default}]\n"))
	acme, def := e.network("acme/default"), e.network("default")
	if acme.Name != "acme/default" || acme.State != "up" || def.State != "up" || acme.Bridge == def.Bridge || acme.Table == def.Table || acme.Subnet != def.Subnet {
		t.Fatalf("acme's default %+v, the default tenant's %+v", acme, def)
	}
	if len(acme.Leases) != 1 || acme.Leases[0].VM != "a" || len(def.Leases) != 1 || def.Leases[0].VM != "d" {
		t.Errorf("leases: acme's %+v, default's %+v", acme.Leases, def.Leases)
	}
	// Each network's netd runs in its tenant's namespace: look there
	// (acme's is /run/netns/paddock-acme only in the mount namespace of
	// the paddock that made it; ip netns exec gives each its own).
	for _, n := range []networkInfo{acme, def} {
		in := func(args ...string) (string, error) {
			out, err := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(n.NetdPID), "-n"}, args...)...).CombinedOutput()
			return string(out), err
		}
		if p, err := in("ip", "-o", "link", "show", "master", n.Bridge); err != nil || strings.Count(p, "\n") != 1 {
			t.Errorf("ports of %s's bridge %s: %v\n%s", n.Name, n.Bridge, err, p)
		}
		if out, err := in("nft", "list", "table", "ip", n.Table); err != nil || !strings.Contains(out, "ip saddr "+n.Subnet) {
			t.Errorf("%s's table %s: %v\n%s", n.Name, n.Table, err, out)
		}
	}
	if out, err := ns.Try("ip", "link", "show", acme.Bridge); err == nil {
		t.Errorf("acme's bridge is in the host's namespace:\n%s", out)
	}
	if out := ns.IP(t, "-o", "link"); !strings.Contains(out, " pt-") {
		t.Errorf("no uplink of acme's namespace in the host's:\n%s", out)
	}
	if out := e.ok("network", "ls", "-q", "--tenant", "acme"); out != "acme/default\n" {
		t.Errorf("network ls -q --tenant acme: %q", out)
	}
	if out := e.ok("ls"); !strings.HasPrefix(out, "NAME  TENANT   STATE") {
		t.Errorf("ls:\n%s", out)
	}
	e.ok("rm", "--force", "a", "d")
	e.waitNetdGone("acme.default")
	e.waitNetdGone("default")
	if out, err := ns.Try("ip", "link", "show", def.Bridge); err == nil {
		t.Errorf("%s's bridge outlived its VMs:\n%s", def.Name, out)
	}
	if out := ns.IP(t, "-o", "link"); strings.Contains(out, " pt-") {
		t.Errorf("acme's uplink outlived its VMs:\n%s", out)
	}
	if out, _ := ns.Try("nft", "list", "tables"); strings.Contains(out, "paddock-uplink") || strings.Contains(out, acme.Table) {
		t.Errorf("acme's tables outlived its VMs:\n%s", out)
	}
	if _, err := os.Stat("/run/netns/paddock-acme"); err == nil {
		t.Errorf("acme's namespace outlived its VMs")
	}
	e.ok("network", "rm", "--tenant", "acme", "default")
	e.ok("tenant", "rm", "acme")
}
