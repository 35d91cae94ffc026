// Package network keeps paddock's managed networks: their records in the
// state directory, the leases that pin each VM NIC's address, and netd,
// the per-network helper process that serves DHCP and DNS and owns the
// network's host side (bridge, NAT and port forwards, netdev/hostnet)
// while VMs use it.
//
// Under the state directory, each network has a directory
// networks/NAME holding
//
//	network.json  the network: subnet, gateway, bridge, nftables table
//	leases.json   the leases: VM, NIC, MAC, address
//	lock          taken by whoever changes the network or its leases
//	netd.lock     held by the network's netd for as long as it runs
//	netd.sock     netd's socket, where VMs attach
//	netd.log      netd's messages (the previous run's in netd.log.1)
//
// A network is up while VMs use it: the first VM to start on it starts
// its netd, which brings the host side up; each VM holds a connection to
// netd for as long as its VMM runs (Attach), and when the last one is
// closed — the VMM exited, however it exited — netd takes the host side
// down and exits. A lease lives from the VM's creation to its removal,
// so a VM keeps its address across restarts.
//
// A network belongs to a tenant (guest/tenant): a VM's `network: NAME`
// is its own tenant's network NAME. A network is known by its reference
// (Ref): NAME for the default tenant's, TENANT/NAME for another's, kept
// in networks/NAME and networks/TENANT.NAME. Bridge and nftables table
// names come from the tenant and name and are recorded, so they stay
// unique on the host.
package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// Version is the version of network.json and leases.json this code
// writes and reads.
const Version = 1

// DefaultName is the network a VM's NIC joins with `network: default`,
// created on first use.
const DefaultName = "default"

// DefaultTenant is the tenant whose networks' references are their
// names alone.
const DefaultTenant = configs.DefaultTenant

// MaxNameLen is the longest network name.
const MaxNameLen = configs.MaxNetworkNameLen

// Errors, for errors.Is.
var (
	// ErrNotFound: no network has the name.
	ErrNotFound = errors.New("no such network")
	// ErrExists: a network of that name exists already.
	ErrExists = errors.New("network exists already")
	// ErrInUse: VMs have leases on the network.
	ErrInUse = errors.New("in use")
)

// Network is a managed network's record (network.json).
type Network struct {
	Version int `json:"version"`
	// Name is the network's reference (Ref): its name, or TENANT/NAME
	// for a network of a tenant other than the default.
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	// Subnet is the guests' network; Gateway the host's address in it
	// (the DHCP server, router and DNS server the guests use).
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Bridge and Table are the bridge and the nftables table (family ip)
	// of the network's host side; BridgeMAC the bridge's address.
	Bridge    string    `json:"bridge"`
	BridgeMAC string    `json:"bridge_mac"`
	Table     string    `json:"nft_table"`
	CreatedAt time.Time `json:"created_at"`
}

// CheckName validates a network name (configs.CheckNetworkName).
func CheckName(name string) error { return configs.CheckNetworkName(name) }

// Ref is the reference of tenant's network name: name for the default
// tenant's, tenant/name for another's.
func Ref(tenant, name string) string {
	if tenant == DefaultTenant || tenant == "" {
		return name
	}
	return tenant + "/" + name
}

// SplitRef splits a network reference into its tenant and name, and
// checks both.
func SplitRef(ref string) (tenant, name string, err error) {
	tenant, name, ok := strings.Cut(ref, "/")
	if !ok {
		tenant, name = DefaultTenant, ref
	}
	if err := configs.CheckTenantName(tenant); err != nil {
		return "", "", err
	}
	if err := CheckName(name); err != nil {
		return "", "", err
	}
	return tenant, name, nil
}

// ShortName is the network's name within its tenant.
func (n *Network) ShortName() string {
	_, name, _ := strings.Cut(n.Name, "/")
	if name == "" {
		return n.Name
	}
	return name
}

// dirName is the name of the directory of the network ref: the
// reference with a dot for its slash (neither tenant nor network names
// have dots).
func dirName(ref string) string { return strings.Replace(ref, "/", ".", 1) }

// refOfDir is the reference of the network whose directory is called
// dir, if it can be one.
func refOfDir(dir string) (string, bool) {
	ref := strings.Replace(dir, ".", "/", 1)
	_, _, err := SplitRef(ref)
	return ref, err == nil
}

// hostNames derives the bridge and nftables table names of a network:
// pd-NAME and paddock-NAME when they fit an interface name, else a hash
// of tenant and name; a tenant other than the default always hashes.
func hostNames(tenant, name string) (bridge, table string) {
	if tenant == DefaultTenant && len("pd-"+name) <= netdev.MaxNameLen {
		return "pd-" + name, "paddock-" + name
	}
	h := sha256.Sum256([]byte(tenant + "/" + name))
	id := hex.EncodeToString(h[:5])
	return "pd-" + id, "paddock-" + id
}

// hostConfig is the host side's configuration.
func (n *Network) hostConfig() (hostnet.Config, error) {
	mac, err := netdev.ParseMAC(n.BridgeMAC)
	if err != nil {
		return hostnet.Config{}, fmt.Errorf("network %s: bridge_mac: %w", n.Name, err)
	}
	return hostnet.Config{Bridge: n.Bridge, MAC: mac, Gateway: netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), Table: n.Table}, nil
}

// check validates a record read from dir.
func (n *Network) check(path string) error {
	switch {
	case n.Version > Version:
		return fmt.Errorf("%s: version %d is newer than this paddock's (%d)", path, n.Version, Version)
	case filepath.Base(filepath.Dir(path)) != dirName(n.Name):
		return fmt.Errorf("%s: name %q does not match its directory", path, n.Name)
	case Ref(n.Tenant, n.ShortName()) != n.Name:
		return fmt.Errorf("%s: name %q is not a network of tenant %q", path, n.Name, n.Tenant)
	case !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() || n.Subnet != n.Subnet.Masked() || n.Subnet.Bits() > MaxPrefixLen || n.Subnet.Bits() < MinPrefixLen:
		return fmt.Errorf("%s: subnet %s is not valid", path, n.Subnet)
	case !n.Subnet.Contains(n.Gateway):
		return fmt.Errorf("%s: gateway %s is not in subnet %s", path, n.Gateway, n.Subnet)
	case netdev.CheckName(n.Bridge) != nil || n.Table == "":
		return fmt.Errorf("%s: bridge %q or table %q is not valid", path, n.Bridge, n.Table)
	}
	return nil
}

// readJSON decodes a JSON file.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
