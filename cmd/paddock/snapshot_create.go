package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
)

func newSnapshotCreateCommand() *cobra.Command {
	var stop bool
	cmd := &cobra.Command{
		Use:   "create [--stop] VM [SNAPSHOT]",
		Short: "Snapshot a running or paused VM",
		Long: `Take a snapshot of the running or paused VM: it is held while its state,
its touched memory and an internal qcow2 snapshot of each writable disk
are saved, then it runs on (a paused VM stays paused), or stops with
--stop. SNAPSHOT defaults to snap-YYYYMMDD-HHMMSS (UTC). A VM that does
not run cannot be snapshotted (there is no machine to save; paddock image
snapshot takes a disk alone), and neither can one with a writable raw
disk.

Exit status: 0 taken, 1 error, 2 usage, 3 no such VM, 4 the VM does not
run or has a snapshot of that name, 5 another command is changing it.`,
		Example: `  paddock snapshot create web before-upgrade
  paddock snapshot create --stop web`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError("snapshot create needs a VM name and, optionally, a snapshot name (usage: paddock snapshot %s)", cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			snap := ""
			if len(args) == 2 {
				snap = args[1]
				if !store.ValidSnapshotName(snap) {
					return usageError("%q cannot name a snapshot: use 1 to %d letters, digits, '.', '_' and '-', starting with a letter or digit", snap, store.MaxNameLen)
				}
			}
			return snapshotCreateAction(cmd, args[0], snap, stop)
		},
	}
	cmd.Flags().BoolVar(&stop, "stop", false, "stop the VM once the snapshot is taken")
	return managed(cmd, store.StateRunning, store.StatePaused)
}

func snapshotCreateAction(cmd *cobra.Command, name, snap string, stop bool) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	in, err := m.CreateSnapshot(cmd.Context(), name, snap, stop)
	if err != nil {
		return managedError(err)
	}
	what := "snapshot " + in.Name + " taken"
	if stop {
		what += ", VM stopped"
	}
	held := time.Duration(in.Paused * float64(time.Second)).Round(time.Millisecond)
	if in.Backend == string(configs.BackendLibvirt) {
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (libvirt's internal snapshot: the memory is in the VM's first qcow2 disk; guest held %s)\n", name, what, held)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s of memory written, guest held %s)\n", name, what, formatBytes(in.MemoryWritten), held)
	return nil
}
