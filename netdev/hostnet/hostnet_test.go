package hostnet_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// testConfig is the network of these tests.
var testConfig = hostnet.Config{
	Bridge:  "pd-test",
	MAC:     netdev.GenerateMAC("hostnet test bridge"),
	Gateway: netip.MustParsePrefix("10.77.0.1/24"),
	Table:   "paddock-test",
}

// Addresses of the test topology.
var (
	guestIP    = netip.MustParseAddr("10.77.0.2")
	uplinkIP   = netip.MustParseAddr("198.51.100.1") // the host's, towards upstream
	upstreamIP = netip.MustParseAddr("198.51.100.2")
)

// topology is a host namespace with the network up, a guest namespace on
// the bridge (a veth in place of a VM's tap, the guest's MAC on its end)
// and an upstream namespace beyond the host's uplink, which has no route
// back to the guests' subnet: only the host's NAT lets guests reach it.
// Guest and upstream each serve HTTP on port 80.
type topology struct {
	host, guest, upstream *netnstest.NS
	cfg                   hostnet.Config
	rules                 hostnet.Rules
}

func newTopology(t *testing.T, forwards []hostnet.Forward) *topology {
	t.Helper()
	testenv.RequireTool(t, "curl", "curl")
	tp := &topology{host: netnstest.New(t), upstream: netnstest.New(t), cfg: testConfig, rules: hostnet.Rules{Forwards: forwards}}
	tp.up(t)
	tp.guest = tp.addGuest(t, "vguest", guestIP)
	tp.host.VethTo(t, tp.upstream, "uplink", "eth0", "")
	tp.host.IP(t, "addr", "add", uplinkIP.String()+"/24", "dev", "uplink")
	tp.upstream.IP(t, "addr", "add", upstreamIP.String()+"/24", "dev", "eth0")
	tp.guest.ServeHTTP(t, ":80", "guest")
	tp.upstream.ServeHTTP(t, ":80", "upstream")
	return tp
}

// guestMAC is the MAC of the guest whose bridge port is port.
func guestMAC(port string) netdev.MAC { return netdev.GenerateMAC("hostnet test guest " + port) }

// addGuest makes a guest namespace on the network: a veth whose end port
// is on the bridge (AttachPort), eth0 in the guest with guestMAC(port) and ip, a
// default route through the gateway; the guest joins the rules.
func (tp *topology) addGuest(t *testing.T, port string, ip netip.Addr) *netnstest.NS {
	t.Helper()
	g := netnstest.New(t)
	mac := guestMAC(port)
	tp.rules.Guests = append(tp.rules.Guests, hostnet.Guest{Port: port, MAC: mac, IP: ip})
	tp.setRules(t)
	tp.host.VethTo(t, g, port, "eth0", "")
	if err := tp.host.Do(func() error { return hostnet.AttachPort(tp.cfg, port) }); err != nil {
		t.Fatal(err)
	}
	g.IP(t, "link", "set", "eth0", "address", mac.String())
	g.IP(t, "addr", "add", netip.PrefixFrom(ip, tp.cfg.Gateway.Bits()).String(), "dev", "eth0")
	g.IP(t, "route", "add", "default", "via", tp.cfg.Gateway.Addr().String())
	return g
}

// up brings the topology's network up with its rules.
func (tp *topology) up(t *testing.T) {
	t.Helper()
	if err := tp.host.Do(func() error { return hostnet.Up(tp.cfg, tp.rules) }); err != nil {
		t.Fatal(err)
	}
}

// setRules replaces the topology's tables with its rules.
func (tp *topology) setRules(t *testing.T) {
	t.Helper()
	if err := tp.host.Do(func() error { return hostnet.SetRules(tp.cfg, tp.rules) }); err != nil {
		t.Fatal(err)
	}
}

// up brings the test network up in ns, without guests.
func up(t *testing.T, ns *netnstest.NS, forwards []hostnet.Forward) {
	t.Helper()
	if err := ns.Do(func() error { return hostnet.Up(testConfig, hostnet.Rules{Forwards: forwards}) }); err != nil {
		t.Fatal(err)
	}
}

