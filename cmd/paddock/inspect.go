package main

import (
	"github.com/paddock-vm/paddock/guest"
	"github.com/spf13/cobra"
)

func newInspectCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a VM's resolved spec and runtime state as JSON",
		Long: `Print one JSON object: the VM's state (derived as in paddock ls), labels,
its VMM's pid, start and boot times, boots and restarts while it runs, how
its last run ended (last_exit: reason, how, detail, and for crashes the
last console lines and VMM messages), the last start error, the resolved
config (config) and the VM's files (paths).

Exit status: 0 ok, 1 error, 2 usage, 3 no such VM.`,
		Args: oneVM,
		RunE: inspectAction,
	}
	return managed(cmd)
}

func inspectAction(cmd *cobra.Command, args []string) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	info, err := m.Inspect(args[0])
	if err != nil {
		return managedError(err)
	}
	hostWarnings(cmd, m, []*guest.Info{info})
	return writeJSON(cmd.OutOrStdout(), info)
}
