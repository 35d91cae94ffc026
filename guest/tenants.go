package guest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/tenant"
)

// TenantInfo describes a tenant for paddock tenant ls and inspect: its
// limits, what its VMs use of them, and what it has.
type TenantInfo struct {
	*tenant.Tenant
	// Usage is what the tenant's VMs have (tenant.Limits says what
	// counts).
	Usage tenant.Usage `json:"usage"`
	// VMs and Networks are the names of the tenant's VMs and managed
	// networks, sorted.
	VMs      []string `json:"vms"`
	Networks []string `json:"networks"`
	// Dir is the tenant's directory.
	Dir string `json:"dir"`
}

// tenants opens the tenants of the state directory.
func (m *Manager) tenants() (*tenant.Store, error) { return tenant.Open(m.Home()) }

// TenantNotFoundError: no tenant has the name.
type TenantNotFoundError struct {
	Name       string
	Suggestion string
}

func (e *TenantNotFoundError) Error() string {
	if e.Suggestion != "" {
		return fmt.Sprintf("no tenant named '%s'; did you mean '%s'?", e.Name, e.Suggestion)
	}
	return fmt.Sprintf("no tenant named '%s' (paddock tenant ls lists them; paddock tenant create %s makes it)", e.Name, e.Name)
}

func (e *TenantNotFoundError) Unwrap() error { return tenant.ErrNotFound }

// tenantError turns a tenant store's ErrNotFound into a
// TenantNotFoundError with a suggestion.
func (m *Manager) tenantError(ts *tenant.Store, name string, err error) error {
	if !errors.Is(err, tenant.ErrNotFound) {
		return err
	}
	names, _ := ts.Names()
	return &TenantNotFoundError{Name: name, Suggestion: suggest(name, names)}
}

// CreateTenant adds tenant name with limits l.
func (m *Manager) CreateTenant(name string, l tenant.Limits) (*tenant.Tenant, error) {
	ts, err := m.tenants()
	if err != nil {
		return nil, err
	}
	return ts.Create(name, l)
}

// SetTenantLimits changes tenant name's limits: change gets the current
// ones and changes them, under the tenant's lock.
func (m *Manager) SetTenantLimits(name string, change func(*tenant.Limits) error) (*tenant.Tenant, error) {
	ts, err := m.tenants()
	if err != nil {
		return nil, err
	}
	lk, t, err := m.lockTenant(ts, name)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	l := t.Limits
	if err := change(&l); err != nil {
		return nil, err
	}
	return ts.SetLimits(lk, l)
}

// RemoveTenant removes tenant name; refused (tenant.ErrInUse) while it
// has VMs or managed networks, naming them.
func (m *Manager) RemoveTenant(name string) error {
	ts, err := m.tenants()
	if err != nil {
		return err
	}
	err = ts.Remove(name, func() error {
		in, err := m.tenantInfo(ts, name)
		if err != nil {
			return err
		}
		var has []string
		if len(in.VMs) > 0 {
			has = append(has, "VMs "+strings.Join(in.VMs, ", ")+" (paddock rm)")
		}
		if len(in.Networks) > 0 {
			has = append(has, "networks "+strings.Join(in.Networks, ", ")+" (paddock network rm --tenant "+name+")")
		}
		if has != nil {
			return fmt.Errorf("tenant %s is %w: it has %s; remove them first", name, tenant.ErrInUse, strings.Join(has, " and "))
		}
		return nil
	})
	return m.tenantError(ts, name, err)
}

// lockTenant takes tenant name's lock and returns it with the tenant's
// record as it is under the lock: an error (with a suggestion) if there
// is no such tenant, or it was removed while the lock was awaited.
func (m *Manager) lockTenant(ts *tenant.Store, name string) (*tenant.Lock, *tenant.Tenant, error) {
	if _, err := ts.Get(name); err != nil {
		return nil, nil, m.tenantError(ts, name, err) // before a directory is made for it
	}
	lk, err := ts.Lock(name)
	if err != nil {
		return nil, nil, err
	}
	t, err := ts.Get(name)
	if err != nil {
		lk.Unlock()
		return nil, nil, m.tenantError(ts, name, err)
	}
	return lk, t, nil
}

// CreateNetwork adds the managed network name of tenant ten (subnet as
// network.Store.Create takes it), under the tenant's lock, so that no
// tenant rm removes the tenant meanwhile.
func (m *Manager) CreateNetwork(ten, name string, subnet netip.Prefix) (*network.Network, error) {
	ts, err := m.tenants()
	if err != nil {
		return nil, err
	}
	lk, _, err := m.lockTenant(ts, ten)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	st, err := m.networks()
	if err != nil {
		return nil, err
	}
	return st.Create(network.Ref(ten, name), subnet)
}

// Tenant describes tenant name.
func (m *Manager) Tenant(name string) (*TenantInfo, error) {
	ts, err := m.tenants()
	if err != nil {
		return nil, err
	}
	in, err := m.tenantInfo(ts, name)
	if err != nil {
		return nil, m.tenantError(ts, name, err)
	}
	return in, nil
}

// Tenants describes every tenant, sorted by name.
func (m *Manager) Tenants() ([]*TenantInfo, error) {
	ts, err := m.tenants()
	if err != nil {
		return nil, err
	}
	names, err := ts.Names()
	if err != nil {
		return nil, err
	}
	var out []*TenantInfo
	for _, n := range names {
		in, err := m.tenantInfo(ts, n)
		if errors.Is(err, tenant.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// tenantInfo gathers tenant name's facts.
func (m *Manager) tenantInfo(ts *tenant.Store, name string) (*TenantInfo, error) {
	t, err := ts.Get(name)
	if err != nil {
		return nil, err
	}
	in := &TenantInfo{Tenant: t, VMs: []string{}, Networks: []string{}, Dir: ts.Dir(name)}
	d, err := m.tenantDemand(name, "")
	if err != nil {
		return nil, err
	}
	in.VMs = append(in.VMs, d.VMNames...)
	slices.Sort(in.VMs)
	in.Usage = d.Usage
	st, err := m.networks()
	if err != nil {
		return nil, err
	}
	nets, err := st.List()
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.Tenant == name {
			in.Networks = append(in.Networks, n.ShortName())
		}
	}
	return in, nil
}

// TenantLookup answers configs' question about the tenant a VM names
// (Host.Tenants) from the state directory.
func (m *Manager) TenantLookup() configs.TenantLookup { return tenantLookup{m} }

type tenantLookup struct{ m *Manager }

func (l tenantLookup) Tenant(name string) error {
	ts, err := l.m.tenants()
	if err != nil {
		return err
	}
	_, err = ts.Get(name)
	return err
}

func (l tenantLookup) TenantNames() []string {
	ts, err := l.m.tenants()
	if err != nil {
		return nil
	}
	names, _ := ts.Names()
	return names
}
