package main

import (
	"github.com/spf13/cobra"
)

func newHostCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Manage the libvirt hosts that run backend: libvirt VMs",
		Long: `A libvirt VM (backend: libvirt) runs as a domain on a libvirt host: this
machine's system libvirtd, called local (qemu:///system), or another
machine's, reached over ssh, tcp or tls. paddock keeps the hosts it knows
in its state directory; a VM names its host (libvirt.host, or --host on
create and up), or auto for the reachable host with the most free memory.
docs/libvirt.md tells how paddock uses a host.`,
	}
	cmd.AddCommand(
		newHostAddCommand(),
		newHostLsCommand(),
		newHostRmCommand(),
	)
	return cmd
}
