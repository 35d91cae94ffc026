package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/store"
)

func newPauseCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pause NAME...",
		Short: "Freeze running VMs (their vCPUs stop; memory and devices stay)",
		Long: `Stop every vCPU of each VM; it stays in memory, its console stays
attached, and paddock resume lets it go on where it stopped.

Exit status: 0 paused, 1 error, 2 usage, 3 no such VM, 4 a VM is not
running (stopped, or paused already).`,
		Args: someVMs,
		RunE: pauseAction,
	}
	return managed(cmd, store.StateRunning)
}

func pauseAction(cmd *cobra.Command, names []string) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, names, func(name string) error {
		if _, err := m.Pause(cmd.Context(), name); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: paused\n", name)
		return nil
	})
}
