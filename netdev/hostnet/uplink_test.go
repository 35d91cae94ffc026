package hostnet_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/netdev/hostnet"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// tenant is a tenant's namespace with its uplink, its network (testConfig:
// the same subnet, bridge and table names as the host's) and one guest.
type tenant struct {
	up    hostnet.Uplink
	guest *netnstest.NS
}

// ipIn runs `ip -n NS ARGS...`.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

// inTenant runs fn in the tenant's namespace.
func inTenant(t *testing.T, u hostnet.Uplink, fn func() error) {
	t.Helper()
	ns, err := hostnet.OpenNetns(u.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ns)
	if err := hostnet.InNetns(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// newTenant makes a tenant's namespace and uplink from the host's
// namespace, brings testConfig's network up in it, and puts a guest with
// address ip on it (default route through the gateway); the guest serves
// HTTP on port 80, the namespace on 8000 (on all its addresses). All of
// it goes
// at cleanup, and the test checks that nothing is left.
func newTenant(t *testing.T, host *netnstest.NS, id string, ip netip.Addr) *tenant {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	r := hex.EncodeToString(b[:])
	tn := &tenant{up: hostnet.Uplink{NS: "paddock-test-" + r + id, HostVeth: hostnet.UplinkPrefix + r + id, NSVeth: "pu-" + r, Table: "paddock-uplink-" + id}}
	if err := host.Do(func() (err error) {
		tn.up.Addr, err = hostnet.PickUplinkAddr()
		if err != nil {
			return err
		}
		return hostnet.UplinkUp(tn.up)
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := host.Do(func() error { return hostnet.UplinkDown(tn.up) }); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(filepath.Join(hostnet.NetnsDir, tn.up.NS)); !os.IsNotExist(err) {
			t.Errorf("namespace %s left behind: %v", tn.up.NS, err)
		}
		if out, _ := host.Try("ip", "-o", "link"); strings.Contains(out, tn.up.HostVeth) {
			t.Errorf("uplink %s left behind:\n%s", tn.up.HostVeth, out)
		}
		if out, _ := host.Try("nft", "list", "tables"); strings.Contains(out, tn.up.Table) {
			t.Errorf("table %s left behind:\n%s", tn.up.Table, out)
		}
	})
	mac := guestMAC("t" + id)
	inTenant(t, tn.up, func() error {
		return hostnet.Up(testConfig, hostnet.Rules{Guests: []hostnet.Guest{{Port: "vguest", MAC: mac, IP: ip}}})
	})
	tn.guest = netnstest.New(t)
	ipIn(t, tn.up.NS, "link", "add", "vguest", "type", "veth", "peer", "name", "eth0", "netns", tn.guest.Name)
	ipIn(t, tn.up.NS, "link", "set", "vguest", "master", testConfig.Bridge, "up")
	tn.guest.IP(t, "link", "set", "eth0", "address", mac.String(), "up")
	tn.guest.IP(t, "addr", "add", netip.PrefixFrom(ip, testConfig.Gateway.Bits()).String(), "dev", "eth0")
	tn.guest.IP(t, "route", "add", "default", "via", testConfig.Gateway.Addr().String())
	tn.guest.ServeHTTP(t, ":80", "tenant "+id)
	var l net.Listener
	inTenant(t, tn.up, func() (err error) {
		l, err = net.Listen("tcp4", ":8000")
		return err
	})
	netnstest.Serve(t, l, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "namespace %s\n", id)
	})
	return tn
}

