package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/netdev"
)

// Lease pins the address of one VM NIC on a network.
type Lease struct {
	// VM and NIC name the NIC: the VM's name and the NIC's index in its
	// spec.
	VM  string `json:"vm"`
	NIC int    `json:"nic"`
	// MAC is the NIC's address: the DHCP server answers it with IP.
	MAC string     `json:"mac"`
	IP  netip.Addr `json:"ip"`
	// Ephemeral marks the lease of a VM run in the foreground (paddock
	// run), released when the run ends; a managed VM's lease lives
	// until the VM is removed.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// leasesFile is leases.json.
type leasesFile struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// writeLeases replaces a leases.json.
func writeLeases(path string, leases []Lease) error {
	if leases == nil {
		leases = []Lease{}
	}
	b, err := json.MarshalIndent(leasesFile{Version: Version, Leases: leases}, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// readLeases returns the network's leases. Precondition: the caller holds
// the network's lock, or takes what it reads as a moment's view.
func (s *Store) readLeases(name string) ([]Lease, error) {
	var f leasesFile
	path := s.path(name, LeasesFile)
	if err := readJSON(path, &f); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	if f.Version > Version {
		return nil, fmt.Errorf("network %s: %s: version %d is newer than this paddock's (%d)", name, path, f.Version, Version)
	}
	return f.Leases, nil
}

// Leases returns the network's leases, sorted by address.
func (s *Store) Leases(name string) ([]Lease, error) {
	if _, err := s.Get(name); err != nil {
		return nil, err
	}
	l, err := s.readLeases(name)
	slices.SortFunc(l, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return l, err
}

// NICRequest asks for one NIC's lease.
type NICRequest struct {
	// Index is the NIC's index in the VM's spec, MAC its address.
	Index int
	MAC   netdev.MAC
}

// Reserve gives each of vm's NICs a lease on network name, unless it has
// one: the lowest free address of the subnet after the gateway. A lease
// whose MAC changed (the spec's mac, or the host, changed) keeps its
// address and takes the new MAC. A MAC another VM's lease has is refused,
// as is a full subnet. ephemeral marks new leases as a foreground run's.
func (s *Store) Reserve(name, vm string, nics []NICRequest, ephemeral bool) ([]Lease, error) {
	n, unlock, err := s.getLocked(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.reserveLocked(n, vm, nics, ephemeral)
}

// reserveLocked is Reserve. Precondition: the network's lock is held.
func (s *Store) reserveLocked(n *Network, vm string, nics []NICRequest, ephemeral bool) ([]Lease, error) {
	leases, err := s.readLeases(n.Name)
	if err != nil {
		return nil, err
	}
	changed := false
	var out []Lease
	for _, r := range nics {
		mac := r.MAC.String()
		for _, l := range leases {
			if l.MAC == mac && (l.VM != vm || l.NIC != r.Index) {
				return nil, fmt.Errorf("network %s: nics[%d]: MAC %s is already VM %s's (nics[%d]) on this network", n.Name, r.Index, mac, l.VM, l.NIC)
			}
		}
		i := slices.IndexFunc(leases, func(l Lease) bool { return l.VM == vm && l.NIC == r.Index })
		if i < 0 {
			ip, err := freeAddr(n, leases)
			if err != nil {
				return nil, err
			}
			leases = append(leases, Lease{VM: vm, NIC: r.Index, MAC: mac, IP: ip, Ephemeral: ephemeral})
			i, changed = len(leases)-1, true
		} else if leases[i].MAC != mac {
			leases[i].MAC, changed = mac, true
		}
		out = append(out, leases[i])
	}
	if changed {
		if err := writeLeases(s.path(n.Name, LeasesFile), leases); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// freeAddr is the lowest address of the subnet that is neither the
// network's nor the gateway's nor leased, below the broadcast address.
func freeAddr(n *Network, leases []Lease) (netip.Addr, error) {
	used := map[netip.Addr]bool{n.Gateway: true}
	for _, l := range leases {
		used[l.IP] = true
	}
	for a := n.Subnet.Addr().Next(); n.Subnet.Contains(a.Next()); a = a.Next() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("network %s: no free address left in %s", n.Name, n.Subnet)
}

// Release removes vm's leases from network name; only its ephemeral ones
// if ephemeralOnly.
func (s *Store) Release(name, vm string, ephemeralOnly bool) error {
	_, unlock, err := s.getLocked(name)
	if err != nil {
		return err
	}
	defer unlock()
	leases, err := s.readLeases(name)
	if err != nil {
		return err
	}
	kept := slices.DeleteFunc(slices.Clone(leases), func(l Lease) bool { return l.VM == vm && (l.Ephemeral || !ephemeralOnly) })
	if len(kept) == len(leases) {
		return nil
	}
	return writeLeases(s.path(name, LeasesFile), kept)
}

// ReleaseVM removes vm's leases from every network: the VM is removed.
func (s *Store) ReleaseVM(vm string) error {
	names, err := s.Names()
	if err != nil {
		return err
	}
	var errs error
	for _, name := range names {
		if err := s.Release(name, vm, false); err != nil && !errors.Is(err, ErrNotFound) {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}

// VMLeases returns vm's leases on every network, by network name.
func (s *Store) VMLeases(vm string) (map[string][]Lease, error) {
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	out := map[string][]Lease{}
	for _, name := range names {
		leases, err := s.readLeases(name)
		if err != nil {
			return nil, err
		}
		for _, l := range leases {
			if l.VM == vm {
				out[name] = append(out[name], l)
			}
		}
	}
	return out, nil
}
