package dhcpd_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/dhcpd"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

var (
	serverIP = netip.MustParseAddr("10.77.0.1")
	subnet   = netip.MustParsePrefix("10.77.0.0/24")
	webMAC   = mustMAC("02:00:00:00:00:0a")
	dbMAC    = mustMAC("02:00:00:00:00:0b")
	nobody   = mustMAC("02:00:00:00:00:ff")
	leases   = map[netdev.MAC]dhcpd.Lease{
		webMAC: {IP: netip.MustParseAddr("10.77.0.2"), Hostname: "web"},
		dbMAC:  {IP: netip.MustParseAddr("10.77.0.3")},
	}
)

func lookup(m netdev.MAC) (dhcpd.Lease, bool) {
	l, ok := leases[m]
	return l, ok
}

// logs collects a server's messages.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func config(log *logs) dhcpd.Config {
	return dhcpd.Config{Interface: "pd-test", ServerIP: serverIP, Subnet: subnet, LeaseTime: time.Hour, Lookup: lookup, Logf: log.logf}
}

// TestReply checks the answer to each kind of request, without sockets.
func TestReply(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "pd-test")
	log := &logs{}
	var s *dhcpd.Server
	if err := ns.Do(func() (err error) { s, err = dhcpd.Listen(config(log)); return err }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hw := func(m netdev.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }
	discover := func(m netdev.MAC) *dhcpv4.DHCPv4 {
		d, err := dhcpv4.NewDiscovery(hw(m))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	request := func(m netdev.MAC, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		r, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw(m)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	server := net.IP(serverIP.AsSlice())
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		typ  dhcpv4.MessageType // 0: no reply
		your string
	}{
		{"discover", discover(webMAC), dhcpv4.MessageTypeOffer, "10.77.0.2"},
		{"discover without a lease", discover(nobody), 0, ""},
		{"request of the lease", request(webMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.2"))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server))), dhcpv4.MessageTypeAck, "10.77.0.2"},
		{"init-reboot", request(dbMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.3")))), dhcpv4.MessageTypeAck, "10.77.0.3"},
		{"renewal", request(dbMAC, dhcpv4.WithClientIP(net.ParseIP("10.77.0.3"))), dhcpv4.MessageTypeAck, "10.77.0.3"},
		{"request of another address", request(webMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.3")))), dhcpv4.MessageTypeNak, "0.0.0.0"},
		{"request to another server", request(webMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.9"))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.254")))), 0, ""},
		{"request without a lease", request(nobody, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.2")))), 0, ""},
		{"inform", request(webMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.ParseIP("10.77.0.2"))), dhcpv4.MessageTypeAck, "0.0.0.0"},
		{"release", request(webMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease)), 0, ""},
		{"a reply", request(webMAC, dhcpv4.WithReply(discover(webMAC))), 0, ""},
		{"not Ethernet", request(webMAC, dhcpv4.WithHwAddr(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8})), 0, ""},
	}
	for _, tc := range tests {
		resp := s.Reply(tc.req)
		switch {
		case tc.typ == 0 && resp != nil:
			t.Errorf("%s: %s", tc.name, resp.Summary())
		case tc.typ == 0:
		case resp == nil:
			t.Errorf("%s: no reply", tc.name)
		case resp.MessageType() != tc.typ || resp.YourIPAddr.String() != tc.your:
			t.Errorf("%s: %s %s, want %s %s", tc.name, resp.MessageType(), resp.YourIPAddr, tc.typ, tc.your)
		case resp.TransactionID != tc.req.TransactionID || !resp.ServerIdentifier().Equal(server):
			t.Errorf("%s: %s", tc.name, resp.Summary())
		case tc.typ != dhcpv4.MessageTypeNak && (!resp.Router()[0].Equal(server) || !resp.DNS()[0].Equal(server) || resp.SubnetMask().String() != "ffffff00"):
			t.Errorf("%s: options %s", tc.name, resp.Summary())
		}
	}
	if l := log.String(); !strings.Contains(l, "DISCOVER from 02:00:00:00:00:ff: no lease for this MAC") {
		t.Errorf("log:\n%s", l)
	}
}

// TestUdhcpc runs busybox's DHCP client in namespaces on the server's
// bridge: clients with leases get their own address, netmask, router,
// DNS server and host name; a client without one gets nothing.
func TestUdhcpc(t *testing.T) {
	bb := testenv.RequireTool(t, "busybox", "busybox-static")
	host := netnstest.New(t)
	host.Bridge(t, "pd-test")
	host.IP(t, "addr", "add", "10.77.0.1/24", "dev", "pd-test")
	log := &logs{}
	var s *dhcpd.Server
	if err := host.Do(func() (err error) { s, err = dhcpd.Listen(config(log)); return err }); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	defer func() {
		s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip subnet=$subnet router=$router dns=$dns hostname=$hostname lease=$lease serverid=$serverid\" > \"$OUT\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	client := func(name string, mac netdev.MAC) (string, error) {
		ns := netnstest.New(t)
		host.VethTo(t, ns, "v"+name, "eth0", "pd-test")
		ns.IP(t, "link", "set", "eth0", "address", mac.String())
		out := filepath.Join(dir, name)
		cmdOut, err := ns.Try("env", "OUT="+out, bb, "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", "eth0", "-s", script)
		if err != nil {
			return cmdOut, err
		}
		b, err := os.ReadFile(out)
		return strings.TrimSpace(string(b)), err
	}
	for name, want := range map[string]string{
		"web": "ip=10.77.0.2 subnet=255.255.255.0 router=10.77.0.1 dns=10.77.0.1 hostname=web lease=3600 serverid=10.77.0.1",
		"db":  "ip=10.77.0.3 subnet=255.255.255.0 router=10.77.0.1 dns=10.77.0.1 hostname= lease=3600 serverid=10.77.0.1",
	} {
		mac := webMAC
		if name == "db" {
			mac = dbMAC
		}
		got, err := client(name, mac)
		if err != nil || got != want {
			t.Errorf("udhcpc as %s: %v\n%s\nwant %s", name, err, got, want)
		}
	}
	if out, err := client("nobody", nobody); err == nil {
		t.Errorf("a client without a lease got one:\n%s", out)
	}
}

func mustMAC(s string) netdev.MAC {
	m, err := netdev.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
