package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UplinkPrefix starts the host end's name of every tenant namespace's
// uplink (a veth pair); the isolation between tenants knows them by it.
const UplinkPrefix = "pt-"

// UplinkRange is where the uplinks' /30s come from: the end of the
// shared address space (RFC 6598), which is for carrier-grade NAT and so
// rarely on a host's own links.
var UplinkRange = netip.MustParsePrefix("100.127.0.0/16")

// NetnsDir holds the named network namespaces, as iproute2 keeps them.
const NetnsDir = "/run/netns"

// Uplink is a tenant's network namespace, NetnsDir/NS, and the veth pair
// that joins it to the host's: HostVeth in the host's namespace with
// Addr (a /30 of UplinkRange), NSVeth in the tenant's with the next
// address and a default route through Addr. The host masquerades what
// comes from the /30 on its way out (the tenant's bridges masquerade
// their guests to NSVeth's address first), and its table Table keeps the
// namespace from every managed network and other uplink and from the
// host's own addresses.
type Uplink struct {
	NS       string
	HostVeth string
	NSVeth   string
	Addr     netip.Prefix
	Table    string
}

// Peer is NSVeth's address: the one after Addr's.
func (u Uplink) Peer() netip.Prefix { return netip.PrefixFrom(u.Addr.Addr().Next(), u.Addr.Bits()) }

// check validates the uplink.
func (u Uplink) check() error {
	switch {
	case u.NS == "" || strings.ContainsAny(u.NS, "/\x00") || u.NS == "." || u.NS == "..":
		return fmt.Errorf("hostnet: uplink: %q is not a namespace name", u.NS)
	case !strings.HasPrefix(u.HostVeth, UplinkPrefix) || len(u.HostVeth) > unix.IFNAMSIZ-1 || u.NSVeth == "" || len(u.NSVeth) > unix.IFNAMSIZ-1:
		return fmt.Errorf("hostnet: uplink %s: interface names %q and %q are not valid", u.NS, u.HostVeth, u.NSVeth)
	case u.Table == "":
		return fmt.Errorf("hostnet: uplink %s: no nftables table name", u.NS)
	}
	return nil
}

// PickUplinkAddr returns the host end's address for a new uplink: the
// first /30 of UplinkRange that no interface's address and no route of
// the host overlaps. Callers serialise picking and UplinkUp.
func PickUplinkAddr() (netip.Prefix, error) {
	for a := UplinkRange.Addr(); UplinkRange.Contains(a); {
		p := netip.PrefixFrom(a, 30)
		if CheckSubnet(p, "") == nil {
			return netip.PrefixFrom(a.Next(), 30), nil
		}
		for range 4 {
			a = a.Next()
		}
	}
	return netip.Prefix{}, fmt.Errorf("hostnet: no free /30 for a tenant's uplink in %s", UplinkRange)
}

// UplinkAddr returns the address of an existing uplink's host end, or
// false if there is none.
func UplinkAddr(hostVeth string) (netip.Prefix, bool) {
	l, err := netlink.LinkByName(hostVeth)
	if err != nil {
		return netip.Prefix{}, false
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		return netip.Prefix{}, false
	}
	ip, _ := netip.AddrFromSlice(addrs[0].IP.To4())
	bits, _ := addrs[0].Mask.Size()
	return netip.PrefixFrom(ip, bits), true
}

