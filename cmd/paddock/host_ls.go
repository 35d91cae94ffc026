package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
)

func newHostLsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [--json]",
		Aliases: []string{"list"},
		Short:   "List the libvirt hosts and what they can run",
		Long: `List the libvirt hosts paddock knows, asking each (all at once): NAME, URI,
STATE (up, or unreachable: --json says why), VMS (this state directory's
VMs on it), CPUS, FREE-MEMORY and TYPE: the domain type a VM of type auto
gets there, kvm (hardware virtualization) or qemu (TCG, software
emulation, with the reason there is no KVM).

--json prints a JSON array, one object per host, with the host's facts
(hostname, libvirt and QEMU versions, memory, domains).

Exit status: 0 ok (also when a host is unreachable), 1 error, 2 usage.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return hostLsAction(cmd, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func hostLsAction(cmd *cobra.Command, asJSON bool) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	infos, err := m.HostInfos()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return writeJSON(out, infos)
	}
	writeTable(out, hostRows(infos), terminalWidth(out))
	return nil
}

// hostRows is host ls's table: a header, then one row per host.
func hostRows(infos []guest.HostInfo) [][]string {
	rows := [][]string{{"NAME", "URI", "STATE", "VMS", "CPUS", "FREE-MEMORY", "TYPE"}}
	for _, in := range infos {
		cpus, free, typ := "-", "-", "-"
		if in.Facts != nil {
			cpus, free, typ = fmt.Sprint(in.CPUs), configs.ByteSize(in.FreeMemory).Approx(), in.DomainTypeDetail
		}
		rows = append(rows, []string{in.Name, in.URI, in.State, fmt.Sprint(in.VMs), cpus, free, typ})
	}
	return rows
}
