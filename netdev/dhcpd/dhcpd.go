// Package dhcpd is the DHCPv4 server of paddock's managed networks. It
// answers only clients whose MAC address has a lease (Config.Lookup):
// each VM's address is decided before the guest boots and pinned to its
// NIC's MAC, so there is no pool, no dynamic allocation, and two VMs can
// never be offered one address. A client without a lease gets no answer.
//
// Packets are parsed and built by github.com/insomniacslk/dhcp (dhcpv4,
// and server4 for the socket and its receive loop); this package only
// decides what to answer.
package dhcpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/paddock-vm/paddock/netdev"
)

// DefaultLeaseTime is how long a lease lasts before the client renews
// it. Leases are pinned, so a long one costs nothing; it is how long a
// guest keeps its address should the server be gone.
const DefaultLeaseTime = 12 * time.Hour

// Lease is what the server hands the client with a given MAC.
type Lease struct {
	IP netip.Addr
	// Hostname, if set, is sent as option 12 (the guest's host name).
	Hostname string
}

// Config describes the server.
type Config struct {
	// Interface is the bridge to serve on; ServerIP is the host's address
	// there, the server identifier, router and DNS server the clients
	// get; Subnet is the network's prefix.
	Interface string
	ServerIP  netip.Addr
	Subnet    netip.Prefix
	// LeaseTime is the lease's duration; zero means DefaultLeaseTime.
	LeaseTime time.Duration
	// Lookup returns the lease of a client's MAC. It is called from
	// several goroutines at once.
	Lookup func(netdev.MAC) (Lease, bool)
	// Logf, if set, gets one line per client that gets no answer, and
	// per reply that could not be sent.
	Logf func(format string, args ...any)
}

// Server is a running DHCP server.
type Server struct {
	c   Config
	srv *server4.Server
}

// Listen opens the server's socket (UDP port 67, bound to the interface)
// in the calling thread's network namespace. Serve then answers requests.
func Listen(c Config) (*Server, error) {
	switch {
	case !c.ServerIP.Is4() || !c.Subnet.Addr().Is4() || !c.Subnet.Contains(c.ServerIP):
		return nil, fmt.Errorf("dhcpd: server address %s is not an IPv4 address in subnet %s", c.ServerIP, c.Subnet)
	case c.Lookup == nil:
		return nil, errors.New("dhcpd: no lease lookup")
	}
	if c.LeaseTime == 0 {
		c.LeaseTime = DefaultLeaseTime
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	conn, err := server4.NewIPv4UDPConn(c.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return nil, fmt.Errorf("dhcpd: listen on %s: %w", c.Interface, err)
	}
	s := &Server{c: c}
	s.srv, err = server4.NewServer(c.Interface, nil, s.handle, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcpd: %w", err)
	}
	return s, nil
}

// Serve answers requests until Close; it then returns nil.
func (s *Server) Serve() error {
	err := s.srv.Serve()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// handle answers one request.
func (s *Server) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	resp := s.Reply(req)
	if resp == nil {
		return
	}
	if _, err := conn.WriteTo(resp.ToBytes(), peer); err != nil {
		s.c.Logf("dhcpd: %s to %s (%s): %v", resp.MessageType(), req.ClientHWAddr, peer, err)
	}
}

// Reply returns the answer to a request, or nil for none: DISCOVER gets
// an OFFER of the client's lease; REQUEST an ACK when it asks for its
// lease, a NAK when it asks this server for another address, nothing
// when it chose another server; INFORM an ACK with the network's
// options. RELEASE and DECLINE change nothing (leases are pinned).
func (s *Server) Reply(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		return nil
	}
	var mac netdev.MAC
	copy(mac[:], req.ClientHWAddr)
	lease, ok := s.c.Lookup(mac)
	if !ok {
		s.c.Logf("dhcpd: %s from %s: no lease for this MAC; not answered", req.MessageType(), mac)
		return nil
	}
	server := net.IP(s.c.ServerIP.AsSlice())
	var mods []dhcpv4.Modifier
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mods = s.lease(lease, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(server) {
			return nil // the client took another server's offer
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr // renewing or rebinding
		}
		if got, ok := netip.AddrFromSlice(want.To4()); !ok || got != lease.IP {
			s.c.Logf("dhcpd: REQUEST from %s for %s; its lease is %s: NAK", mac, want, lease.IP)
			mods = []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeNak), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server))}
			break
		}
		mods = s.lease(lease, dhcpv4.MessageTypeAck)
	case dhcpv4.MessageTypeInform:
		mods = append(s.options(), dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	default:
		return nil
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		s.c.Logf("dhcpd: reply to %s: %v", mac, err)
		return nil
	}
	return resp
}

// lease is the modifiers of an OFFER or ACK of a lease.
func (s *Server) lease(l Lease, typ dhcpv4.MessageType) []dhcpv4.Modifier {
	mods := append(s.options(),
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(net.IP(l.IP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.c.LeaseTime)),
	)
	if l.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(l.Hostname)))
	}
	return mods
}

// options are the network's options: server identifier, netmask,
// broadcast address, router and DNS server (the host).
func (s *Server) options() []dhcpv4.Modifier {
	server := net.IP(s.c.ServerIP.AsSlice())
	bits := s.c.Subnet.Bits()
	mask := net.CIDRMask(bits, 32)
	bcast := s.c.Subnet.Masked().Addr().As4()
	for i := range bcast {
		bcast[i] |= ^mask[i]
	}
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
		dhcpv4.WithNetmask(mask),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(net.IP(bcast[:]))),
		dhcpv4.WithRouter(server),
		dhcpv4.WithDNS(server),
	}
}
