package main

import (
	"github.com/spf13/cobra"
)

func newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save a running VM completely, and bring it back in a new VMM",
		Long: `A snapshot captures a running or paused VM at one instant: every vCPU,
the interrupt controllers and clocks, every device, the guest's memory
(only the pages it touched), and the contents of each writable disk as an
internal qcow2 snapshot of the same name. paddock snapshot restore starts
the VM from it in a new VMM: the guest continues from that instant, its
disks rolled back with its memory. Snapshots live in the VM's directory
(snapshots/NAME) and survive a host reboot; they need the same CPU model,
the same hardware in the VM's spec, and qcow2 for every writable disk
(docs/cli.md, "Snapshots").`,
	}
	cmd.AddCommand(
		newSnapshotCreateCommand(),
		newSnapshotLsCommand(),
		newSnapshotRestoreCommand(),
		newSnapshotRmCommand(),
	)
	return cmd
}
