package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Forward is one port forward: connections to HostIP:HostPort (any local
// address when HostIP is 0.0.0.0) go to GuestIP:GuestPort.
type Forward struct {
	// Proto is "tcp" or "udp".
	Proto     string
	HostIP    netip.Addr
	HostPort  uint16
	GuestIP   netip.Addr
	GuestPort uint16
}

// String is the forward as nft lists it, near enough for messages:
// "tcp 127.0.0.1:8080 -> 10.77.0.2:80".
func (f Forward) String() string {
	return fmt.Sprintf("%s %s -> %s", f.Proto, netip.AddrPortFrom(f.HostIP, f.HostPort), netip.AddrPortFrom(f.GuestIP, f.GuestPort))
}

// check validates a forward.
func (f Forward) check() error {
	switch {
	case f.Proto != "tcp" && f.Proto != "udp":
		return fmt.Errorf("hostnet: forward %s: protocol must be tcp or udp", f)
	case !f.HostIP.Is4() || !f.GuestIP.Is4():
		return fmt.Errorf("hostnet: forward %s: addresses must be IPv4", f)
	case f.HostPort == 0 || f.GuestPort == 0:
		return fmt.Errorf("hostnet: forward %s: port 0", f)
	}
	return nil
}

// Registers of nftables expressions (NFT_REG_1, NFT_REG_2).
const (
	reg1 = 1
	reg2 = 2
)

// Rules are what a network's nftables tables hold besides its fixed
// rules: the running VMs' port forwards and NICs.
type Rules struct {
	Forwards []Forward
	Guests   []Guest
}

// check validates the rules.
func (r Rules) check() error {
	for _, f := range r.Forwards {
		if err := f.check(); err != nil {
			return err
		}
	}
	ports := map[string]bool{}
	for _, g := range r.Guests {
		if err := g.check(); err != nil {
			return err
		}
		if ports[g.Port] {
			return fmt.Errorf("hostnet: port %s is listed twice", g.Port)
		}
		ports[g.Port] = true
	}
	return nil
}

// SetRules replaces the network's two nftables tables (family ip: NAT,
// forwards and isolation; family bridge: the NICs' anti-spoofing) with
// ones holding r, in one transaction. Precondition: the bridge is up
// (Up).
func SetRules(c Config, r Rules) error {
	if err := c.check(); err != nil {
		return err
	}
	if err := r.check(); err != nil {
		return err
	}
	bridge, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		return fmt.Errorf("hostnet: bridge %s: %w", c.Bridge, err)
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("hostnet: nftables: %w", err)
	}
	addIPTable(conn, c, r.Forwards)
	addBridgeTable(conn, c, uint32(bridge.Attrs().Index), r.Guests)
	if err := conn.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("hostnet: nftables tables %s: %w (a kernel module missing? managed networks need %s)", c.Table, err, strings.Join(Modules, ", "))
		}
		return fmt.Errorf("hostnet: nftables tables %s: %w", c.Table, err)
	}
	return nil
}

// Modules are the kernel modules the tables need, where a kernel has
// them as modules (Debian's): the kernel loads them on first use, and
// names none when one is missing, only ENOENT.
var Modules = []string{"nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct", "nft_fib_ipv4", "nft_meta_bridge"}

// replaceTable queues the table's replacement: add (a no-op if it
// exists), delete, add, so that it is replaced whether or not it
// existed.
func replaceTable(conn *nftables.Conn, name string, family nftables.TableFamily) *nftables.Table {
	t := &nftables.Table{Name: name, Family: family}
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	return t
}

// rule queues a rule made of the expression lists, in order.
func rule(conn *nftables.Conn, ch *nftables.Chain, exprs ...[]expr.Any) {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	conn.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: all})
}

// addIPTable queues the table of family ip: NAT and forwards, and the
// isolation of the network from the others and from the host.
func addIPTable(conn *nftables.Conn, c Config, forwards []Forward) {
	t := replaceTable(conn, c.Table, nftables.TableFamilyIPv4)
	baseChain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return conn.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio})
	}
	pre := baseChain("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := baseChain("output", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := baseChain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	fwd := baseChain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	in := baseChain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	subnet := c.Subnet()
	// Outbound NAT: guests to anywhere outside their subnet.
	rule(conn, post, ipPrefix(12, expr.CmpOpEq, subnet), ipPrefix(16, expr.CmpOpNeq, subnet), masq())
	// Port forwards on loopback addresses: their source, 127.0.0.1, may
	// not leave the host.
	rule(conn, post, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, c.Bridge), ipPrefix(12, expr.CmpOpEq, netip.MustParsePrefix("127.0.0.0/8")), masq())
	// A guest reaching another (or itself) through a forward: without
	// this the reply would go straight back, skipping the host's NAT.
	rule(conn, post, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, c.Bridge), ipPrefix(12, expr.CmpOpEq, subnet), ctDNAT(), masq())
	for _, f := range forwards {
		r := [][]expr.Any{daddr(f.HostIP), port(f.Proto, f.HostPort), dnat(f.GuestIP, f.GuestPort)}
		rule(conn, out, r...)
		if !f.HostIP.IsLoopback() {
			rule(conn, pre, r...)
		}
	}
	// No routing between managed networks, either way (the other
	// network's table says the same; this one holds even if the other's
	// comes from an older paddock).
	rule(conn, fwd, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, c.Bridge), ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, BridgePrefix+"*"), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, c.Bridge), drop())
	rule(conn, fwd, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, c.Bridge), ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, BridgePrefix+"*"), ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, c.Bridge), drop())
	// Nothing from elsewhere (the LAN, a route to the subnet through
	// the host) starts a connection to a guest but a port forward.
	rule(conn, fwd, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, c.Bridge), ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, c.Bridge), unsolicited(), drop())
	// The guests reach the host at their gateway only: not at another
	// network's gateway, the host's other addresses, or 127.0.0.1
	// (route_localnet is on for the bridge). Replies to what the host
	// started pass (a loopback forward's replies, de-masqueraded, are
	// addressed to 127.0.0.1); a packet conntrack does not track does
	// not.
	rule(conn, in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, c.Bridge), ctReply(), accept())
	rule(conn, in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, c.Bridge), ipPrefix(16, expr.CmpOpNeq, netip.PrefixFrom(c.Gateway.Addr(), 32)), localDaddr(), drop())
}

