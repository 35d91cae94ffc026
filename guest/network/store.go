package network

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// Files of a network directory.
const (
	NetworkFile = "network.json"
	LeasesFile  = "leases.json"
	LockFile    = "lock"
	NetdLock    = "netd.lock"
	NetdSocket  = "netd.sock"
	NetdLog     = "netd.log"
	networksDir = "networks"
	// createLock serialises creating and removing networks, so two
	// networks never get one subnet.
	createLock = ".lock"
)

// Subnet bounds: a network has room for its gateway and at least one
// guest, and at most a /16's worth of leases.
const (
	MinPrefixLen = 16
	MaxPrefixLen = 30
)

// Store is the networks of one state directory. Its methods are safe for
// concurrent use, by any number of processes: changes take the
// network's lock.
type Store struct {
	dir string
	// CheckSubnet reports a subnet that overlaps the host's routes;
	// nil means hostnet.CheckSubnet (tests replace it).
	CheckSubnet func(netip.Prefix) error
}

// Open returns the networks of the state directory home, creating it and
// networks/ (mode 0700) if needed. Like the VM store it refuses a tree
// that someone other than the current user and root could change
// (store.CheckTrusted): a network record decides what the host
// configures as root.
func Open(home string) (*Store, error) {
	dir, err := store.OpenSubdir(home, networksDir)
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Dir is the directory of network name (a reference, Ref).
func (s *Store) Dir(name string) string { return filepath.Join(s.dir, dirName(name)) }

// path is a file of network name's directory.
func (s *Store) path(name, file string) string { return filepath.Join(s.Dir(name), file) }

// Get returns the network's record; an error wrapping ErrNotFound if
// there is none. name is a reference (Ref), as are the names of every
// method of Store.
func (s *Store) Get(name string) (*Network, error) {
	if _, _, err := SplitRef(name); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	dir := s.Dir(name)
	if err := store.CheckTrusted(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("network %s: %w", name, ErrNotFound)
		}
		return nil, err
	}
	var n Network
	path := filepath.Join(dir, NetworkFile)
	if err := readJSON(path, &n); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("network %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	if err := n.check(path); err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	return &n, nil
}

// Names returns the references of all networks, every tenant's, sorted.
func (s *Store) Names() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	var names []string
	for _, e := range ents {
		if ref, ok := refOfDir(e.Name()); ok && e.IsDir() {
			if _, err := os.Stat(s.path(ref, NetworkFile)); err == nil {
				names = append(names, ref)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// List returns every network's record, sorted by name.
func (s *Store) List() ([]*Network, error) {
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	var out []*Network
	for _, name := range names {
		n, err := s.Get(name)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Create adds network name (a reference: TENANT/NAME makes a network of
// that tenant; the caller checks that the tenant exists). A zero subnet
// picks the first free one of 10.77.0.0/24 ... 10.77.255.0/24: one no
// other network of the same tenant has and no host route overlaps. A
// given subnet must be IPv4 with a prefix length from MinPrefixLen to
// MaxPrefixLen, and overlap neither. Tenants may reuse each other's
// subnets: each tenant but the default has its networks in a network
// namespace of its own (docs/networks.md), so routes to other tenants'
// bridges (named hostnet.BridgePrefix...) do not count; the tenants'
// uplinks' range (hostnet.UplinkRange) is nobody's.
func (s *Store) Create(name string, subnet netip.Prefix) (*Network, error) {
	tenant, short, err := SplitRef(name)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	unlock, err := lockFile(filepath.Join(s.dir, createLock))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := s.Get(name); err == nil {
		return nil, fmt.Errorf("network %s: %w", name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	others, err := s.List()
	if err != nil {
		return nil, err
	}
	var mine []*Network // the tenant's: they share a namespace
	for _, o := range others {
		if o.Tenant == tenant {
			mine = append(mine, o)
		}
	}
	if subnet.IsValid() {
		if err := s.checkSubnet(subnet, mine); err != nil {
			return nil, fmt.Errorf("network %s: %w", name, err)
		}
	} else if subnet, err = s.pickSubnet(mine); err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	bridge, table := hostNames(tenant, short)
	for _, o := range others {
		if o.Bridge == bridge || o.Table == table {
			bridge, table = hostNames(tenant+"/"+o.Name, short) // a hash, unique to this one
		}
	}
	n := &Network{
		Version: Version, Name: name, Tenant: tenant,
		Subnet: subnet, Gateway: subnet.Addr().Next(),
		Bridge: bridge, BridgeMAC: netdev.GenerateMAC("paddock bridge\x00" + table).String(), Table: table,
		CreatedAt: time.Now().UTC(),
	}
	if err := s.write(n); err != nil {
		return nil, err
	}
	return n, nil
}

// checkSubnet validates a subnet for a new network.
func (s *Store) checkSubnet(subnet netip.Prefix, others []*Network) error {
	switch {
	case !subnet.Addr().Is4():
		return fmt.Errorf("subnet %s is not IPv4", subnet)
	case subnet != subnet.Masked():
		return fmt.Errorf("subnet %s has host bits set: write %s", subnet, subnet.Masked())
	case subnet.Bits() < MinPrefixLen || subnet.Bits() > MaxPrefixLen:
		return fmt.Errorf("subnet %s: the prefix length must be %d to %d", subnet, MinPrefixLen, MaxPrefixLen)
	case subnet.Overlaps(hostnet.UplinkRange):
		return fmt.Errorf("subnet %s overlaps %s, which paddock keeps for tenants' uplinks", subnet, hostnet.UplinkRange)
	}
	for _, o := range others {
		if o.Subnet.Overlaps(subnet) {
			return fmt.Errorf("subnet %s overlaps network %s's %s", subnet, o.Name, o.Subnet)
		}
	}
	check := s.CheckSubnet
	if check == nil {
		check = func(p netip.Prefix) error { return hostnet.CheckSubnet(p, hostnet.BridgePrefix+"*") }
	}
	return check(subnet)
}

// pickSubnet returns the first free subnet of the default range.
func (s *Store) pickSubnet(others []*Network) (netip.Prefix, error) {
	var last error
	for i := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(i), 0}), 24)
		err := s.checkSubnet(p, others)
		var oe *hostnet.OverlapError
		if err == nil {
			return p, nil
		}
		if !errors.As(err, &oe) && !strings.Contains(err.Error(), "overlaps network") {
			return netip.Prefix{}, err
		}
		last = err
	}
	return netip.Prefix{}, fmt.Errorf("no free subnet in 10.77.0.0/16 (the last: %w); give one with --subnet", last)
}

// write creates the network's directory with its record and no leases,
// in one rename.
func (s *Store) write(n *Network) error {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	tmp := filepath.Join(s.dir, ".new-"+dirName(n.Name)+"-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	rec, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := store.WriteFileAtomic(filepath.Join(tmp, NetworkFile), append(rec, '\n'), 0o600); err != nil {
		return fail(err)
	}
	if err := writeLeases(filepath.Join(tmp, LeasesFile), nil); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.Dir(n.Name)); err != nil {
		return fail(err)
	}
	return nil
}

// Remove deletes the network: its record and, if a netd that died left
// them, its bridge and nftables table. A network with leases is refused
// (ErrInUse, naming the VMs), as is one whose netd runs.
func (s *Store) Remove(name string) error {
	n, err := s.Get(name)
	if err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(s.dir, createLock))
	if err != nil {
		return err
	}
	defer unlock()
	unlockNet, err := s.lock(name)
	if err != nil {
		return err
	}
	defer unlockNet()
	leases, err := s.readLeases(name)
	if err != nil {
		return err
	}
	if len(leases) > 0 {
		var vms []string
		for _, l := range leases {
			if !slices.Contains(vms, l.VM) {
				vms = append(vms, l.VM)
			}
		}
		slices.Sort(vms)
		return fmt.Errorf("network %s is %w by VM %s: remove them first (paddock rm)", name, ErrInUse, strings.Join(vms, ", "))
	}
	if alive, err := s.netdAlive(name); err != nil {
		return err
	} else if alive {
		return fmt.Errorf("network %s is %w: its netd runs", name, ErrInUse)
	}
	if err := s.takeDown(n); err != nil {
		return err
	}
	trash := filepath.Join(s.dir, ".trash-"+dirName(name))
	os.RemoveAll(trash)
	if err := os.Rename(s.Dir(name), trash); err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	return nil
}

// takeDown removes a host side a dead netd left (in the tenant's
// namespace for a tenant other than the default, and then the namespace
// and uplink if no other network of the tenant is up; the host's half of
// the network's port forwards whether or not the namespace is left). Without a bridge
// there is nothing to remove, and an unprivileged user can remove a
// network that was never up.
func (s *Store) takeDown(n *Network) error {
	cfg, err := n.hostConfig()
	if err != nil {
		return err
	}
	down := func() error {
		if !netdev.Exists(n.Bridge) {
			return nil
		}
		if err := hostnet.Down(cfg); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		return nil
	}
	if !inNamespace(n.Tenant) {
		return down()
	}
	// The host's half of its port forwards, first: it outlives a
	// namespace removed by hand or by a reboot. Only root's paddock
	// makes it.
	if err := hostnet.SetUplinkForwards(tenantUplink(n.Tenant), n.Table, nil); err != nil && (os.Geteuid() == 0 || !errors.Is(err, fs.ErrPermission)) {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	if !hostnet.NetnsExists(tenantUplink(n.Tenant).NS) {
		return nil
	}
	ns, err := hostnet.OpenNetns(tenantUplink(n.Tenant).NS)
	if err != nil {
		return err
	}
	err = hostnet.InNetns(ns, down)
	unix.Close(ns)
	if err != nil {
		return err
	}
	return s.collectUplink(n.Tenant, -1)
}

// Info describes a network for paddock network ls and inspect.
type Info struct {
	*Network
	// State is "up" while a netd serves the network (VMs run on it),
	// else "down"; NetdPID is that netd's process.
	State   string `json:"state"`
	NetdPID int    `json:"netd_pid,omitempty"`
	// Leases are the VMs' addresses, by address.
	Leases []Lease `json:"leases"`
	// Dir is the network's directory, NetdLog netd's log.
	Dir     string `json:"dir"`
	NetdLog string `json:"netd_log"`
}

// Info describes network name.
func (s *Store) Info(name string) (*Info, error) {
	n, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	leases, err := s.Leases(name)
	if err != nil {
		return nil, err
	}
	if leases == nil {
		leases = []Lease{}
	}
	alive, err := s.netdAlive(name)
	if err != nil {
		return nil, err
	}
	in := &Info{Network: n, State: "down", Leases: leases, Dir: s.Dir(name), NetdLog: s.path(name, NetdLog)}
	if alive {
		in.State = "up"
		if b, err := os.ReadFile(s.path(name, NetdLock)); err == nil {
			in.NetdPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	return in, nil
}
