package netdev

import (
	"crypto/sha256"
	"fmt"
	"net"
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

// GenerateMAC derives a locally administered unicast address from seed
// (the VM's identity and the NIC's index): the same seed always gives the
// same address, so a VM keeps its MAC across restarts, and a clone (a new
// identity) gets a new one.
func GenerateMAC(seed string) MAC {
	h := sha256.Sum256([]byte("paddock-mac\x00" + seed))
	var m MAC
	copy(m[:], h[:6])
	m[0] = m[0]&^3 | 2 // unicast, locally administered
	return m
}
