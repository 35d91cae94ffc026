package hostnet

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
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

// SetForwards replaces the network's nftables table with one holding its
// NAT rules and these forwards, in one transaction. Precondition: the
// bridge is up (Up).
func SetForwards(c Config, forwards []Forward) error {
	if err := c.check(); err != nil {
		return err
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
	t := &nftables.Table{Name: c.Table, Family: nftables.TableFamilyIPv4}
	// Add (a no-op if it exists), delete, add: the table is replaced
	// whether or not it existed.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	natChain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return conn.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio})
	}
	pre := natChain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := natChain("output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := natChain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	add := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: all})
	}
	subnet := c.Subnet()
	// Outbound NAT: guests to anywhere outside their subnet.
	add(post, ipPrefix(12, expr.CmpOpEq, subnet), ipPrefix(16, expr.CmpOpNeq, subnet), masq())
	// Port forwards on loopback addresses: their source, 127.0.0.1, may
	// not leave the host.
	add(post, ifname(expr.MetaKeyOIFNAME, c.Bridge), ipPrefix(12, expr.CmpOpEq, netip.MustParsePrefix("127.0.0.0/8")), masq())
	// A guest reaching another (or itself) through a forward: without
	// this the reply would go straight back, skipping the host's NAT.
	add(post, ifname(expr.MetaKeyOIFNAME, c.Bridge), ipPrefix(12, expr.CmpOpEq, subnet), ctDNAT(), masq())
	for _, f := range forwards {
		rule := [][]expr.Any{daddr(f.HostIP), port(f.Proto, f.HostPort), dnat(f.GuestIP, f.GuestPort)}
		add(out, rule...)
		if !f.HostIP.IsLoopback() {
			add(pre, rule...)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("hostnet: nftables table %s: %w", c.Table, err)
	}
	return nil
}

// removeTable deletes the table if it exists.
func removeTable(name string) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("hostnet: nftables: %w", err)
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("hostnet: remove nftables table %s: %w", name, err)
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
		return []expr.Any{
			&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}
	}
	return ipPrefix(16, expr.CmpOpEq, netip.PrefixFrom(a, 32))
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

// ifname matches the input or output interface's name: `oifname "br0"`.
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: b},
	}
}

// ctDNAT matches connections whose destination was rewritten: `ct
// status dnat`.
func ctDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}
}

// ipsDstNAT is conntrack's IPS_DST_NAT status bit
// (linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// masq is `masquerade`.
func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }
