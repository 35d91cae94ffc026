package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/tenant"
)

func newTenantSetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set [--max-vms N] [--max-cpus N] [--max-memory SIZE] [--max-disk SIZE] NAME",
		Short: "Change a tenant's limits",
		Long: `Change the limits the command line names of tenant NAME (the others stay);
"unlimited" removes one. A limit lower than what the tenant's VMs have
is taken: nothing is removed or stopped, but no VM is created, cloned or
started in the tenant until it fits again. The default tenant's limits
are set the same way.

Exit status: 0 changed, 1 error, 2 usage, 3 no such tenant.`,
		Example:           `  paddock tenant set acme --max-vms 20 --max-disk unlimited`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTenants,
		RunE: func(cmd *cobra.Command, args []string) error {
			return tenantSetAction(cmd, args[0])
		},
	}
	limitFlags(cmd)
	return cmd
}

func tenantSetAction(cmd *cobra.Command, name string) error {
	if !slices.ContainsFunc(tenant.Flags, cmd.Flags().Changed) {
		return usageError("tenant set needs a limit to change: %s (paddock tenant inspect %s shows them)", "--"+strings.Join(tenant.Flags, ", --"), name)
	}
	var probe tenant.Limits
	if err := changeLimits(cmd, &probe); err != nil {
		return err // before anything is opened
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	t, err := m.SetTenantLimits(name, func(l *tenant.Limits) error { return changeLimits(cmd, l) })
	if err != nil {
		return tenantError(err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: limits %s\n", t.Name, limitsText(t.Limits))
	return nil
}
