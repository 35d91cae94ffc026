package libvirt

import (
	golibvirt "github.com/digitalocean/go-libvirt"
)

// Address is an IPv4 address a host knows one of its domain's NICs has.
type Address struct {
	// MAC is the NIC's address.
	MAC string
	IP  string
}

// Addresses returns the IPv4 addresses of the DHCP leases the libvirt
// networks the domain's NICs are on gave them (libvirt's lease source:
// the leases of the networks' dnsmasq), in the domain's NIC order. A NIC
// on a bridge or a tap has none the host knows. None is no error: an
// empty list.
//
// libvirt's other sources are not asked: its ARP table source fails on
// libvirt 9.0 with Linux 6.x ("wrong nlmsg len"), and its agent source
// needs the QEMU guest agent in the guest and a channel paddock's
// domains do not have.
func (d *Dom) Addresses() ([]Address, error) {
	ifaces, err := d.c.l.DomainInterfaceAddresses(d.d, uint32(golibvirt.DomainInterfaceAddressesSrcLease), 0)
	if err != nil {
		return nil, d.c.fail("read the DHCP leases of domain "+d.d.Name, err)
	}
	var out []Address
	for _, i := range ifaces {
		mac := ""
		if len(i.Hwaddr) > 0 {
			mac = i.Hwaddr[0]
		}
		for _, a := range i.Addrs {
			if golibvirt.IPAddrType(a.Type) == golibvirt.IPAddrTypeIpv4 {
				out = append(out, Address{MAC: mac, IP: a.Addr})
			}
		}
	}
	return out, nil
}
