package configs

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// MaxNetworkNameLen is the longest managed network name.
const MaxNetworkNameLen = 32

// CheckNetworkName validates a managed network's name: 1 to
// MaxNetworkNameLen lowercase letters, digits and inner dashes.
func CheckNetworkName(name string) error {
	return checkShortName("network", name, MaxNetworkNameLen)
}

// checkShortName validates the name of a network or a tenant (kind): 1
// to max lowercase letters, digits and inner dashes.
func checkShortName(kind, name string, max int) error {
	ok := len(name) > 0 && len(name) <= max && name[0] != '-' && name[len(name)-1] != '-'
	for i := 0; ok && i < len(name); i++ {
		b := name[i]
		ok = b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-'
	}
	if !ok {
		return fmt.Errorf("%s is not a %s name: use 1 to %d lowercase letters, digits and dashes (not first or last)", quote(name), kind, max)
	}
	return nil
}

// Port is one port forward from the host to the VM's address on its
// first managed network. In YAML it is a string: "HOSTPORT:GUESTPORT",
// "HOSTIP:HOSTPORT:GUESTPORT", either with "/tcp" (the default) or
// "/udp"; the host address defaults to 127.0.0.1, and 0.0.0.0 means
// every address of the host.
type Port struct {
	HostIP    netip.Addr
	HostPort  uint16
	GuestPort uint16
	Proto     string
}

// DefaultPortHost is the host address of a forward that names none.
var DefaultPortHost = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// String is the forward in its YAML form, every part written out:
// "127.0.0.1:8080:80/tcp".
func (p Port) String() string {
	return fmt.Sprintf("%s:%d/%s", netip.AddrPortFrom(p.HostIP, p.HostPort), p.GuestPort, p.Proto)
}

// MarshalText writes the YAML (and JSON) form.
func (p Port) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// ParsePort parses a forward's string form.
func ParsePort(s string) (Port, error) {
	p := Port{HostIP: DefaultPortHost, Proto: "tcp"}
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("%s is not a port forward such as 8080:80 or 127.0.0.1:5353:53/udp: %s", quote(s), why)
	}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p.Proto, rest = rest[i+1:], rest[:i]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return bad("the protocol must be tcp or udp")
		}
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return bad(quote(parts[0]) + " is not an IPv4 address")
		}
		p.HostIP, parts = ip, parts[1:]
	default:
		return bad("write HOSTPORT:GUESTPORT or HOSTIP:HOSTPORT:GUESTPORT")
	}
	for i, dst := range []*uint16{&p.HostPort, &p.GuestPort} {
		n, err := strconv.ParseUint(parts[i], 10, 16)
		if err != nil || n == 0 {
			return bad(quote(parts[i]) + " is not a port (1 to 65535)")
		}
		*dst = uint16(n)
	}
	return p, nil
}

// ports decodes the ports list.
func (d *decoder) ports(field string, v *yaml.Node) []Port {
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, field, "must be a list of port forwards such as [\"8080:80\"], got %s", describe(v))
		return nil
	}
	var ports []Port
	for i, item := range v.Content {
		item = deref(item)
		f := fmt.Sprintf("%s[%d]", field, i)
		d.src.fields[f] = pos{item.Line, item.Column}
		s, ok := d.scalar(f, item, "a port forward such as \"8080:80\"")
		if !ok {
			continue
		}
		p, err := ParsePort(s)
		if err != nil {
			d.errorf(item, f, "%w", err)
			continue
		}
		ports = append(ports, p)
	}
	return ports
}

// managedNetworks checks the NICs on managed networks and the ports
// that need one. A libvirt VM's network is a libvirt network of its host
// (such as libvirt's own default): its name is checked the same way, and
// it has no ports, which are paddock's managed networks' forwards.
// Precondition: devices has checked each NIC's kind.
func (c *checker) managedNetworks() {
	vm := c.vm
	first := -1
	for i, n := range vm.NICs {
		if n.Network == "" {
			continue
		}
		if first < 0 {
			first = i
		}
		if err := CheckNetworkName(n.Network); err != nil {
			c.add(fmt.Sprintf("nics[%d].network", i), "%w", err)
		}
	}
	if len(vm.Ports) > 0 && vm.Backend == BackendLibvirt {
		c.add("ports", "forwards host ports through paddock's managed networks, which are the native backend's: a libvirt VM's network is its host's libvirt network (forward ports there with libvirt's own means)")
		return
	}
	if len(vm.Ports) > 0 && first < 0 {
		c.add("ports", "forwards to the VM's address on a managed network: give it a NIC with network (such as {network: default})")
	}
	for i, p := range vm.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		for j, q := range vm.Ports[:i] {
			if p.Proto == q.Proto && p.HostPort == q.HostPort && (p.HostIP == q.HostIP || p.HostIP.IsUnspecified() || q.HostIP.IsUnspecified()) {
				c.add(f, "host port %s/%s is already forwarded by ports[%d]", netip.AddrPortFrom(p.HostIP, p.HostPort), p.Proto, j)
				break
			}
		}
	}
}

// portsFree checks that each forward's host port is free: no program
// (nor a running VM's forward) holds it.
func (c *checker) portsFree() {
	for i, p := range c.vm.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if c.skip(f) {
			continue
		}
		if err := hostnet.CheckPort(p.Proto, p.HostIP, p.HostPort); errors.Is(err, hostnet.ErrPortInUse) {
			c.add(f, "%w (by a program of this host, or a running VM's forward)", err)
		} else if err != nil {
			c.add(f, "%w", err)
		}
	}
}
