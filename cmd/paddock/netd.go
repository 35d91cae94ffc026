package main

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/store"
)

func newNetdCommand() *cobra.Command {
	var home string
	var userFD int
	cmd := &cobra.Command{
		Use:    "netd --user-fd N [--home DIR] NETWORK",
		Short:  "Serve one managed network while VMs use it (started by the first VM)",
		Hidden: true,
		Long: `Bring the managed network NETWORK up (bridge, NAT, port forwards, DHCP,
DNS), serve the VM whose connection is descriptor --user-fd and the VMs
that attach later on the network's netd.sock, and take everything down
and exit when the last one has gone (docs/networks.md). A VM's VMM starts
it; SIGTERM takes the network down at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return netdAction(cmd, home, userFD, args[0])
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "state directory (default $PADDOCK_HOME or the per-user default)")
	cmd.Flags().IntVar(&userFD, "user-fd", 0, "descriptor of the first VM's connection")
	return cmd
}

func netdAction(cmd *cobra.Command, home string, userFD int, name string) error {
	if home == "" {
		h, err := store.DefaultHome()
		if err != nil {
			return err
		}
		home = h
	}
	if userFD <= 2 {
		return usageError("netd: --user-fd must name the first VM's connection (3 or more)")
	}
	user, err := network.UserConn(userFD)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT) // detached: no terminal
	return network.ServeNetd(ctx, network.NetdConfig{Home: home, Name: name, User: user, Logf: network.NetdLogger(cmd.ErrOrStderr())})
}
