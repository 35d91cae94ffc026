package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/store"
)

func newKillCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kill NAME...",
		Short: "Stop VMs at once, without asking the guest",
		Long: `Stop each VM immediately, as pulling the power cord would (the guest
gets no chance to sync its disks). Works during a pending paddock stop. A
VMM that does not answer is killed with SIGKILL.

Exit status: 0 killed, 1 error, 2 usage, 3 no such VM, 4 a VM is not
running.`,
		Args: someVMs,
		RunE: killAction,
	}
	return managed(cmd, store.StateRunning, store.StatePaused, store.StateStopping, store.StateRestarting, store.StateStarting)
}

func killAction(cmd *cobra.Command, names []string) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, names, func(name string) error {
		res, err := m.Kill(cmd.Context(), name)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: killed (%.1fs)\n", name, res.Elapsed)
		return nil
	})
}