// UplinkUp makes the tenant's namespace and its uplink, or repairs them:
// the namespace (kept as NetnsDir/NS), the veth pair, addresses, routes,
// forwarding in both namespaces, and the host's table. It works from the
// calling thread's namespace, which is "the host".
func UplinkUp(u Uplink) error {
	if err := u.check(); err != nil {
		return err
	}
	if !u.Addr.Addr().Is4() || u.Addr.Bits() != 30 {
		return fmt.Errorf("hostnet: uplink %s: address %s is not in a /30", u.NS, u.Addr)
	}
	ns, err := openOrMakeNetns(u.NS)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	// Route netlink only: a handle's default families include XFRM,
	// which a kernel without IPsec refuses.
	inside, err := netlink.NewHandleAt(netns.NsHandle(ns), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("hostnet: netlink in namespace %s: %w", u.NS, err)
	}
	defer inside.Close()
	host, err := netlink.LinkByName(u.HostVeth)
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = u.HostVeth
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: u.NSVeth, PeerNamespace: netlink.NsFd(ns)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("hostnet: uplink %s: create veth %s: %w", u.NS, u.HostVeth, err)
		}
		if host, err = netlink.LinkByName(u.HostVeth); err != nil {
			return fmt.Errorf("hostnet: uplink %s: %w", u.NS, err)
		}
	}
	if err := netlink.AddrReplace(host, nlAddr(u.Addr)); err != nil {
		return fmt.Errorf("hostnet: uplink %s: address %s on %s: %w", u.NS, u.Addr, u.HostVeth, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("hostnet: uplink %s: bring %s up: %w", u.NS, u.HostVeth, err)
	}
	peer, err := inside.LinkByName(u.NSVeth)
	if err != nil {
		return fmt.Errorf("hostnet: uplink %s: %s in the namespace: %w", u.NS, u.NSVeth, err)
	}
	lo, err := inside.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("hostnet: uplink %s: lo: %w", u.NS, err)
	}
	for _, step := range []func() error{
		func() error { return inside.LinkSetUp(lo) },
		func() error { return inside.AddrReplace(peer, nlAddr(u.Peer())) },
		func() error { return inside.LinkSetUp(peer) },
		func() error {
			return inside.RouteReplace(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: u.Addr.Addr().AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}})
		},
		func() error { return InNetns(ns, func() error { return sysctl("net/ipv4/ip_forward", "1") }) },
		func() error { return sysctl("net/ipv4/ip_forward", "1") },
		// A loopback port forward's packets go into the uplink.
		func() error { return sysctl(filepath.Join("net/ipv4/conf", u.HostVeth, "route_localnet"), "1") },
	} {
		if err := step(); err != nil {
			return fmt.Errorf("hostnet: uplink %s: %w", u.NS, err)
		}
	}
	return setUplinkTable(u)
}

// setUplinkTable replaces the host's table of the uplink: masquerade of
// the namespace's traffic out of the host, and its isolation.
func setUplinkTable(u Uplink) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("hostnet: nftables: %w", err)
	}
	t := replaceTable(conn, u.Table, nftables.TableFamilyIPv4)
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	fwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	in := conn.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	rule(conn, post, ipPrefix(12, expr.CmpOpEq, u.Addr.Masked()), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, u.HostVeth), masq())
	// Nothing routed between the namespace and a managed network of the
	// host's namespace or another tenant's namespace, either way.
	for _, other := range []string{BridgePrefix + "*", UplinkPrefix + "*"} {
		rule(conn, fwd, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, u.HostVeth), ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, other), drop())
		rule(conn, fwd, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, u.HostVeth), ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, other), drop())
	}
	// Nothing from elsewhere starts a connection into the namespace
	// but a port forward.
	rule(conn, fwd, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, u.HostVeth), ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, u.HostVeth), unsolicited(), drop())
	// The namespace reaches none of the host's addresses; replies to
	// what the host started pass.
	rule(conn, in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, u.HostVeth), ctReply(), accept())
	rule(conn, in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, u.HostVeth), localDaddr(), drop())
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("hostnet: uplink %s: nftables table %s: %w", u.NS, u.Table, err)
	}
	return nil
}

// SetUplinkForwards replaces the host's table name (family ip) with the
// host's half of port forwards into the uplink's namespace: connections
// to a forward's HostIP:HostPort go to the uplink's inner address, same
// port, where the namespace's network table takes them on to the guest
// (its forward from Peer:HostPort); what a loopback forward sends into
// the uplink is masqueraded (127.0.0.1 may not leave the host). No
// forwards remove the table.
func SetUplinkForwards(u Uplink, name string, forwards []Forward) error {
	if err := u.check(); err != nil {
		return err
	}
	if len(forwards) == 0 {
		return removeTable(name, nftables.TableFamilyIPv4)
	}
	for _, f := range forwards {
		if err := f.check(); err != nil {
			return err
		}
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("hostnet: nftables: %w", err)
	}
	t := replaceTable(conn, name, nftables.TableFamilyIPv4)
	pre := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := conn.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	rule(conn, post, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, u.HostVeth), ipPrefix(12, expr.CmpOpEq, netip.MustParsePrefix("127.0.0.0/8")), masq())
	for _, f := range forwards {
		r := [][]expr.Any{daddr(f.HostIP), port(f.Proto, f.HostPort), dnat(u.Peer().Addr(), f.HostPort)}
		rule(conn, out, r...)
		if !f.HostIP.IsLoopback() {
			rule(conn, pre, r...)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("hostnet: uplink %s: nftables table %s: %w", u.NS, name, err)
	}
	return nil
}

