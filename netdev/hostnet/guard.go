package hostnet

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/netdev"
)

// Guest is a VM's NIC on the network: a port of the bridge (the NIC's
// tap) and the MAC and leased IPv4 address it may send from.
type Guest struct {
	Port string
	MAC  netdev.MAC
	IP   netip.Addr
}

// check validates a guest.
func (g Guest) check() error {
	switch {
	case netdev.CheckName(g.Port) != nil:
		return fmt.Errorf("hostnet: guest port %q is not an interface name", g.Port)
	case g.MAC.Multicast() || g.MAC == (netdev.MAC{}):
		return fmt.Errorf("hostnet: guest on %s: MAC %s is not a unicast address", g.Port, g.MAC)
	case !g.IP.Is4() || g.IP.IsUnspecified():
		return fmt.Errorf("hostnet: guest on %s: address %s is not an IPv4 unicast address", g.Port, g.IP)
	}
	return nil
}

// bridgePriority is the bridge family's filter priority (NF_BR_PRI_FILTER_BRIDGED).
var bridgePriority = nftables.ChainPriorityRef(-200)

// addBridgeTable queues the table of family bridge: anti-spoofing of
// each guest's port. Every frame that enters the bridge from a guest's
// port goes through the port's chain, nic-PORT, which lets through
// only
//
//	frames from the guest's MAC, and of those
//	ARP (Ethernet, IPv4) whose sender is the guest's MAC and address,
//	  or its MAC and 0.0.0.0 (an address probe, RFC 5227);
//	IPv4 from the guest's address;
//	DHCP from 0.0.0.0:68 to 255.255.255.255:67 or the gateway (a
//	  client without an address yet);
//
// and drops everything else: other sources, IPv6 (managed networks are
// IPv4 only), VLAN tags, other protocols. The bridge learns a source
// MAC only after this hook, so a dropped frame teaches it nothing.
// Taps are ports only once their chain exists (see Up for the ports
// found on a bridge).
//
// A port in the bridge's interface group (group, AttachPort) whose
// guest is not listed gets nothing through at all: the port of a guest
// that left and was not taken off the bridge. The table cannot drop
// every unlisted port: each network's table sees the frames of every
// bridge of the namespace, and the bridge family's `meta ibrname` is
// missing from kernels without nft_meta_bridge.
func addBridgeTable(conn *nftables.Conn, c Config, group uint32, guests []Guest) {
	t := replaceTable(conn, c.Table, nftables.TableFamilyBridge)
	pre := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: bridgePriority})
	for _, g := range guests {
		ch := conn.AddChain(&nftables.Chain{Name: "nic-" + g.Port, Table: t})
		rule(conn, pre, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, g.Port), jump(ch.Name))
		ip := g.IP.As4()
		rule(conn, ch, etherSource(expr.CmpOpNeq, g.MAC), drop())
		rule(conn, ch, etherType(unix.ETH_P_ARP), arpSender(g.MAC, ip), accept())
		rule(conn, ch, etherType(unix.ETH_P_ARP), arpSender(g.MAC, [4]byte{}), accept())
		rule(conn, ch, etherType(unix.ETH_P_IP), ipPrefix(12, expr.CmpOpEq, netip.PrefixFrom(g.IP, 32)), accept())
		for _, to := range []netip.Addr{netip.AddrFrom4([4]byte{255, 255, 255, 255}), c.Gateway.Addr()} {
			rule(conn, ch, etherType(unix.ETH_P_IP), ipPrefix(12, expr.CmpOpEq, netip.PrefixFrom(netip.IPv4Unspecified(), 32)),
				ipPrefix(16, expr.CmpOpEq, netip.PrefixFrom(to, 32)), udpPorts(68, 67), accept())
		}
		rule(conn, ch, drop())
	}
	// Last: a listed port's chain has decided.
	rule(conn, pre, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFGROUP, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(group)},
	}, drop())
}

// etherSource compares the frame's source MAC: `ether saddr != MAC`.
func etherSource(op expr.CmpOp, m netdev.MAC) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: op, Register: reg1, Data: m[:]},
	}
}

// etherType matches the frame's EtherType: `ether type arp`. A frame
// with a VLAN tag shows 0x8100 here.
func etherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(t)},
	}
}

// arpSender matches an Ethernet/IPv4 ARP packet from the MAC and
// address: `arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr
// ether MAC arp saddr ip IP`. The sender's hardware and protocol
// addresses are adjacent (offsets 8 and 14), one comparison.
func arpSender(m netdev.MAC, ip [4]byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0, 1, 8, 0, 6, 4}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 10},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: append(m[:], ip[:]...)},
	}
}

// udpPorts matches UDP from one port to another: `udp sport 68 udp
// dport 67`.
func udpPorts(src, dst uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: append(binaryutil.BigEndian.PutUint16(src), binaryutil.BigEndian.PutUint16(dst)...)},
	}
}

// jump is `jump CHAIN`.
func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}
