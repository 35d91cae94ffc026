package netdev

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// MAC is an Ethernet (EUI-48) address.
type MAC [6]byte

// ParseMAC parses "52:54:00:12:34:56" (or with '-'). The address must be
// unicast and not all zeros: a guest NIC cannot have another kind.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("%q is not a MAC address such as 52:54:00:12:34:56", s)
	}
	var m MAC
	copy(m[:], hw)
	switch {
	case m == MAC{}:
		return MAC{}, fmt.Errorf("MAC address %s is all zeros", s)
	case m.Multicast():
		return MAC{}, fmt.Errorf("MAC address %s is a multicast address (the first byte is odd)", s)
	}
	return m, nil
}

// String formats m as six colon-separated lowercase hex bytes.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// Multicast reports the group bit (bit 0 of the first byte).
func (m MAC) Multicast() bool { return m[0]&1 != 0 }

// Local reports the locally-administered bit (bit 1 of the first byte).
func (m MAC) Local() bool { return m[0]&2 != 0 }

// GenerateMAC derives a locally administered unicast address from seed:
// the same seed always gives the same address. VMs' NICs use NICMAC,
// which puts the host's identity into the seed.
func GenerateMAC(seed string) MAC {
	h := sha256.Sum256([]byte("paddock-mac\x00" + seed))
	var m MAC
	copy(m[:], h[:6])
	m[0] = m[0]&^3 | 2 // unicast, locally administered
	return m
}

// NICMAC is the MAC address of NIC index of the VM called vm on the host
// whose identifier is host (HostID): stable for as long as the VM keeps
// its name on this host, so the guest sees the same address across
// restarts and a managed network's lease follows it; different for a VM
// of the same name on another host (the host identifier is mixed in, as
// Lima does), so VMs of two hosts on one Ethernet segment do not clash;
// new for a clone, which has a new name. The host identifier goes
// through SHA-256 with the name, so no one who sees the address learns
// it.
func NICMAC(host, vm string, index int) MAC {
	return GenerateMAC(fmt.Sprintf("%s\x00%s/%d", host, vm, index))
}

// hostIDFiles are where HostID looks, in order: systemd's machine ID and
// D-Bus's older copy of it.
var hostIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// HostID identifies this host for NICMAC: its machine ID (machine-id(5)),
// or, on a host without one, its host name.
func HostID() (string, error) {
	return hostID(hostIDFiles, os.Hostname)
}

// hostID is HostID reading the given files, falling back to hostname.
func hostID(files []string, hostname func() (string, error)) (string, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return "", fmt.Errorf("netdev: host identifier: %w", err)
		}
		if id := strings.TrimSpace(string(b)); id != "" && id != "uninitialized" {
			return "machine-id:" + id, nil
		}
	}
	name, err := hostname()
	if err != nil || name == "" {
		return "", fmt.Errorf("netdev: host identifier: no machine ID (%s) and no host name (%v)", strings.Join(files, ", "), err)
	}
	return "hostname:" + name, nil
}
