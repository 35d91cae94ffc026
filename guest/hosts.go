package guest

import (
	"fmt"
	"sync"

	lv "github.com/paddock-vm/paddock/guest/libvirt"
)

// Host states in HostInfo.
const (
	HostUp          = "up"
	HostUnreachable = "unreachable"
)

// HostInfo describes one libvirt host, for paddock host ls: what the
// hosts file says, what the host says about itself, and how many of this
// state directory's VMs live there.
type HostInfo struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
	Pool string `json:"pool"`
	// State is HostUp or HostUnreachable; Problem says why it cannot be
	// reached.
	State   string `json:"state"`
	Problem string `json:"problem,omitempty"`
	// VMs counts this state directory's VMs on the host.
	VMs int `json:"vms"`
	// Facts are the host's own, when it is up.
	*lv.Facts `json:",omitempty"`
	// DomainType is the type a libvirt.type auto VM gets there (kvm or
	// qemu), and DomainTypeDetail says it in words.
	DomainType       string `json:"domain_type,omitempty"`
	DomainTypeDetail string `json:"domain_type_detail,omitempty"`
}

// HostInfos describes every libvirt host, asking them all at once.
func (m *Manager) HostInfos() ([]HostInfo, error) {
	hosts, err := m.Hosts().List()
	if err != nil {
		return nil, err
	}
	counts, err := m.vmsPerHost()
	if err != nil {
		return nil, err
	}
	infos := make([]HostInfo, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		infos[i] = HostInfo{Name: h.Name, URI: h.URI, Pool: h.PoolName(), VMs: counts[h.Name]}
		wg.Go(func() { describeHost(h, &infos[i]) })
	}
	wg.Wait()
	return infos, nil
}

// describeHost asks h about itself into in.
func describeHost(h lv.Host, in *HostInfo) {
	f, err := HostFacts(h)
	if err != nil {
		in.State, in.Problem = HostUnreachable, err.Error()
		return
	}
	in.State, in.Facts = HostUp, &f
	in.DomainType, in.DomainTypeDetail = f.DomainType(), f.Describe()
}

// HostFacts connects to h and asks for its facts.
func HostFacts(h lv.Host) (lv.Facts, error) {
	c, err := lv.Connect(h)
	if err != nil {
		return lv.Facts{}, err
	}
	defer c.Close()
	return c.Facts()
}

// vmsPerHost counts the VMs of the store on each libvirt host, by the
// name they were placed under.
func (m *Manager) vmsPerHost() (map[string]int, error) {
	names, err := m.store.Names()
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, n := range names {
		v, err := m.store.VM(n)
		if err != nil {
			continue // removed meanwhile, or shown by ls as it is
		}
		if pl, err := lv.ReadPlacement(v.Dir); err == nil && pl.Host.Name != "" {
			counts[pl.Host.Name]++
		}
	}
	return counts, nil
}

// AddHost records a libvirt host. Unless force, paddock first connects to
// it and refuses one it cannot reach; it returns what it learnt.
func (m *Manager) AddHost(h lv.Host, force bool) (*lv.Facts, error) {
	if err := lv.CheckHost(h); err != nil {
		return nil, err
	}
	var facts *lv.Facts
	if !force {
		f, err := HostFacts(h)
		if err != nil {
			return nil, fmt.Errorf("%w; check the URI, or add it anyway with --force", err)
		}
		facts = &f
	}
	return facts, m.Hosts().Add(h)
}
