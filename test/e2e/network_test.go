package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// inNamespace makes every paddock command of e run in a new network
// namespace, and so the VMMs and netds they start: the test's networks
// change nothing on the host.
func inNamespace(t *testing.T, e *managedEnv) *netnstest.NS {
	t.Helper()
	ns := netnstest.New(t)
	wrapper := filepath.Join(e.dir, "paddock-in-ns")
	script := "#!/bin/sh\nexec ip netns exec " + ns.Name + " " + e.bin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.bin = wrapper
	return ns
}

// networkInfo is `paddock network inspect`'s output.
type networkInfo struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet"`
	Bridge string `json:"bridge"`
	Table  string `json:"nft_table"`
	State  string `json:"state"`
	// NetdPID is the network's netd while it is up.
	NetdPID int `json:"netd_pid"`
	Leases  []struct {
		VM string `json:"vm"`
		IP string `json:"ip"`
	} `json:"leases"`
}

func (e *managedEnv) network(name string) networkInfo {
	e.t.Helper()
	var in networkInfo
	out := e.ok("network", "inspect", name)
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		e.t.Fatalf("network inspect: %v\n%s", err, out)
	}
	return in
}

// waitNetdGone waits until the network's netd has taken it down and
// exited (it holds netd.lock until then).
func (e *managedEnv) waitNetdGone(name string) {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.home, "networks", name, "netd.lock"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			e.t.Fatal(err)
		}
	case <-time.After(managedTimeout):
		e.t.Fatalf("netd of %s did not exit", name)
	}
}

