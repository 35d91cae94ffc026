package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newHostRmCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Forget a libvirt host",
		Long: `Forget the libvirt host NAME. VMs placed on it stay there and keep working:
each VM remembers its host's URI. Forgetting local brings back the
default, qemu:///system.

Exit status: 0 forgotten, 1 error (no such host), 2 usage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("host rm needs one host name, got %d arguments (usage: paddock host %s)", len(args), cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			if err := m.Hosts().Remove(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: removed\n", args[0])
			return nil
		},
	}
	return cmd
}