// UplinkDown removes the uplink (the host's table, the veth pair) and
// the namespace with whatever is left in it. What is already gone is not
// an error.
func UplinkDown(u Uplink) error {
	if err := u.check(); err != nil {
		return err
	}
	err := removeTable(u.Table, nftables.TableFamilyIPv4)
	if l, lerr := netlink.LinkByName(u.HostVeth); lerr == nil {
		if derr := netlink.LinkDel(l); derr != nil {
			err = errors.Join(err, fmt.Errorf("hostnet: uplink %s: remove %s: %w", u.NS, u.HostVeth, derr))
		}
	}
	path := filepath.Join(NetnsDir, u.NS)
	if merr := unix.Unmount(path, unix.MNT_DETACH); merr != nil && !errors.Is(merr, unix.EINVAL) && !errors.Is(merr, unix.ENOENT) {
		err = errors.Join(err, fmt.Errorf("hostnet: uplink %s: unmount %s: %w", u.NS, path, merr))
	}
	if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("hostnet: uplink %s: %w", u.NS, rerr))
	}
	return err
}

// NetnsExists reports whether the named namespace exists.
func NetnsExists(name string) bool {
	var st unix.Statfs_t
	return unix.Statfs(filepath.Join(NetnsDir, name), &st) == nil && st.Type == unix.NSFS_MAGIC
}

// OpenNetns opens the named namespace (NetnsDir/name).
func OpenNetns(name string) (int, error) {
	fd, err := unix.Open(filepath.Join(NetnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("hostnet: network namespace %s: %w", name, err)
	}
	return fd, nil
}

// openOrMakeNetns opens the named namespace, making it first if it does
// not exist: a new namespace, kept by a bind mount of it on
// NetnsDir/name as iproute2 does.
func openOrMakeNetns(name string) (int, error) {
	if NetnsExists(name) {
		return OpenNetns(name)
	}
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return -1, fmt.Errorf("hostnet: %w", err)
	}
	shareNetnsDir()
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return -1, fmt.Errorf("hostnet: network namespace %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread is in the new namespace and dies
		// with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("hostnet: new network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("hostnet: keep network namespace %s: %w", name, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return -1, err
	}
	return OpenNetns(name)
}

// shareNetnsDir makes NetnsDir a shared mount, as iproute2 does, so that
// a namespace kept there shows in the mount namespaces made after (a
// service's private ones), and one made there shows here. Where that
// fails, the namespaces still work, from the mount namespace that made
// them.
func shareNetnsDir() {
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, "") == nil {
			_ = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
}

// InNetns runs fn on an OS thread that has entered the namespace ns:
// what fn creates (interfaces, sockets, processes it starts) belongs to
// it. The thread is discarded afterwards.
func InNetns(ns int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime ends the thread with the
		// goroutine, so no other goroutine runs in the namespace.
		runtime.LockOSThread()
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("hostnet: enter a network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// HasBridges reports whether the calling thread's namespace has a
// managed network's bridge (an interface named BridgePrefix...).
func HasBridges() (bool, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return false, fmt.Errorf("hostnet: list interfaces: %w", err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, BridgePrefix) && l.Type() == "bridge" {
			return true, nil
		}
	}
	return false, nil
}

// LocalAddrs returns the IPv4 addresses of the calling thread's
// namespace's interfaces.
func LocalAddrs() ([]netip.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			out = append(out, ip)
		}
	}
	return out, nil
}

// nlAddr is a prefix as netlink takes it.
func nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
}