// TestManagedNetwork runs VMs on the network default through the paddock
// binary, in a network namespace: create gives the VM its address (ls,
// inspect), start brings the network up with the VM's tap on the bridge
// and its port forward in nftables; a port in use (at create, at start),
// a subnet over a host route and removing a network in use are each one
// clear error that leaves nothing behind; rm of the last VM leaves no
// bridge port, nftables rule or lease of it, and the network goes down.
func TestManagedNetwork(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	e := newManagedEnv(t)
	ns := inNamespace(t, e)

	e.ok("create", "-f", e.guestVM("web", "counter", "nics: [{network: default}]\nports: ['8080:80']\n"))
	var list []struct {
		Name      string `json:"name"`
		Addresses []struct {
			Network, MAC, IP string
		} `json:"addresses"`
	}
	if err := json.Unmarshal([]byte(e.ok("ls", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || len(list[0].Addresses) != 1 || list[0].Addresses[0].IP != "10.77.0.2" || list[0].Addresses[0].Network != "default" {
		t.Fatalf("ls --json: %+v", list)
	}
	if out := e.ok("ls"); !strings.Contains(out, " 10.77.0.2 ") {
		t.Errorf("ls has no address:\n%s", out)
	}
	def := e.network("default")
	if def.Subnet != "10.77.0.0/24" || def.Bridge != "pd-default" || def.State != "down" || len(def.Leases) != 1 {
		t.Fatalf("default after create: %+v", def)
	}

	e.ok("start", "web")
	if def = e.network("default"); def.State != "up" {
		t.Fatalf("default after start: %+v", def)
	}
	ports := func() string { return ns.IP(t, "-o", "link", "show", "master", "pd-default") }
	if p := ports(); strings.Count(p, "\n") != 1 || !strings.Contains(p, ": pd") {
		t.Errorf("bridge ports with web running:\n%s", p)
	}
	table := func() string {
		out, err := ns.Try("nft", "list", "table", "ip", "paddock-default")
		if err != nil && strings.Contains(out, "No such file or directory") {
			return "" // no table
		}
		return out
	}
	if tbl := table(); !strings.Contains(tbl, "ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.77.0.2:80") || !strings.Contains(tbl, "ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade") {
		t.Errorf("nftables with web running:\n%s", tbl)
	}

	// A port that web forwards: refused at create, nothing created.
	e.fails(1, e.dir+"/db.yaml:6:9: ports[0]: host port 127.0.0.1:8080/tcp is in use (by a program of this host, or a running VM's forward)\n",
		"create", "-f", e.guestVM("db", "counter", "nics: [{network: default}]\nports: ['8080:80']\n"))
	if _, ok := e.ls()["db"]; ok {
		t.Error("a refused VM was created")
	}
	// A port taken between create and start: start fails, nothing stays.
	e.ok("create", "-f", e.guestVM("db", "counter", "nics: [{network: default}]\nports: ['8090:80']\n"))
	taker := ns.Listen(t, "tcp4", "127.0.0.1:8090")
	_, errOut, st := e.paddock("start", "db")
	if st != 1 || !strings.Contains(errOut, "host port 127.0.0.1:8090/tcp is in use") {
		t.Errorf("start with its port taken: status %d, %s", st, errOut)
	}
	taker.Close()
	if p := ports(); strings.Count(p, "\n") != 1 {
		t.Errorf("bridge ports after db's failed start:\n%s", p)
	}
	if tbl := table(); strings.Contains(tbl, "8090") {
		t.Errorf("db's forward after its failed start:\n%s", tbl)
	}
	// A network in use is not removed; a subnet over a host route is
	// not created.
	e.fails(4, "paddock: network default is in use by VM db, web: remove them first (paddock rm)\n", "network", "rm", "default")
	ns.Bridge(t, "corp")
	ns.IP(t, "route", "add", "10.99.0.0/16", "dev", "corp")
	e.fails(1, "paddock: network lab: subnet 10.99.1.0/24 overlaps the host's route to 10.99.0.0/16 on corp\n", "network", "create", "--subnet", "10.99.1.0/24", "lab")
	// A network that does not exist: one error, no VM.
	e.fails(1, "paddock: VM lost: nics[0].network: network lab: no such network: create it first (paddock network create lab)\n",
		"create", "-f", e.guestVM("lost", "counter", "nics: [{network: lab}]\n"))
	if _, ok := e.ls()["lost"]; ok {
		t.Error("a VM on a missing network was created")
	}
	if out := e.ok("network", "ls", "-q"); out != "default\n" {
		t.Errorf("network ls -q: %q", out)
	}

	// rm of the last running VM: its tap, forward and lease go, and the
	// network with them.
	e.ok("rm", "--force", "web")
	e.waitNetdGone("default")
	if out, err := ns.Try("ip", "link", "show", "pd-default"); err == nil {
		t.Errorf("the bridge outlived the last VM:\n%s", out)
	}
	if tbl := table(); tbl != "" {
		t.Errorf("the nftables table outlived the last VM:\n%s", tbl)
	}
	def = e.network("default")
	if def.State != "down" || len(def.Leases) != 1 || def.Leases[0].VM != "db" {
		t.Errorf("default after rm web: %+v", def)
	}
	e.ok("rm", "db")
	e.ok("network", "rm", "default")
	if out := e.ok("network", "ls", "-q"); out != "" {
		t.Errorf("network ls -q after rm: %q", out)
	}
}

// TestRunOnNetwork: paddock run of a VM on a managed network attaches it
// for the run (the network created on first use) and leaves neither its
// lease nor the network up afterwards.
func TestRunOnNetwork(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	e := newManagedEnv(t)
	ns := inNamespace(t, e)
	y := e.guestVM("once", "poweroff", "nics: [{network: default}]\nports: ['8080:80']\n")
	if out, errOut, st := e.paddock("run", "-f", y); st != 0 {
		t.Fatalf("paddock run: status %d\n%s%s", st, out, errOut)
	}
	e.waitNetdGone("default")
	def := e.network("default")
	if def.State != "down" || len(def.Leases) != 0 {
		t.Errorf("default after the run: %+v", def)
	}
	if out, err := ns.Try("ip", "link", "show", "pd-default"); err == nil {
		t.Errorf("the bridge outlived the run:\n%s", out)
	}
	log, err := os.ReadFile(filepath.Join(e.home, "networks", "default", "netd.log"))
	if err != nil || !strings.Contains(string(log), "VM once attached") || !strings.Contains(string(log), "VM once left") {
		t.Errorf("netd.log (%v):\n%s", err, log)
	}
}
