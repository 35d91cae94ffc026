package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/tenant"
)

func newTenantCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant COMMAND",
		Short: "Manage tenants: customers' shares of the host, with quotas",
		Long: `A tenant is one customer's share of the host. A VM names its tenant in its
YAML (tenant: acme; default "default", which always exists). A tenant's
limits bound what its VMs have all together: how many VMs, their vCPUs,
their memory and the virtual size of their writable disks; every VM of
the tenant counts, running or not. A tenant's managed networks are its
own: network: default in a VM of tenant acme is acme's default network.
See docs/cli.md (Tenants).`,
		Args: noArgs,
	}
	cmd.AddCommand(newTenantCreateCommand(), newTenantLsCommand(), newTenantInspectCommand(), newTenantSetCommand(), newTenantRmCommand())
	return cmd
}

// limitFlags adds the limit flags (tenant.Flags) to cmd, each a string
// parsed by tenant.ParseLimit.
func limitFlags(cmd *cobra.Command) {
	help := map[string]string{
		"max-vms":    "most VMs the tenant may have (or unlimited)",
		"max-cpus":   "most vCPUs its VMs may have together (or unlimited)",
		"max-memory": "most memory its VMs may have together, such as 32GiB (or unlimited)",
		"max-disk":   "most virtual disk size its VMs' writable disks may have together, such as 200GiB (or unlimited)",
	}
	for _, f := range tenant.Flags {
		cmd.Flags().String(f, "", help[f])
	}
}

// changeLimits applies the limit flags the command line gave to l; a
// bad value is a usage error naming the flag.
func changeLimits(cmd *cobra.Command, l *tenant.Limits) error {
	for _, f := range tenant.Flags {
		if !cmd.Flags().Changed(f) {
			continue
		}
		v, _ := cmd.Flags().GetString(f)
		if err := tenant.ParseLimit(l, f, v); err != nil {
			return usageError("%v", err)
		}
	}
	return nil
}

// tenantError gives a tenant error its exit status: 3 for no such
// tenant, 4 for one in use or existing, or a quota exceeded.
func tenantError(err error) error {
	var nf *guest.TenantNotFoundError
	switch {
	case errors.As(err, &nf), errors.Is(err, tenant.ErrNotFound):
		return &exitError{code: codeNoVM, err: err}
	case errors.Is(err, tenant.ErrInUse), errors.Is(err, tenant.ErrExists), errors.Is(err, tenant.ErrQuota):
		return &exitError{code: codeWrongState, err: err}
	}
	return err
}

// completeTenants completes tenant names.
func completeTenants(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	m, err := openManager()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return m.TenantLookup().TenantNames(), cobra.ShellCompDirectiveNoFileComp
}

// lazyTenants answers configs' question about a VM's tenant from the
// state directory, which it opens only for a tenant other than the
// default (which always exists): validating a file that names none must
// not create the state directory.
type lazyTenants struct{}

func (lazyTenants) Tenant(name string) error {
	if name == tenant.Default {
		return nil
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	return m.TenantLookup().Tenant(name)
}

func (lazyTenants) TenantNames() []string {
	m, err := openManager()
	if err != nil {
		return nil
	}
	return m.TenantLookup().TenantNames()
}
