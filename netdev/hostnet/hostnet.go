// Package hostnet is the host side of a paddock managed network: a Linux
// bridge with the network's gateway address, IPv4 forwarding, and two
// nftables tables with the network's outbound NAT, port forwards,
// isolation and anti-spoofing. It works on the network namespace of the
// calling thread (the host's, in paddock; a test's own namespace in
// tests: call it from a thread that entered one) and needs
// CAP_NET_ADMIN.
//
// Bring a network up with Up and down with Down. Up is idempotent and
// repairs what it finds: a bridge left by a previous run is taken over
// (its ports that are no guest's are taken off it), the nftables tables
// are replaced as a whole, in one netlink transaction, so no packet ever
// sees half a rule set. SetRules replaces the tables again with another
// set of port forwards and guests.
//
// The table of family ip (one per network) has three NAT chains and two
// filter chains:
//
//	prerouting, output   port forwards: DNAT from a host address and port
//	                     to a guest's address and port
//	postrouting          masquerade what the guests send outside their
//	                     subnet (outbound NAT); masquerade what a port
//	                     forward on a loopback address sends into the
//	                     bridge, and forwarded traffic from one guest to
//	                     another (hairpin), so that replies come back
//	                     through the host
//	forward              drop what would be routed between this network's
//	                     bridge and another managed network's (every
//	                     bridge named BridgePrefix...), and new
//	                     connections routed into the bridge from
//	                     elsewhere (the LAN) that no port forward made
//	input                drop what the guests send to the host's addresses
//	                     other than their gateway
//
// The table of family bridge, of the same name, holds each guest's
// anti-spoofing chain (addBridgeTable): a guest sends from its own MAC
// and leased address or not at all. Put a guest's port on the bridge
// with AttachPort (after the guest is in the rules) and take it off with
// DetachPort (before it leaves them); a port AttachPort put there whose
// guest the rules do not list gets nothing through.
//
// Packets from a loopback source may leave only through an interface
// with route_localnet set; Up sets it on the bridge, and only there.
//
// A tenant's networks other than the default tenant's live in a network
// namespace of the tenant's (Uplink, UplinkUp, UplinkDown): the same
// functions bring them up there, called from a thread in that namespace
// (InNetns), and the uplink joins the namespace to the host with NAT and
// isolation of its own, so that tenants may use the same subnets.
package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/paddock-vm/paddock/netdev"
)

// BridgePrefix starts the name of every managed network's bridge: the
// isolation between networks knows them by it.
const BridgePrefix = "pd-"

// ManagedInterface says what the interface name is to the managed
// networks: "the bridge of a managed network" (BridgePrefix), "a
// tenant's uplink" (UplinkPrefix), or "" for a name they do not use.
// Only a network's netd may put a tap on its bridge: with the tap's
// anti-spoofing rules.
func ManagedInterface(name string) string {
	switch {
	case strings.HasPrefix(name, BridgePrefix):
		return "the bridge of a managed network"
	case strings.HasPrefix(name, UplinkPrefix):
		return "a tenant's uplink"
	}
	return ""
}

// Config describes one managed network's host side.
type Config struct {
	// Bridge is the bridge's interface name; it starts with
	// BridgePrefix.
	Bridge string
	// MAC is the bridge's address (fixed, so guests' ARP caches stay
	// right when taps join and leave); zero lets the kernel choose.
	MAC netdev.MAC
	// Gateway is the host's address on the network with the subnet's
	// prefix length: 10.77.0.1/24.
	Gateway netip.Prefix
	// Table is the nftables tables' name (families ip and bridge).
	Table string
}

// Subnet is the network the gateway's prefix describes.
func (c Config) Subnet() netip.Prefix { return c.Gateway.Masked() }

// check validates the configuration.
func (c Config) check() error {
	if err := netdev.CheckName(c.Bridge); err != nil {
		return fmt.Errorf("hostnet: bridge: %w", err)
	}
	if !strings.HasPrefix(c.Bridge, BridgePrefix) {
		return fmt.Errorf("hostnet: bridge %s: the name does not start with %q", c.Bridge, BridgePrefix)
	}
	if !c.Gateway.IsValid() || !c.Gateway.Addr().Is4() || c.Gateway.Bits() > 30 {
		return fmt.Errorf("hostnet: gateway %s: want an IPv4 address with a prefix length of at most 30", c.Gateway)
	}
	if c.Table == "" {
		return errors.New("hostnet: no nftables table name")
	}
	return nil
}

