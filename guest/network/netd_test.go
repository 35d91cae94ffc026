package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// envTestNetd makes the test binary act as netd (the hidden `paddock
// netd` command).
const envTestNetd = "PADDOCK_NETWORK_TEST_NETD"

func TestMain(m *testing.M) {
	if os.Getenv(envTestNetd) == "1" {
		os.Exit(testNetd(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testNetd parses what Attach appends, "--home HOME --user-fd 3 NAME",
// and serves the network.
func testNetd(args []string) int {
	fs := flag.NewFlagSet("netd", flag.ContinueOnError)
	home := fs.String("home", "", "")
	userFD := fs.Int("user-fd", 0, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "test netd: bad arguments", args)
		return 2
	}
	conn, err := UserConn(*userFD)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test netd:", err)
		return 1
	}
	// As paddock netd does: SIGTERM takes the network down.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = ServeNetd(ctx, NetdConfig{
		Home: *home, Name: fs.Arg(0), User: conn, ResolvConf: os.Getenv("RESOLV"),
		Logf: func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "netd:", err)
		return 1
	}
	return 0
}

// netdHost is a host namespace where the test's netds run, and the
// options that attach VMs there.
type netdHost struct {
	ns   *netnstest.NS
	st   *Store
	opts AttachOptions
}

func newNetdHost(t *testing.T) *netdHost {
	t.Helper()
	testenv.RequireTool(t, "curl", "curl")
	testenv.RequireTool(t, "nft", "nftables")
	ns := netnstest.New(t)
	home := t.TempDir()
	st, err := Open(home)
	if err != nil {
		t.Fatal(err)
	}
	resolv := filepath.Join(home, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envTestNetd, "1") // for the netds only: this process has read it
	t.Setenv("RESOLV", resolv)
	h := &netdHost{ns: ns, st: st, opts: AttachOptions{
		Home:        home,
		NetdCommand: []string{"ip", "netns", "exec", ns.Name, os.Args[0]},
	}}
	// Before home and the namespace go (cleanups run last in, first
	// out): a netd whose last VM detached is still taking its network
	// down, and writes into the network's directory as it does.
	t.Cleanup(func() {
		names, err := st.Names()
		if err != nil {
			t.Error(err)
		}
		for _, name := range names {
			h.waitNetdGone(t, name)
		}
	})
	return h
}

// waitNetdGone waits until network name's netd has exited (it holds
// netd.lock until it has taken the network down), up to LockWait.
func (h *netdHost) waitNetdGone(t *testing.T, name string) {
	t.Helper()
	unlock, err := lockFile(h.st.path(name, NetdLock))
	if err != nil {
		t.Error(err)
		return
	}
	unlock()
}

// attach attaches a VM with one NIC on network name.
// VM "other" runs in the foreground (its lease is ephemeral).
func (h *netdHost) attach(vm string, m int, name string, ports ...Port) (*Attachment, error) {
	o := h.opts
	o.VM, o.NICs, o.Ports = vm, []AttachNIC{{Index: 0, Network: name, MAC: mac(m)}}, ports
	o.Ephemeral = vm == "other"
	return Attach(o)
}

