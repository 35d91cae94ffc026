package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/tenant"
)

func newTenantCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create [--max-vms N] [--max-cpus N] [--max-memory SIZE] [--max-disk SIZE] NAME",
		Short: "Create a tenant, with limits",
		Long: `Create the tenant NAME (1 to 32 lowercase letters, digits and dashes). Each
limit flag bounds what the tenant's VMs have all together: --max-vms how
many VMs exist, --max-cpus the sum of their cpus, --max-memory the sum of
their memory, --max-disk the sum of the virtual sizes of their writable
disks (a disk several VMs name counts once; read-only disks count
nothing). A limit left out, or "unlimited", is no limit; a limit is at
least 1 (or 1MiB). create, clone and up refuse a VM that would take the
tenant past a limit, and start refuses one that no longer fits.

Exit status: 0 created, 1 error, 2 usage, 4 the tenant exists.`,
		Example: `  paddock tenant create acme --max-vms 10 --max-cpus 16 --max-memory 32GiB --max-disk 200GiB`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return tenantCreateAction(cmd, args[0])
		},
	}
	limitFlags(cmd)
	return cmd
}

func tenantCreateAction(cmd *cobra.Command, name string) error {
	var l tenant.Limits
	if err := changeLimits(cmd, &l); err != nil {
		return err
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	if _, err := m.CreateTenant(name, l); err != nil {
		return tenantError(err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: created\n", name)
	return nil
}
