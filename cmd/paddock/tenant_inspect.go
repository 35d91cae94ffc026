package main

import (
	"github.com/spf13/cobra"
)

func newTenantInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a tenant's limits and usage as JSON",
		Long: `Print one JSON object: the tenant's name, its limits (max_vms, max_cpus,
max_memory and max_disk, memory and disk in bytes; a limit left out is
no limit), its usage (vms, cpus, memory, disk: what its VMs have, the
units of the limits), its VMs and managed networks by name, and its
directory.

Exit status: 0 ok, 1 error, 2 usage, 3 no such tenant.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTenants,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			in, err := m.Tenant(args[0])
			if err != nil {
				return tenantError(err)
			}
			return writeJSON(cmd.OutOrStdout(), in)
		},
	}
}
