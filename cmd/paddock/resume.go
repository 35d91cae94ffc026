package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/store"
)

func newResumeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resume NAME...",
		Short: "Let paused VMs run again",
		Long: `Let the vCPUs of each paused VM run again.

Exit status: 0 resumed, 1 error, 2 usage, 3 no such VM, 4 a VM is not
paused.`,
		Args: someVMs,
		RunE: resumeAction,
	}
	return managed(cmd, store.StatePaused)
}

func resumeAction(cmd *cobra.Command, names []string) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, names, func(name string) error {
		if _, err := m.Resume(cmd.Context(), name); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: resumed\n", name)
		return nil
	})
}