// guest plays a VM's NIC: a namespace whose eth0 (a tap, with the NIC's
// MAC) is wired to the tap netd made for the NIC, as a VMM's virtio-net
// device would be, configured by busybox udhcpc, serving HTTP on port 80.
func (h *netdHost) guest(t *testing.T, a *Attachment, m int) *netnstest.NS {
	t.Helper()
	bb := testenv.RequireTool(t, "busybox", "busybox-static")
	g := netnstest.New(t)
	name := fmt.Sprintf("vm%d", m)
	var eth0 *netdev.Tap
	if err := g.Do(func() error {
		var err error
		eth0, err = netdev.CreateTap("eth0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eth0.Close() })
	wire(a.Taps[0], eth0)
	g.IP(t, "link", "set", "eth0", "address", mac(m).String())
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncase $1 in bound) ip addr add $ip/$mask dev $interface; ip route add default via $router;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := g.Try(bb, "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", script); err != nil {
		t.Fatalf("udhcpc as %s: %v\n%s", name, err, out)
	}
	g.ServeHTTP(t, ":80", name)
	return g
}

// wire copies frames (with their virtio-net headers) between two taps,
// both ways, until either is closed.
func wire(a, b *netdev.Tap) {
	cp := func(from, to *netdev.Tap) {
		buf := make([]byte, 65536+netdev.VnetHdrLen)
		for {
			n, err := from.Read([][]byte{buf}, nil)
			if err != nil {
				return
			}
			if _, err := to.Write([][]byte{buf[:n]}); err != nil {
				return
			}
		}
	}
	go cp(a, b)
	go cp(b, a)
}

// curl fetches url in ns; "" on failure.
func curl(ns *netnstest.NS, url string) string {
	out, err := ns.Try("curl", "-sS", "--max-time", "5", url)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(out, "\n")
	return first
}

// TestNetd attaches VMs to a network in a namespace: the first starts
// netd, which brings the bridge, nftables and DHCP up; each VM's NIC gets
// its leased address from DHCP, the VMs reach each other, a port forward
// reaches its VM; a second VM with the same forward is refused; when the
// last VM detaches netd takes everything down.
func TestNetd(t *testing.T) {
	h := newNetdHost(t)
	lo := netip.MustParseAddr("127.0.0.1")
	web, err := h.attach("web", 1, DefaultName, Port{Proto: "tcp", HostIP: lo, HostPort: 8080, GuestPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	def, err := h.st.Get(DefaultName)
	if err != nil {
		t.Fatalf("default was not created on first use: %v", err)
	}
	if web.Bridges[0] != def.Bridge || !def.Subnet.Contains(web.Leases[0].IP) {
		t.Fatalf("web: bridge %s, lease %+v; network %+v", web.Bridges[0], web.Leases[0], def)
	}
	if alive, _ := h.st.netdAlive(DefaultName); !alive {
		t.Fatal("no netd runs")
	}
	db, err := h.attach("db", 2, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if db.Leases[0].IP == web.Leases[0].IP {
		t.Fatalf("web and db share %s", db.Leases[0].IP)
	}
	gw, gd := h.guest(t, web, 1), h.guest(t, db, 2)
	for g, want := range map[*netnstest.NS]Lease{gw: web.Leases[0], gd: db.Leases[0]} {
		if out := g.IP(t, "-4", "-o", "addr", "show", "eth0"); !strings.Contains(out, want.IP.String()+"/24") {
			t.Errorf("%s's address: %s, want %s", want.VM, out, want.IP)
		}
	}
	if got := curl(gw, "http://"+db.Leases[0].IP.String()+"/"); got != "vm2" {
		t.Errorf("web -> db: %q", got)
	}
	if got := curl(gd, "http://"+web.Leases[0].IP.String()+"/"); got != "vm1" {
		t.Errorf("db -> web: %q", got)
	}
	if got := curl(h.ns, "http://127.0.0.1:8080/"); got != "vm1" {
		t.Errorf("the forward of 127.0.0.1:8080: %q", got)
	}
	// netd made web's tap, a port of the bridge with web's
	// anti-spoofing rules: web with another MAC gets nothing through.
	if out := h.ns.IP(t, "-o", "link", "show", "master", def.Bridge); !strings.Contains(out, web.Taps[0].Name()+":") {
		t.Errorf("web's tap %s is not on the bridge:\n%s", web.Taps[0].Name(), out)
	}
	gw.IP(t, "link", "set", "eth0", "address", mac(9).String())
	if got := curl(gw, "http://"+db.Leases[0].IP.String()+"/"); got != "" {
		t.Errorf("web -> db from another MAC: %q", got)
	}
	gw.IP(t, "link", "set", "eth0", "address", mac(1).String())
	// netd's DNS server answers on the gateway (the host's resolver,
	// 127.0.0.1 here, has nothing: SERVFAIL; without a server the
	// client would be refused).
	bb := testenv.RequireTool(t, "busybox", "busybox-static")
	if out, _ := gw.Try(bb, "nslookup", "example.test", def.Gateway.String()); !strings.Contains(out, "SERVFAIL") {
		t.Errorf("nslookup through netd:\n%s", out)
	}

	// A VM that wants a forwarded port is refused, with its ephemeral
	// lease released; a VM attached twice is refused.
	_, err = h.attach("other", 3, DefaultName, Port{Proto: "tcp", HostIP: lo, HostPort: 8080, GuestPort: 80})
	if err == nil || !strings.Contains(err.Error(), "network default: ports: 127.0.0.1:8080:80/tcp: host port 127.0.0.1:8080/tcp is in use") {
		t.Errorf("a forwarded port again: %v", err)
	}
	if _, err := h.attach("web", 1, DefaultName); err == nil || !strings.Contains(err.Error(), "VM web is already attached to network default") {
		t.Errorf("web twice: %v", err)
	}
	if err := h.st.Remove(DefaultName); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove while in use: %v", err)
	}

	// web leaves: its forward goes, netd stays for db.
	if err := web.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returned once netd detached web: the port is free.
	again, err := h.attach("other", 3, DefaultName, Port{Proto: "tcp", HostIP: lo, HostPort: 8080, GuestPort: 81})
	if err != nil {
		t.Fatalf("after web left, its port: %v", err)
	}
	again.Close()
	if got := curl(h.ns, "http://127.0.0.1:8080/"); got != "" {
		t.Errorf("web's forward after it left: %q", got)
	}
	if alive, _ := h.st.netdAlive(DefaultName); !alive {
		t.Fatal("netd stopped while db is attached")
	}
	// The last VM leaves: nothing of the network stays on the host.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitNetdGone(t, DefaultName)
	if out, err := h.ns.Try("ip", "link", "show", def.Bridge); err == nil {
		t.Errorf("the bridge outlived netd:\n%s", out)
	}
	if out, _ := h.ns.Try("nft", "list", "tables"); strings.Contains(out, def.Table) {
		t.Errorf("the nftables table outlived netd:\n%s", out)
	}
	if _, err := os.Stat(h.st.path(DefaultName, NetdSocket)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netd.sock: %v", err)
	}
	leases, _ := h.st.Leases(DefaultName)
	if len(leases) != 2 { // web's and db's stay until the VMs are removed; other's was ephemeral
		t.Errorf("leases after the VMs left: %+v", leases)
	}
	if log, err := os.ReadFile(h.st.path(DefaultName, NetdLog)); err == nil {
		t.Logf("netd.log:\n%s", log)
	}
}

// TestAttachConcurrently: VMs that start at once on a network that is
// down all attach, to one netd, with distinct addresses.
func TestAttachConcurrently(t *testing.T) {
	h := newNetdHost(t)
	const n = 4
	type result struct {
		a   *Attachment
		err error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			a, err := h.attach(fmt.Sprintf("vm%d", i), 10+i, DefaultName)
			results <- result{a, err}
		}()
	}
	seen := map[netip.Addr]bool{}
	var all []*Attachment
	for range n {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		all = append(all, r.a)
		if ip := r.a.Leases[0].IP; seen[ip] {
			t.Errorf("%s twice", ip)
		} else {
			seen[ip] = true
		}
	}
	log, _ := os.ReadFile(h.st.path(DefaultName, NetdLog))
	if got := strings.Count(string(log), "is up"); got != 1 {
		t.Errorf("the network came up %d times:\n%s", got, log)
	}
	for _, a := range all {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestNetdSIGTERM: netd told to stop takes the network down at once, VMs
// attached or not, and the VMs' connections end.
func TestNetdSIGTERM(t *testing.T) {
	h := newNetdHost(t)
	web, err := h.attach("web", 1, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	in, err := h.st.Info(DefaultName)
	if err != nil || in.State != "up" || in.NetdPID <= 0 {
		t.Fatalf("Info: %+v, %v", in, err)
	}
	if err := syscall.Kill(in.NetdPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// netd closes web's connection as it exits: Close returns then.
	if err := web.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitNetdGone(t, DefaultName)
	if out, err := h.ns.Try("ip", "link", "show", in.Bridge); err == nil {
		t.Errorf("the bridge outlived netd:\n%s", out)
	}
	if in, err := h.st.Info(DefaultName); err != nil || in.State != "down" || in.NetdPID != 0 {
		t.Errorf("Info after SIGTERM: %+v, %v", in, err)
	}
}

// TestNetdTenant attaches a VM of another tenant and one of the default
// tenant: the tenant's netd runs in the tenant's namespace (made on
// first use, with its uplink), where its bridge, tables and the VM's tap
// are; the two networks have the same subnet and the two VMs get the
// same address from DHCP; a port forward reaches the tenant's VM from
// the host (through the uplink), and holds its host port, and its port
// in the tenant's namespace against the tenant's other forwards; when the
// tenant's last VM leaves, the forward, the namespace, the uplink and its
// table go.
func TestNetdTenant(t *testing.T) {
	h := newNetdHost(t)
	// The netds of the host's namespace run where Attach runs (here:
	// in h.ns), the tenant's in the namespace Attach made.
	h.opts.NetdCommand = []string{os.Args[0]}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	tenant := "t" + hex.EncodeToString(b[:])
	u := tenantUplink(tenant)
	attach := func(vm string, m int, name string, ports ...Port) (a *Attachment, err error) {
		if derr := h.ns.Do(func() error {
			a, err = h.attach(vm, m, name, ports...)
			return nil
		}); derr != nil {
			t.Fatal(derr)
		}
		return a, err
	}
	ref := Ref(tenant, DefaultName)
	lo := netip.MustParseAddr("127.0.0.1")
	web, err := attach("web", 1, ref, Port{Proto: "tcp", HostIP: lo, HostPort: 8080, GuestPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	db, err := attach("db", 2, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mine, err := h.st.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	def, err := h.st.Get(DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if mine.Subnet != def.Subnet || web.Leases[0].IP != db.Leases[0].IP {
		t.Errorf("the tenant's network %s and lease %s, the default tenant's %s and %s: want the same", mine.Subnet, web.Leases[0].IP, def.Subnet, db.Leases[0].IP)
	}
	if !hostnet.NetnsExists(u.NS) {
		t.Fatalf("no namespace %s", u.NS)
	}
	if out, err := h.ns.Try("ip", "link", "show", mine.Bridge); err == nil {
		t.Errorf("the tenant's bridge is in the host's namespace:\n%s", out)
	}
	if out, err := exec.Command("ip", "-n", u.NS, "-o", "link", "show", "master", mine.Bridge).CombinedOutput(); err != nil || !strings.Contains(string(out), web.Taps[0].Name()+":") {
		t.Errorf("web's tap %s on the tenant's bridge in %s: %v\n%s", web.Taps[0].Name(), u.NS, err, out)
	}
	gw, gd := h.guest(t, web, 1), h.guest(t, db, 2)
	for g, want := range map[*netnstest.NS]Lease{gw: web.Leases[0], gd: db.Leases[0]} {
		if out := g.IP(t, "-4", "-o", "addr", "show", "eth0"); !strings.Contains(out, want.IP.String()+"/24") {
			t.Errorf("%s's address: %s, want %s", want.VM, out, want.IP)
		}
	}
	if got := curl(h.ns, "http://127.0.0.1:8080/"); got != "vm1" {
		t.Errorf("the forward of 127.0.0.1:8080 into the tenant's namespace: %q", got)
	}
	if _, err := attach("other", 3, DefaultName, Port{Proto: "tcp", HostIP: lo, HostPort: 8080, GuestPort: 80}); err == nil || !strings.Contains(err.Error(), "host port 127.0.0.1:8080/tcp is in use") {
		t.Errorf("the tenant's forwarded port for a VM of the default tenant: %v", err)
	}
	// Another VM of the tenant with a forward of the same port from
	// another host address: inside the namespace both would be the
	// uplink's address and that port.
	api, err := attach("api", 4, ref, Port{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 8080, GuestPort: 80})
	if err == nil {
		api.Close()
	}
	if want := "ports: 127.0.0.2:8080:80/tcp: host port 8080/tcp is in use by VM web (tcp 127.0.0.1:8080 -> " + web.Leases[0].IP.String() + ":80)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a second forward of the tenant's port 8080: %v, want %q", err, want)
	}
	// ... and on another network of the tenant, whose netd shares the
	// namespace.
	lan := Ref(tenant, "lan")
	if _, err := h.st.Create(lan, netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	api, err = attach("api", 4, lan, Port{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 8080, GuestPort: 80})
	if err == nil {
		api.Close()
	}
	if want := "ports: 127.0.0.2:8080:80/tcp: host port 8080/tcp is in use by a VM on another network of tenant " + tenant; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a forward of the tenant's port 8080 on its other network: %v, want %q", err, want)
	}
	h.waitNetdGone(t, lan)
	if got := curl(h.ns, "http://127.0.0.1:8080/"); got != "vm1" {
		t.Errorf("the forward of 127.0.0.1:8080 after api was refused: %q", got)
	}
	if err := web.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitNetdGone(t, ref)
	if hostnet.NetnsExists(u.NS) {
		t.Errorf("namespace %s outlived the tenant's last network", u.NS)
	}
	if out, _ := h.ns.Try("ip", "-o", "link"); strings.Contains(out, u.HostVeth) {
		t.Errorf("uplink %s outlived the tenant's last network:\n%s", u.HostVeth, out)
	}
	if out, _ := h.ns.Try("nft", "list", "tables"); strings.Contains(out, u.Table) || strings.Contains(out, mine.Table) {
		t.Errorf("table %s or %s outlived the tenant's last network:\n%s", u.Table, mine.Table, out)
	}
	if got := curl(h.ns, "http://127.0.0.1:8080/"); got != "" {
		t.Errorf("the tenant's forward after its VM left: %q", got)
	}
	if log, err := os.ReadFile(h.st.path(ref, NetdLog)); err == nil {
		t.Logf("netd.log:\n%s", log)
	}
}

// sendUDP sends one datagram from src (an address of ns) to to.
func sendUDP(t *testing.T, ns *netnstest.NS, src netip.Addr, to netip.AddrPort, msg string) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	}); err != nil {
		t.Fatalf("send UDP from %s to %s in %s: %v", src, to, ns.Name, err)
	}
}

// listenUDP binds a UDP port on every address of ns; next returns the
// next datagram's payload and source, or "" after 3 s without one.
func listenUDP(t *testing.T, ns *netnstest.NS, port uint16) (next func() (string, netip.Addr)) {
	t.Helper()
	var c net.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() (string, netip.Addr) {
		buf := make([]byte, 1500)
		if err := c.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return "", netip.Addr{}
		}
		return string(buf[:n]), from.(*net.UDPAddr).AddrPort().Addr().Unmap()
	}
}

// TestNetdLeaveDetachesTap: a VM that closes its connection to netd but
// keeps its tap (a compromised VMM can) has the tap taken off the
// bridge before its anti-spoofing rules go, so what it sends from an
// address that is not its own reaches its neighbour neither before nor
// after.
func TestNetdLeaveDetachesTap(t *testing.T) {
	h := newNetdHost(t)
	web, err := h.attach("web", 1, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	db, err := h.attach("db", 2, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gw, gd := h.guest(t, web, 1), h.guest(t, db, 2)
	own := web.Leases[0].IP
	spoofed := own.Next().Next().Next()
	for spoofed == db.Leases[0].IP {
		spoofed = spoofed.Next()
	}
	gw.IP(t, "addr", "add", spoofed.String()+"/32", "dev", "eth0")
	next := listenUDP(t, gd, 9)
	to := netip.AddrPortFrom(db.Leases[0].IP, 9)
	// Attached: the rules drop what web sends from the other address;
	// what it sends from its own arrives (the first to arrive).
	sendUDP(t, gw, spoofed, to, "spoofed")
	sendUDP(t, gw, own, to, "own")
	if msg, from := next(); msg != "own" || from != own {
		t.Fatalf("db received %q from %s, want %q from %s", msg, from, "own", own)
	}
	// web's VMM closes its connection and keeps the tap.
	taps := web.TakeTaps()
	t.Cleanup(func() {
		for _, tap := range taps {
			tap.Close()
		}
	})
	if err := web.Close(); err != nil {
		t.Fatal(err)
	}
	def, err := h.st.Get(DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if out := h.ns.IP(t, "-o", "link", "show", "master", def.Bridge); strings.Contains(out, taps[0].Name()+":") {
		t.Errorf("web's tap %s is still on the bridge after web left:\n%s", taps[0].Name(), out)
	}
	sendUDP(t, gw, spoofed, to, "spoofed after leaving")
	if msg, from := next(); msg != "" {
		t.Errorf("after web left, db received %q from %s", msg, from)
	}
}