// removeTables deletes the network's tables (both families) if they
// exist.
func removeTables(name string) error {
	return removeTable(name, nftables.TableFamilyIPv4, nftables.TableFamilyBridge)
}

// removeTable deletes the tables of that name and families if they
// exist.
func removeTable(name string, families ...nftables.TableFamily) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("hostnet: nftables: %w", err)
	}
	for _, family := range families {
		t := &nftables.Table{Name: name, Family: family}
		conn.AddTable(t)
		conn.DelTable(t)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("hostnet: remove nftables tables %s: %w", name, err)
	}
	return nil
}

// ipPrefix matches the IPv4 source (offset 12) or destination (offset 16)
// address against a prefix: `ip saddr 10.77.0.0/24`.
func ipPrefix(offset uint32, op expr.CmpOp, p netip.Prefix) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		m := ^uint32(0) << (32 - p.Bits())
		e = append(e, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.BigEndian.PutUint32(m), Xor: make([]byte, 4)})
	}
	a := p.Masked().Addr().As4()
	return append(e, &expr.Cmp{Op: op, Register: reg1, Data: a[:]})
}

// daddr matches the destination address, or any local address (`fib
// daddr type local`) for 0.0.0.0.
func daddr(a netip.Addr) []expr.Any {
	if a.IsUnspecified() {
		return localDaddr()
	}
	return ipPrefix(16, expr.CmpOpEq, netip.PrefixFrom(a, 32))
}

// localDaddr matches packets to any local address: `fib daddr type
// local`.
func localDaddr() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// port matches the transport protocol and destination port: `tcp dport
// 8080`.
func port(proto string, p uint16) []expr.Any {
	n := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		n = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{n}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

// dnat rewrites the destination: `dnat to 10.77.0.2:80`.
func dnat(a netip.Addr, p uint16) []expr.Any {
	ip := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: ip[:]},
		&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(p)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
	}
}

// ifname compares the input or output interface's name: `oifname
// "br0"`; a name ending in "*" matches its prefix (`oifname "pd-*"`).
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	var b []byte
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		b = []byte(prefix)
	} else {
		b = make([]byte, unix.IFNAMSIZ)
		copy(b, name)
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: b},
	}
}

// ctDNAT matches connections whose destination was rewritten: `ct
// status dnat`.
func ctDNAT() []expr.Any { return ctBits(expr.CtKeySTATUS, ipsDstNAT, true) }

// unsolicited matches packets that are neither part nor a companion
// (ICMP errors) of a connection conntrack knows, nor of one a port
// forward rewrote: `ct state != established,related ct status != dnat`.
// New connections from outside, and what conntrack finds invalid or
// does not track.
func unsolicited() []expr.Any {
	return append(ctBits(expr.CtKeySTATE, ctStateEstablished|ctStateRelated, false), ctBits(expr.CtKeySTATUS, ipsDstNAT, false)...)
}

// ctBits matches packets whose connection's key (a bit field: state,
// status) has one of mask's bits set (set), or none of them.
func ctBits(key expr.CtKey, mask uint32, set bool) []expr.Any {
	op := expr.CmpOpEq
	if set {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: key},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg1, Data: make([]byte, 4)},
	}
}

// Bits of `ct state` (NF_CT_STATE_BIT of IP_CT_ESTABLISHED and
// IP_CT_RELATED, linux/netfilter/nf_conntrack_common.h).
const (
	ctStateEstablished = 1 << 1
	ctStateRelated     = 1 << 2
)

// ctReply matches packets that travel against their connection's
// direction (replies): `ct direction reply`.
func ctReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ctDirReply}},
	}
}

// ctDirReply is conntrack's IP_CT_DIR_REPLY
// (linux/netfilter/nf_conntrack_tuple_common.h).
const ctDirReply = 1

// ipsDstNAT is conntrack's IPS_DST_NAT status bit
// (linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// masq is `masquerade`.
func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

// Verdicts.
func drop() []expr.Any   { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }
func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
