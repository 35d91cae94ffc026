package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newTenantRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove tenants",
		Long: `Remove each named tenant. A tenant that has VMs or managed networks is
refused, naming them: remove them first (paddock rm, paddock network rm
--tenant NAME). The default tenant cannot be removed.

Exit status: 0 ok, 1 error, 2 usage, 3 no such tenant, 4 in use; with
several names, each is tried and the status is the first failure's.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeTenants,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			return forEachVM(cmd, args, func(name string) error {
				if err := m.RemoveTenant(name); err != nil {
					return tenantError(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: removed\n", name)
				return nil
			})
		},
	}
}
