package configs

import (
	"errors"
)

// DefaultTenant is the tenant of a VM whose YAML names none. It always
// exists, without limits unless paddock tenant set gives it some.
const DefaultTenant = "default"

// MaxTenantNameLen is the longest tenant name.
const MaxTenantNameLen = 32

// ErrNoTenant is what a TenantLookup returns, wrapped, for a name no
// tenant has.
var ErrNoTenant = errors.New("no such tenant")

// CheckTenantName validates a tenant's name: 1 to MaxTenantNameLen
// lowercase letters, digits and inner dashes, the rule of network names.
func CheckTenantName(name string) error {
	return checkShortName("tenant", name, MaxTenantNameLen)
}

// TenantLookup answers Validate's question about the tenant a VM names
// (Host.Tenants): the guest package implements it with paddock's tenant
// records.
type TenantLookup interface {
	// Tenant returns an error wrapping ErrNoTenant if no tenant is
	// called name.
	Tenant(name string) error
	// TenantNames returns the names of the tenants, for suggestions.
	TenantNames() []string
}

// tenant checks the tenant field's form (structure).
func (c *checker) tenant() {
	if err := CheckTenantName(c.vm.Tenant); err != nil {
		c.add("tenant", "%w", err)
	}
}

// tenantExists checks that the tenant exists on this host, suggesting
// the closest name when it does not.
func (c *checker) tenantExists(h Host) {
	vm := c.vm
	if h.Tenants == nil || c.skip("tenant") {
		return
	}
	err := h.Tenants.Tenant(vm.Tenant)
	switch {
	case errors.Is(err, ErrNoTenant):
		if best := closest(vm.Tenant, h.Tenants.TenantNames()); best != "" {
			c.add("tenant", "no tenant named %s; did you mean %s? (paddock tenant ls lists them)", quote(vm.Tenant), quote(best))
		} else {
			c.add("tenant", "no tenant named %s (paddock tenant ls lists them; paddock tenant create %s makes it)", quote(vm.Tenant), vm.Tenant)
		}
	case err != nil:
		c.add("tenant", "%w", err)
	}
}
