package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/vmm"
)

func newVMMCommand() *cobra.Command {
	var home, restore string
	var readyFD int
	var warm bool
	cmd := &cobra.Command{
		Use:    "vmm [--home DIR] [--ready-fd N] [--restore SNAPSHOT | --warm] NAME",
		Short:  "Run one managed VM's VMM (started by paddock start)",
		Hidden: true,
		Long: `Run the VM NAME from the state directory in this process until it ends,
serving its control API on the VM's ctl.sock (docs/vmm-api.md). paddock
start runs it detached, with the readiness pipe as --ready-fd; run by hand
it stays in the foreground and logs to standard error. --restore starts
the VM from one of its snapshots (paddock snapshot restore); --warm from
the memory snapshot of the warm template it was made from (a warm
clone's first start).`,
		Args: oneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := guest.VMMConfig{Home: home, Name: args[0], Log: cmd.ErrOrStderr(), Restore: restore, Warm: warm, Version: version}
			return vmmAction(cmd.Context(), c, readyFD)
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "state directory (default $PADDOCK_HOME or the per-user default)")
	cmd.Flags().IntVar(&readyFD, "ready-fd", 0, "descriptor to report readiness on (one JSON line)")
	cmd.Flags().StringVar(&restore, "restore", "", "restore this snapshot of the VM instead of booting it")
	cmd.Flags().BoolVar(&warm, "warm", false, "restore the memory snapshot of the VM's warm template instead of booting it")
	cmd.MarkFlagsMutuallyExclusive("restore", "warm")
	return managed(cmd)
}

func vmmAction(ctx context.Context, c guest.VMMConfig, readyFD int) error {
	// The handles paddock start opened and handed over, if any; the
	// variable is not passed on to the VMM's own children.
	c.FDTable = os.Getenv(vmm.FDTableEnv)
	os.Unsetenv(vmm.FDTableEnv)
	if readyFD > 2 {
		c.Ready = os.NewFile(uintptr(readyFD), "ready")
	}
	return guest.ServeVMM(ctx, c)
}