// TestTenantNamespaces proves the tenants' namespaces with traffic: the
// host's own network (the default tenant's) and two tenants' networks,
// all three on 10.77.0.0/24 with bridges and tables of the same names,
// each with a guest. Every guest reaches the upstream beyond the host
// (the tenants' through two NATs), and a tenant's guest its own
// namespace at its gateway; none reaches another's guest, nor the other
// tenant's or the host's namespace (their uplink addresses, the host's
// own address), nor does a host beyond the uplink reach a tenant's
// namespace but through a port forward, though the packets have routes
// to all of them and something listens at each.
func TestTenantNamespaces(t *testing.T) {
	tp := newTopology(t, nil) // the host's network: guest 10.77.0.2
	tp.host.ServeHTTP(t, ":8000", "host")
	a := newTenant(t, tp.host, "a", netip.MustParseAddr("10.77.0.3"))
	b := newTenant(t, tp.host, "b", netip.MustParseAddr("10.77.0.4"))
	if a.up.Addr.Masked() == b.up.Addr.Masked() {
		t.Fatalf("two uplinks got %s", a.up.Addr)
	}
	for _, g := range []*netnstest.NS{tp.guest, a.guest, b.guest} {
		get(t, g, "http://198.51.100.2/", "upstream")
	}
	get(t, a.guest, "http://10.77.0.1:8000/", "namespace a")
	get(t, b.guest, "http://10.77.0.1:8000/", "namespace b")
	// The upstream has routes to the uplinks' addresses through the
	// host, as a LAN's router could.
	for _, tn := range []*tenant{a, b} {
		tp.upstream.IP(t, "route", "add", tn.up.Addr.Masked().String(), "via", uplinkIP.String())
	}
	// ... and reaches a's guest through a port forward on the host's
	// address: the host's half to the uplink, a's network's half on.
	inTenant(t, a.up, func() error {
		return hostnet.SetRules(testConfig, hostnet.Rules{
			Forwards: []hostnet.Forward{{Proto: "tcp", HostIP: a.up.Peer().Addr(), HostPort: 8085, GuestIP: netip.MustParseAddr("10.77.0.3"), GuestPort: 80}},
			Guests:   []hostnet.Guest{{Port: "vguest", MAC: guestMAC("ta"), IP: netip.MustParseAddr("10.77.0.3")}},
		})
	})
	const fwdTable = "paddock-test-forwards"
	if err := tp.host.Do(func() error {
		return hostnet.SetUplinkForwards(a.up, fwdTable, []hostnet.Forward{{Proto: "tcp", HostIP: uplinkIP, HostPort: 8085, GuestIP: netip.MustParseAddr("10.77.0.3"), GuestPort: 80}})
	}); err != nil {
		t.Fatal(err)
	}
	get(t, tp.upstream, "http://198.51.100.1:8085/", "tenant a")
	// Every attempt at once: each that fails waits for curl's timeout.
	var wg sync.WaitGroup
	for _, c := range []struct {
		name string
		from *netnstest.NS
		to   []string
	}{
		{"the host's guest", tp.guest, []string{"10.77.0.3", "10.77.0.4", a.up.Peer().Addr().String() + ":8000", b.up.Peer().Addr().String() + ":8000"}},
		{"tenant a's guest", a.guest, []string{"10.77.0.2", "10.77.0.4", b.up.Peer().Addr().String() + ":8000", b.up.Addr.Addr().String() + ":8000", a.up.Addr.Addr().String() + ":8000", "198.51.100.1:8000"}},
		{"the upstream", tp.upstream, []string{a.up.Peer().Addr().String() + ":8000", b.up.Peer().Addr().String() + ":8000"}},
		{"tenant b's guest", b.guest, []string{"10.77.0.2", "10.77.0.3", a.up.Peer().Addr().String() + ":8000", a.up.Addr.Addr().String() + ":8000", "198.51.100.1:8000"}},
	} {
		for _, to := range c.to {
			wg.Go(func() {
				if out, err := c.from.Try("curl", "-sS", "--max-time", "3", "http://"+to+"/"); err == nil {
					t.Errorf("%s reached %s: %q", c.name, to, out)
				}
			})
		}
	}
	wg.Wait()
	// What the upstream saw: the host's address, not a tenant's.
	if out := get(t, a.guest, "http://198.51.100.2/", "upstream"); !strings.Contains(out, "from "+uplinkIP.String()+":") {
		t.Errorf("tenant a's guest reached upstream as %q, want the host's %s", out, uplinkIP)
	}
}
