package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
)

func newHostAddCommand() *cobra.Command {
	var pool string
	var force bool
	cmd := &cobra.Command{
		Use:   "add NAME URI [--pool POOL] [--force]",
		Short: "Add a libvirt host by name",
		Long: `Record a libvirt host under NAME (a DNS label; not auto). URI is its
libvirt connection URI: qemu:///system (this machine), qemu+ssh://USER@HOST/system
(an SSH tunnel to its libvirtd's socket; paddock uses ~/.ssh's key and
known_hosts), qemu+tcp://HOST[:PORT]/system, qemu+tls://HOST/system. Only
QEMU hosts are supported. NAME local replaces paddock's default local host.

paddock connects first and refuses a host it cannot reach (--force adds it
anyway). Its volumes go into the storage pool --pool (default paddock,
which paddock makes in /var/lib/libvirt/paddock on a /system host that
lacks it).

Exit status: 0 added, 1 error (unreachable, a name taken), 2 usage.`,
		Example: `  paddock host add lab1 qemu+ssh://root@lab1/system
  paddock host add lab2 qemu+tcp://10.0.0.2/system --pool fast`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("host add needs a name and a URI, got %d arguments (usage: paddock host %s)", len(args), cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return hostAddAction(cmd, lv.Host{Name: args[0], URI: args[1], Pool: pool}, force)
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "the host's storage pool for paddock's volumes (default "+lv.DefaultPool+")")
	cmd.Flags().BoolVar(&force, "force", false, "add the host even if it cannot be reached now")
	return cmd
}

func hostAddAction(cmd *cobra.Command, h lv.Host, force bool) error {
	if err := lv.CheckHost(h); err != nil {
		return usageError("%v", err)
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	f, err := m.AddHost(h, force)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f == nil {
		fmt.Fprintf(out, "%s: added (%s), not checked\n", h.Name, h.URI)
		return nil
	}
	fmt.Fprintf(out, "%s: added (%s): libvirt %s, QEMU %s, %d CPUs, %s free; domains run as %s\n",
		h.Name, h.URI, f.Libvirt, f.QEMU, f.CPUs, configs.ByteSize(f.FreeMemory).Approx(), f.Describe())
	return nil
}