// get fetches url with curl in ns; it fails the test unless the answer
// is want (its first line).
func get(t *testing.T, ns *netnstest.NS, url, want string) string {
	t.Helper()
	out, err := ns.Try("curl", "-sS", "--max-time", "10", url)
	if err != nil {
		t.Fatalf("curl %s in %s: %v\n%s", url, ns.Name, err, out)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != want {
		t.Fatalf("curl %s in %s: %q, want %q first", url, ns.Name, out, want)
	}
	return out
}

// refused checks that url cannot be fetched from ns.
func refused(t *testing.T, ns *netnstest.NS, url string) {
	t.Helper()
	if out, err := ns.Try("curl", "-sS", "--max-time", "3", url); err == nil {
		t.Fatalf("curl %s in %s succeeded: %q", url, ns.Name, out)
	}
}

// nftTable lists the network's tables (ip, then bridge) with nft, the
// oracle; "" if neither exists.
func nftTable(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	testenv.RequireTool(t, "nft", "nftables")
	var all string
	for _, family := range []string{"ip", "bridge"} {
		out, err := ns.Try("nft", "list", "table", family, testConfig.Table)
		if err != nil {
			if strings.Contains(out, "No such file or directory") {
				continue
			}
			t.Fatalf("nft list table %s: %v\n%s", family, err, out)
		}
		all += out
	}
	return all
}

func TestNATAndForwards(t *testing.T) {
	forwards := []hostnet.Forward{
		{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, GuestIP: guestIP, GuestPort: 80},
		{Proto: "tcp", HostIP: netip.IPv4Unspecified(), HostPort: 8081, GuestIP: guestIP, GuestPort: 80},
		{Proto: "udp", HostIP: uplinkIP, HostPort: 5353, GuestIP: guestIP, GuestPort: 53},
	}
	tp := newTopology(t, forwards)

	// The rules, as nft lists them.
	golden := filepath.Join("testdata", "table.nft")
	got := nftTable(t, tp.host)
	if os.Getenv("PADDOCK_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("nft list table:\n%s\nwant:\n%s", got, want)
	}
	link := tp.host.IP(t, "-d", "link", "show", testConfig.Bridge)
	if !strings.Contains(link, testConfig.MAC.String()) || !strings.Contains(link, "bridge") {
		t.Errorf("bridge:\n%s", link)
	}
	if a := tp.host.IP(t, "-4", "addr", "show", testConfig.Bridge); !strings.Contains(a, "inet 10.77.0.1/24") {
		t.Errorf("bridge addresses:\n%s", a)
	}

	// Outbound NAT: upstream sees the host's uplink address.
	if out := get(t, tp.guest, "http://198.51.100.2/", "upstream"); !strings.Contains(out, "from 198.51.100.1:") {
		t.Errorf("upstream saw the guest as %q, want the host's address", out)
	}
	// A forward on 127.0.0.1, from the host.
	if out := get(t, tp.host, "http://127.0.0.1:8080/", "guest"); !strings.Contains(out, "from 10.77.0.1:") {
		t.Errorf("the guest saw a loopback forward's client as %q, want the gateway", out)
	}
	// A forward on every address, from upstream (prerouting) and from
	// the host (output).
	get(t, tp.upstream, "http://198.51.100.1:8081/", "guest")
	get(t, tp.host, "http://198.51.100.1:8081/", "guest")
	// The loopback forward is not reachable from outside.
	refused(t, tp.upstream, "http://198.51.100.1:8080/")
	// Another guest reaching the first through a forward on the host's
	// address (hairpin): it sees the gateway, so replies come back
	// through the host's NAT.
	other := tp.addGuest(t, "vother", netip.MustParseAddr("10.77.0.3"))
	if out := get(t, other, "http://198.51.100.1:8081/", "guest"); !strings.Contains(out, "from 10.77.0.1:") {
		t.Errorf("a hairpin forward's client is %q, want the gateway", out)
	}

	// Up again with the same rules (a restarted netd) changes nothing.
	tp.rules.Guests = tp.rules.Guests[:1]
	tp.up(t)
	if again := nftTable(t, tp.host); again != got {
		t.Errorf("after a second Up:\n%s", again)
	}
	// ... but takes the ports of guests it does not know off the bridge.
	if ports := tp.host.IP(t, "-o", "link", "show", "master", testConfig.Bridge); !strings.Contains(ports, "vguest@") || strings.Contains(ports, "vother@") {
		t.Errorf("the bridge's ports after Up without vother:\n%s", ports)
	}

	// Fewer forwards: the dropped one stops at once.
	tp.rules.Forwards = forwards[1:]
	tp.setRules(t)
	refused(t, tp.host, "http://127.0.0.1:8080/")
	get(t, tp.host, "http://198.51.100.1:8081/", "guest")

	// Down leaves nothing: no table, no bridge.
	if err := tp.host.Do(func() error { return hostnet.Down(testConfig) }); err != nil {
		t.Fatal(err)
	}
	if tbl := nftTable(t, tp.host); tbl != "" {
		t.Errorf("table left after Down:\n%s", tbl)
	}
	if out, err := tp.host.Try("ip", "link", "show", testConfig.Bridge); err == nil {
		t.Errorf("bridge left after Down:\n%s", out)
	}
	if err := tp.host.Do(func() error { return hostnet.Down(testConfig) }); err != nil {
		t.Errorf("a second Down: %v", err)
	}
}

func TestUpRefusesNonBridge(t *testing.T) {
	ns := netnstest.New(t)
	ns.Veth(t, testConfig.Bridge, "peer", "")
	err := ns.Do(func() error { return hostnet.Up(testConfig, hostnet.Rules{}) })
	if !errors.Is(err, netdev.ErrNotBridge) {
		t.Fatalf("Up over a veth: %v", err)
	}
	if tbl := nftTable(t, ns); tbl != "" {
		t.Errorf("a failed Up left a table:\n%s", tbl)
	}
	// Down leaves someone else's interface alone.
	if err := ns.Do(func() error { return hostnet.Down(testConfig) }); err == nil || !strings.Contains(err.Error(), "left alone") {
		t.Errorf("Down over a veth: %v", err)
	}
	ns.IP(t, "link", "show", testConfig.Bridge)
}

func TestCheckSubnet(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "corp") // any interface with routes would do
	ns.IP(t, "addr", "add", "192.168.50.1/24", "dev", "corp")
	ns.IP(t, "route", "add", "10.0.0.0/8", "dev", "corp")
	ns.IP(t, "route", "add", "default", "via", "192.168.50.254")
	ns.IP(t, "route", "add", "172.20.0.0/16", "dev", "corp", "table", "100")
	check := func(subnet, own, want string) {
		t.Helper()
		err := ns.Do(func() error { return hostnet.CheckSubnet(netip.MustParsePrefix(subnet), own) })
		var oe *hostnet.OverlapError
		switch {
		case want == "" && err != nil:
			t.Errorf("CheckSubnet(%s): %v", subnet, err)
		case want != "" && !errors.As(err, &oe):
			t.Errorf("CheckSubnet(%s) = %v, want an overlap with %s", subnet, err, want)
		case want != "" && err.Error() != want:
			t.Errorf("CheckSubnet(%s):\n%v\nwant\n%s", subnet, err, want)
		}
	}
	check("10.77.0.0/24", "", "subnet 10.77.0.0/24 overlaps the host's route to 10.0.0.0/8 on corp")
	check("192.168.50.128/25", "", "subnet 192.168.50.128/25 overlaps the host's route to 192.168.50.0/24 on corp")
	check("172.20.5.0/24", "", "subnet 172.20.5.0/24 overlaps the host's route to 172.20.0.0/16 on corp")
	check("172.16.0.0/12", "", "subnet 172.16.0.0/12 overlaps the host's route to 172.20.0.0/16 on corp")
	check("192.0.2.0/24", "", "") // the default route does not count
	// The network's own bridge does not count.
	cfg := testConfig
	cfg.Gateway = netip.MustParsePrefix("192.0.2.1/24")
	if err := ns.Do(func() error { return hostnet.Up(cfg, hostnet.Rules{}) }); err != nil {
		t.Fatal(err)
	}
	check("192.0.2.0/24", cfg.Bridge, "")
	check("192.0.2.0/24", "", "subnet 192.0.2.0/24 overlaps the host's route to 192.0.2.0/24 on pd-test")
	// Nor, with own "pd-*", does any managed network's bridge (another
	// tenant's subnet), but other interfaces still do.
	check("192.0.2.0/24", hostnet.BridgePrefix+"*", "")
	check("10.77.0.0/24", hostnet.BridgePrefix+"*", "subnet 10.77.0.0/24 overlaps the host's route to 10.0.0.0/8 on corp")
}

