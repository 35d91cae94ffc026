package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME... [--force]",
		Aliases: []string{"remove"},
		Short:   "Remove VMs and everything paddock created for them",
		Long: `Remove each VM: its stored spec, state, console and VMM logs and
everything else paddock created in its directory. Files the YAML named
(kernel, initrd, console.log) are not touched. A running VM is refused
unless --force, which kills it first.

Exit status: 0 removed, 1 error, 2 usage, 3 no such VM, 4 a VM runs
(without --force), 5 another command is changing a VM.`,
		Args: someVMs,
		RunE: func(cmd *cobra.Command, names []string) error {
			return rmAction(cmd, names, force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running VM first")
	return managed(cmd)
}

func rmAction(cmd *cobra.Command, names []string, force bool) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, names, func(name string) error {
		if err := m.Remove(cmd.Context(), name, force); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: removed\n", name)
		return nil
	})
}
