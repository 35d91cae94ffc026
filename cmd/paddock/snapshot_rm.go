package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newSnapshotRmCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm VM SNAPSHOT...",
		Aliases: []string{"remove"},
		Short:   "Delete snapshots of a VM",
		Long: `Delete each snapshot: its directory, and the internal qcow2 snapshots it
left in the VM's disks (through the VMM if the VM runs, which holds the
disks). A disk that has lost its internal snapshot meanwhile is left as
it is.

Every snapshot is tried, in order. Exit status (of the first failure): 0
removed, 1 error, 2 usage, 3 no such VM or snapshot, 5 another command is
changing the VM.`,
		Example: `  paddock snapshot rm web before-upgrade`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError("snapshot rm needs a VM name and at least one snapshot name (usage: paddock snapshot %s)", cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return snapshotRmAction(cmd, args[0], args[1:])
		},
	}
	return managed(cmd)
}

func snapshotRmAction(cmd *cobra.Command, name string, snaps []string) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, snaps, func(snap string) error {
		if err := m.RemoveSnapshot(cmd.Context(), name, snap); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: snapshot %s removed\n", name, snap)
		return nil
	})
}
