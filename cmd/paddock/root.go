package main

import (
	"github.com/spf13/cobra"
)

// newRootCommand builds the paddock command tree. Each subcommand lives in
// its own file as newXxxCommand() + xxxAction().
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "paddock",
		Short:         "Run virtual machines on KVM from one YAML file",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildVersion().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(
		newVersionCommand(),
		newValidateCommand(),
		newRunCommand(),
		newDoctorCommand(),
		newImageCommand(),
		newTemplateCommand(),
		newCreateCommand(),
		newCloneCommand(),
		newStartCommand(),
		newLsCommand(),
		newConsoleCommand(),
		newLogsCommand(),
		newPauseCommand(),
		newResumeCommand(),
		newStopCommand(),
		newKillCommand(),
		newInspectCommand(),
		newRmCommand(),
		newSnapshotCommand(),
		newUpCommand(),
		newSSHCommand(),
		newCpCommand(),
		newHostCommand(),
		newVMMCommand(),
		newNetworkCommand(),
		newTenantCommand(),
		newNetdCommand(),
	)
	enforceUsage(root)
	return root
}
