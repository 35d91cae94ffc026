package hostnet

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// OverlapError is a subnet that overlaps a route of the host: guests on
// it could not reach what the route leads to, or the host would send
// their traffic elsewhere.
type OverlapError struct {
	Subnet netip.Prefix
	// Route is the overlapping route's destination and Dev its
	// interface ("" if it has none).
	Route netip.Prefix
	Dev   string
}

func (e *OverlapError) Error() string {
	on := ""
	if e.Dev != "" {
		on = " on " + e.Dev
	}
	return fmt.Sprintf("subnet %s overlaps the host's route to %s%s", e.Subnet, e.Route, on)
}

// CheckSubnet returns an *OverlapError if subnet overlaps a route of the
// host's IPv4 routing tables (default routes aside, and routes through
// the interface own, the network's own bridge, which may already exist;
// an own ending in "*" skips every interface whose name starts with what
// precedes it).
func CheckSubnet(subnet netip.Prefix, own string) error {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("hostnet: list the host's routes: %w", err)
	}
	names := map[int]string{}
	for _, r := range routes {
		if r.Dst == nil || r.Table == unix.RT_TABLE_LOCAL {
			continue // a default route; the local table's host and broadcast routes
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		dst := netip.PrefixFrom(ip.Unmap(), bits).Masked()
		if bits == 0 || !dst.Overlaps(subnet) {
			continue
		}
		dev, ok := names[r.LinkIndex]
		if !ok && r.LinkIndex > 0 {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			names[r.LinkIndex] = dev
		}
		if prefix, ok := strings.CutSuffix(own, "*"); (ok && strings.HasPrefix(dev, prefix)) || (own != "" && dev == own) {
			continue
		}
		return &OverlapError{Subnet: subnet, Route: dst, Dev: dev}
	}
	return nil
}
