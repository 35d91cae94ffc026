package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
)

func newStopCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME... [--timeout 30s]",
		Short: "Shut VMs down: ACPI power button, then forced off after a timeout",
		Long: `Press each VM's ACPI power button (a paused VM is resumed first, so it
hears it) and wait for the guest to power off; a guest that has not within
--timeout is forced off. A VM waiting to restart (restart policy) stops at
once. Returns when the VMM has exited.

Exit status: 0 stopped (cleanly or forced: the message says which), 1
error, 2 usage, 3 no such VM, 4 a VM is not running, 5 another command is
changing a VM.`,
		Example: `  paddock stop web
  paddock stop web --timeout 2m`,
		Args: someVMs,
		RunE: func(cmd *cobra.Command, names []string) error {
			return stopAction(cmd, names, timeout)
		},
	}
	cmd.Flags().DurationVarP(&timeout, "timeout", "t", api.DefaultShutdownTimeout, "how long the guest has to power off before it is forced off")
	return managed(cmd, store.StateRunning, store.StatePaused, store.StateRestarting)
}

func stopAction(cmd *cobra.Command, names []string, timeout time.Duration) error {
	if timeout < 0 || timeout > api.MaxShutdownTimeout {
		return usageError("--timeout %s: want 0 to %s", timeout, api.MaxShutdownTimeout)
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, names, func(name string) error {
		res, err := m.Stop(cmd.Context(), name, timeout)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%.1fs)\n", name, describeStop(res, timeout), res.Elapsed)
		return nil
	})
}

// describeStop says how a stop went.
func describeStop(res api.StopResult, timeout time.Duration) string {
	switch res.How {
	case api.StopACPI:
		return "stopped: the guest shut down after the ACPI power button"
	case api.StopForced:
		return fmt.Sprintf("forced off: the guest did not power off within %s of the ACPI power button", timeout)
	case api.StopCancelled:
		return "stopped while waiting to restart"
	case api.StopKilled:
		return "killed"
	}
	return "stopped"
}
