package main

import (
	"fmt"

	"github.com/paddock-vm/paddock/configs"
	"github.com/spf13/cobra"
)

func newSnapshotRestoreCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "restore [--force] VM SNAPSHOT",
		Short: "Start a VM from one of its snapshots",
		Long: `Start the VM from the snapshot in a new VMM and return once it runs: the
guest continues from the snapshot's instant, with its writable disks
reverted to the snapshot's internal qcow2 snapshots (disk and memory go
back together; what was written since is lost). The memory file is mapped,
not read: pages load as the guest touches them. A snapshot can be restored
any number of times; each restore starts from the same instant. A VM that
runs is refused unless --force, which kills it first. A snapshot of
another format version, another CPU model or other hardware than the VM's
spec is refused before the VM is touched.

Exit status: 0 restored, 1 error, 2 usage, 3 no such VM or snapshot, 4
the VM runs, 5 another command is changing it.`,
		Example: `  paddock snapshot restore web before-upgrade`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("snapshot restore needs a VM name and a snapshot name (usage: paddock snapshot %s)", cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return snapshotRestoreAction(cmd, args[0], args[1], force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "kill the VM first if it runs")
	return managed(cmd)
}

func snapshotRestoreAction(cmd *cobra.Command, name, snap string, force bool) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	info, err := m.RestoreSnapshot(cmd.Context(), name, snap, force)
	if err != nil {
		return managedError(err)
	}
	if info.Backend == string(configs.BackendLibvirt) {
		// libvirt reads all the saved memory first: not lazy, as the
		// native backend's restore is.
		fmt.Fprintf(cmd.OutOrStdout(), "%s: restored snapshot %s (libvirt host %s; libvirt loaded all its memory before the guest went on, not lazily)\n", name, snap, info.Host)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: restored snapshot %s (VMM pid %d)\n", name, snap, info.PID)
	return nil
}