func TestReserve(t *testing.T) {
	ns := netnstest.New(t)
	lo := netip.MustParseAddr("127.0.0.1")
	var taken error
	var free error
	err := ns.Do(func() error {
		c, err := hostnet.Reserve("tcp", lo, 8080)
		if err != nil {
			return err
		}
		taken = hostnet.CheckPort("tcp", netip.IPv4Unspecified(), 8080)
		free = hostnet.CheckPort("udp", lo, 8080)
		if err := c.Close(); err != nil {
			return err
		}
		if err := hostnet.CheckPort("tcp", lo, 8080); err != nil {
			return err
		}
		if _, err := hostnet.Reserve("tcp", netip.MustParseAddr("192.0.2.9"), 8080); err == nil || !strings.Contains(err.Error(), "not an address of this host") {
			return errors.New("a foreign address was reserved")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(taken, hostnet.ErrPortInUse) || taken.Error() != "host port 0.0.0.0:8080/tcp is in use" {
		t.Errorf("a reserved port: %v", taken)
	}
	if free != nil {
		t.Errorf("UDP on a reserved TCP port: %v", free)
	}
}

// TestDetachPort: DetachPort takes a port off the network's bridge, and
// leaves alone a port of another bridge (a reused name) and a port that
// is gone.
func TestDetachPort(t *testing.T) {
	ns := netnstest.New(t)
	up(t, ns, nil)
	ns.Bridge(t, "other")
	ns.Veth(t, "mine", "mine-peer", testConfig.Bridge)
	ns.Veth(t, "theirs", "theirs-peer", "other")
	for _, port := range []string{"mine", "theirs", "gone"} {
		if err := ns.Do(func() error { return hostnet.DetachPort(testConfig, port) }); err != nil {
			t.Errorf("DetachPort %s: %v", port, err)
		}
	}
	if out := ns.IP(t, "-o", "link", "show", "master", testConfig.Bridge); strings.Contains(out, "mine@") {
		t.Errorf("mine is still on %s:\n%s", testConfig.Bridge, out)
	}
	if out := ns.IP(t, "-o", "link", "show", "master", "other"); !strings.Contains(out, "theirs@") {
		t.Errorf("theirs was taken off another bridge:\n%s", out)
	}
}
