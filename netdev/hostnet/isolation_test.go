package hostnet_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// marker tags the test's frames (in their tail, past what any header
// reads) so that the receiver tells them from other traffic; each frame
// gets its own number.
const marker = "paddock-frame-"

// frame is one test frame to send: a name for messages and its bytes.
type frame struct {
	name string
	b    []byte
}

// frames builds test frames; each gets a new marker number.
type frames struct{ n int }

// tail is the next marker.
func (f *frames) tail() []byte {
	f.n++
	return []byte(fmt.Sprintf("%s%d.", marker, f.n))
}

var broadcast = netdev.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ether is an Ethernet frame to the broadcast address (so the bridge
// floods it to every port, learned or not).
func ether(src netdev.MAC, etherType uint16, payload []byte) []byte {
	b := append(broadcast[:], src[:]...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// marked is an Ethernet frame with a marker after the payload.
func (f *frames) marked(src netdev.MAC, etherType uint16, payload []byte) []byte {
	return ether(src, etherType, append(payload, f.tail()...))
}

// udp is an Ethernet frame with an IPv4 UDP datagram (no UDP checksum)
// whose payload is the marker (a host with br_netfilter trims what
// follows an IPv4 packet).
func (f *frames) udp(src netdev.MAC, from, to netip.AddrPort) []byte {
	payload := f.tail()
	n := 28 + len(payload)
	ip := make([]byte, 20, n)
	ip[0], ip[8], ip[9] = 0x45, 64, 17 // version 4, 5 words; TTL; UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(n))
	s, d := from.Addr().As4(), to.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	ip = binary.BigEndian.AppendUint16(ip, from.Port())
	ip = binary.BigEndian.AppendUint16(ip, to.Port())
	ip = binary.BigEndian.AppendUint16(ip, uint16(8+len(payload)))
	ip = binary.BigEndian.AppendUint16(ip, 0)
	return ether(src, 0x0800, append(ip, payload...))
}

// arp is an Ethernet frame from src with an ARP request from sha/spa for
// 10.77.0.200.
func (f *frames) arp(src, sha netdev.MAC, spa netip.Addr) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	a := spa.As4()
	b = append(b, sha[:]...)
	b = append(b, a[:]...)
	b = append(b, make([]byte, 6)...)
	b = append(b, 10, 77, 0, 200)
	return f.marked(src, 0x0806, b)
}

// received opens a packet socket on ns's eth0 that waits up to 2 s for
// a test frame.
func received(t *testing.T, ns *netnstest.NS) *netnstest.PacketSocket {
	t.Helper()
	return ns.OpenPacketSocket(t, "eth0", 2000)
}

// isTest tells the test's frames.
func isTest(b []byte) bool { return bytes.Contains(b, []byte(marker)) }

// TestAntiSpoofing sends frames from a guest's namespace through its
// port of the bridge and watches what a second guest on the bridge
// receives: each spoofed frame is sent just before a legitimate one, and
// the first test frame to arrive must be the legitimate one (the bridge
// handles one port's frames in order), then the next spoofed one, and
// so on. Spoofed: another source MAC (a clone still using its
// template's), another source address or the neighbour's, ARP claiming
// the neighbour's address or another MAC, IPv6, a VLAN tag, UDP from
// 0.0.0.0 that is no DHCP request.
func TestAntiSpoofing(t *testing.T) {
	tp := newTopology(t, nil)
	otherIP := netip.MustParseAddr("10.77.0.3")
	other := tp.addGuest(t, "vother", otherIP)
	send := tp.guest.OpenPacketSocket(t, "eth0", 2000)
	recv := received(t, other)
	mac, template := guestMAC("vguest"), netdev.GenerateMAC("a clone's template")
	own := netip.AddrPortFrom(guestIP, 4000)
	to := netip.AddrPortFrom(otherIP, 9)
	var f frames
	legit := func() frame { return frame{"legitimate UDP", f.udp(mac, own, to)} }
	cases := []struct{ spoofed, control frame }{
		{frame{"UDP from the template's MAC", f.udp(template, own, to)}, legit()},
		{frame{"UDP from another address", f.udp(mac, netip.MustParseAddrPort("10.77.0.99:4000"), to)}, legit()},
		{frame{"UDP from the neighbour's address", f.udp(mac, netip.AddrPortFrom(otherIP, 4000), to)}, legit()},
		{frame{"UDP from 0.0.0.0, not DHCP", f.udp(mac, netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:1234"))},
			frame{"a DHCP request", f.udp(mac, netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"))}},
		{frame{"ARP for the neighbour's address", f.arp(mac, mac, otherIP)}, frame{"ARP", f.arp(mac, mac, guestIP)}},
		{frame{"ARP for the gateway's address", f.arp(mac, mac, testConfig.Gateway.Addr())}, frame{"an ARP probe", f.arp(mac, mac, netip.IPv4Unspecified())}},
		{frame{"ARP with the template's MAC inside", f.arp(mac, template, guestIP)}, frame{"ARP", f.arp(mac, mac, guestIP)}},
		{frame{"ARP from the template's MAC", f.arp(template, template, guestIP)}, frame{"ARP", f.arp(mac, mac, guestIP)}},
		{frame{"IPv6", f.marked(mac, 0x86dd, make([]byte, 40))}, legit()},
		{frame{"a VLAN tag", ether(mac, 0x8100, append([]byte{0, 5, 8, 0}, f.udp(mac, own, to)[14:]...))}, legit()},
	}
	for _, c := range cases {
		for _, fr := range []frame{c.spoofed, c.control} {
			if err := send.Send(fr.b); err != nil {
				t.Fatalf("send %s: %v", fr.name, err)
			}
		}
		got, err := recv.Recv(isTest)
		switch {
		case err != nil:
			t.Errorf("%s: nothing arrived: %v", c.control.name, err)
		case bytes.Equal(got, c.spoofed.b):
			t.Errorf("%s got through", c.spoofed.name)
		case !bytes.Equal(got, c.control.b):
			t.Errorf("after %s, a frame arrived that is not %s: %x", c.spoofed.name, c.control.name, got)
		}
	}
	// The guests' ordinary traffic passes: TCP between them, and out
	// through the NAT.
	other.ServeHTTP(t, ":80", "other")
	get(t, tp.guest, "http://10.77.0.3/", "other")
	get(t, other, "http://10.77.0.2/", "guest")
	get(t, other, "http://198.51.100.2/", "upstream")

}

// TestNetworksIsolated brings two networks up in one host namespace,
// each with a guest, and proves with TCP connections that each guest
// reaches the outside (through the NAT) and its own gateway but neither
// the other network's guest nor its gateway nor the host's other
// addresses.
func TestNetworksIsolated(t *testing.T) {
	a := newTopology(t, nil)
	b := &topology{host: a.host, upstream: a.upstream, cfg: hostnet.Config{
		Bridge: "pd-test2", MAC: netdev.GenerateMAC("hostnet test bridge 2"),
		Gateway: netip.MustParsePrefix("10.77.1.1/24"), Table: "paddock-test2",
	}}
	b.up(t)
	gb := b.addGuest(t, "vguest2", netip.MustParseAddr("10.77.1.2"))
	gb.ServeHTTP(t, ":80", "guest2")
	a.host.ServeHTTP(t, ":8000", "host")
	// Both have default routes through the host: only its rules keep
	// them apart.
	for _, c := range []struct {
		g          *netnstest.NS
		gateway    string
		other      string
		otherGuest string
	}{
		{a.guest, "10.77.0.1", "10.77.1.1", "10.77.1.2"},
		{gb, "10.77.1.1", "10.77.0.1", "10.77.0.2"},
	} {
		get(t, c.g, "http://198.51.100.2/", "upstream")
		get(t, c.g, "http://"+c.gateway+":8000/", "host")
		refused(t, c.g, "http://"+c.otherGuest+"/")
		refused(t, c.g, "http://"+c.other+":8000/")
		refused(t, c.g, "http://198.51.100.1:8000/")
	}
}

// TestLANInbound: a host beyond the uplink with a route to the guests'
// subnet through the host starts no connection to a guest, but reaches
// it through a port forward; the guest's own connections out get their
// replies.
func TestLANInbound(t *testing.T) {
	tp := newTopology(t, []hostnet.Forward{{Proto: "tcp", HostIP: uplinkIP, HostPort: 8081, GuestIP: guestIP, GuestPort: 80}})
	tp.upstream.IP(t, "route", "add", testConfig.Subnet().String(), "via", uplinkIP.String())
	refused(t, tp.upstream, "http://"+guestIP.String()+"/")
	get(t, tp.upstream, "http://198.51.100.1:8081/", "guest")
	get(t, tp.guest, "http://198.51.100.2/", "upstream")
}

// TestUnlistedPortDropped: a port AttachPort put on the bridge gets
// nothing through once its guest is no longer in the rules, though it is
// still a port (a guest that left and was not taken off); the other
// guests' traffic passes.
func TestUnlistedPortDropped(t *testing.T) {
	tp := newTopology(t, nil)
	other := tp.addGuest(t, "vother", netip.MustParseAddr("10.77.0.3"))
	other.ServeHTTP(t, ":80", "other")
	get(t, tp.guest, "http://10.77.0.3/", "other")
	tp.rules.Guests = tp.rules.Guests[1:] // vguest's
	tp.setRules(t)
	if ports := tp.host.IP(t, "-o", "link", "show", "master", tp.cfg.Bridge); !strings.Contains(ports, "vguest@") {
		t.Fatalf("vguest is no port of the bridge:\n%s", ports)
	}
	refused(t, tp.guest, "http://10.77.0.3/")
	refused(t, tp.guest, "http://198.51.100.2/")
	get(t, other, "http://198.51.100.2/", "upstream")
}