// Up brings the network's host side up: the bridge (created unless it
// exists; an interface of that name that is not a bridge is an error),
// its MAC and gateway address, the bridge up, route_localnet on the
// bridge, IPv4 forwarding on, and the nftables tables with r. A port
// of the bridge that is none of r's guests (a tap a previous netd put
// there, whose rules went with its table) is taken off the bridge: a
// port without anti-spoofing rules gets no frame through.
// Forwarding (net.ipv4.ip_forward) is a setting of the whole namespace
// and is left on by Down, as libvirt and Docker leave it.
func Up(c Config, r Rules) error {
	if err := c.check(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(c.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = c.Bridge
		if c.MAC != (netdev.MAC{}) {
			attrs.HardwareAddr = net.HardwareAddr(c.MAC[:])
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("hostnet: create bridge %s: %w", c.Bridge, err)
		}
		if link, err = netlink.LinkByName(c.Bridge); err != nil {
			return fmt.Errorf("hostnet: bridge %s: %w", c.Bridge, err)
		}
	case err != nil:
		return fmt.Errorf("hostnet: bridge %s: %w", c.Bridge, err)
	case link.Type() != "bridge":
		return fmt.Errorf("hostnet: %s is a %s interface, not a bridge: %w", c.Bridge, link.Type(), netdev.ErrNotBridge)
	case c.MAC != (netdev.MAC{}) && link.Attrs().HardwareAddr.String() != c.MAC.String():
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(c.MAC[:])); err != nil {
			return fmt.Errorf("hostnet: set the MAC of bridge %s: %w", c.Bridge, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: c.Gateway.Addr().AsSlice(), Mask: net.CIDRMask(c.Gateway.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("hostnet: address %s on bridge %s: %w", c.Gateway, c.Bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("hostnet: bring bridge %s up: %w", c.Bridge, err)
	}
	if err := sysctl(filepath.Join("net/ipv4/conf", c.Bridge, "route_localnet"), "1"); err != nil {
		return err
	}
	if err := sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	// Strangers go first, while a previous netd's table (if any) still
	// filters them.
	if err := detachStrangers(link, r.Guests); err != nil {
		return err
	}
	return SetRules(c, r)
}

// detachStrangers takes the ports that are none of guests' off the
// bridge.
func detachStrangers(bridge netlink.Link, guests []Guest) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("hostnet: list interfaces: %w", err)
	}
	known := map[string]bool{}
	for _, g := range guests {
		known[g.Port] = true
	}
	for _, l := range links {
		if a := l.Attrs(); a.MasterIndex == bridge.Attrs().Index && !known[a.Name] {
			if err := netlink.LinkSetNoMaster(l); err != nil {
				return fmt.Errorf("hostnet: take %s off bridge %s: %w", a.Name, bridge.Attrs().Name, err)
			}
		}
	}
	return nil
}

// Down removes the network's nftables tables and its bridge (with any
// port still on it). What is already gone is not an error.
func Down(c Config) error {
	if err := c.check(); err != nil {
		return err
	}
	err := removeTables(c.Table)
	link, lerr := netlink.LinkByName(c.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(lerr, &notFound):
	case lerr != nil:
		err = errors.Join(err, fmt.Errorf("hostnet: bridge %s: %w", c.Bridge, lerr))
	case link.Type() != "bridge":
		err = errors.Join(err, fmt.Errorf("hostnet: %s is a %s interface, not a bridge; left alone", c.Bridge, link.Type()))
	default:
		if derr := netlink.LinkDel(link); derr != nil {
			err = errors.Join(err, fmt.Errorf("hostnet: remove bridge %s: %w", c.Bridge, derr))
		}
	}
	return err
}

// sysctlDir is where sysctl writes; /proc/sys/net shows the network
// namespace of the thread that opens it.
const sysctlDir = "/proc/sys"

// sysctl sets a kernel parameter (a path under /proc/sys).
func sysctl(name, value string) error {
	if err := os.WriteFile(filepath.Join(sysctlDir, name), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("hostnet: set %s: %w", name, err)
	}
	return nil
}

// AttachPort makes the interface port (a guest's tap) a port of the
// network's bridge, in the bridge's interface group (its ifindex, which
// no other bridge of the namespace has), and brings it up. The bridge
// table drops what enters the bridge through a port of that group whose
// guest its rules do not list: put the guest in the rules first.
func AttachPort(c Config, port string) error {
	if err := c.check(); err != nil {
		return err
	}
	bridge, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		return fmt.Errorf("hostnet: bridge %s: %w", c.Bridge, err)
	}
	if bridge.Type() != "bridge" {
		return fmt.Errorf("hostnet: %s is a %s interface, not a bridge: %w", c.Bridge, bridge.Type(), netdev.ErrNotBridge)
	}
	l, err := netlink.LinkByName(port)
	if err != nil {
		return fmt.Errorf("hostnet: port %s: %w", port, err)
	}
	for _, step := range []func() error{
		func() error { return netlink.LinkSetGroup(l, bridge.Attrs().Index) },
		func() error { return netlink.LinkSetMaster(l, bridge) },
		func() error { return netlink.LinkSetUp(l) },
	} {
		if err := step(); err != nil {
			return fmt.Errorf("hostnet: add %s to bridge %s: %w", port, c.Bridge, err)
		}
	}
	return nil
}

// DetachPort takes the interface port off the network's bridge if it is
// still a port of it; an interface that is gone, or that is on another
// bridge now (its name reused), is left alone. Call it before dropping
// the port's guest from the rules: a port without anti-spoofing rules
// would pass any frame its guest sends.
func DetachPort(c Config, port string) error {
	if err := c.check(); err != nil {
		return err
	}
	l, err := netlink.LinkByName(port)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hostnet: port %s: %w", port, err)
	}
	bridge, err := netlink.LinkByName(c.Bridge)
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hostnet: bridge %s: %w", c.Bridge, err)
	}
	if l.Attrs().MasterIndex != bridge.Attrs().Index {
		return nil
	}
	if err := netlink.LinkSetNoMaster(l); err != nil {
		return fmt.Errorf("hostnet: take %s off bridge %s: %w", port, c.Bridge, err)
	}
	return nil
}
