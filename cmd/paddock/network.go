package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/store"
)

func newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network COMMAND",
		Short: "Manage paddock's managed networks (bridge, DHCP, DNS, NAT, port forwards)",
		Long: `A managed network gives its VMs (nics: [{network: NAME}]) a bridge, a
subnet, addresses from a DHCP server pinned to each VM, DNS through the
host's resolvers, outbound NAT and the VMs' port forwards (ports:). The
network "default" is created the first time a VM uses it. A network is up
while VMs on it run, and down otherwise. See docs/networks.md.`,
		Args: noArgs,
	}
	cmd.AddCommand(newNetworkCreateCommand(), newNetworkLsCommand(), newNetworkInspectCommand(), newNetworkRmCommand())
	return cmd
}

// openNetworks opens the networks of the state directory.
func openNetworks() (*network.Store, error) {
	home, err := store.DefaultHome()
	if err != nil {
		return nil, err
	}
	return network.Open(home)
}

// networkError gives a network error its exit status: 3 for no such
// network, 4 for one in use or existing.
func networkError(err error) error {
	switch {
	case errors.Is(err, network.ErrNotFound):
		return &exitError{code: codeNoVM, err: err}
	case errors.Is(err, network.ErrInUse), errors.Is(err, network.ErrExists):
		return &exitError{code: codeWrongState, err: err}
	}
	return err
}

func newNetworkCreateCommand() *cobra.Command {
	var subnet string
	cmd := &cobra.Command{
		Use:   "create [--subnet CIDR] NAME",
		Short: "Create a managed network",
		Long: `Create the managed network NAME (1 to 32 lowercase letters, digits and
dashes). --subnet gives its IPv4 subnet (a prefix length of 16 to 30); by
default paddock takes the first of 10.77.0.0/24, 10.77.1.0/24, ... that no
other network has and no route of the host overlaps. The host's address on
the network (gateway, DHCP and DNS server) is the subnet's first address.
Nothing changes on the host until a VM on the network starts.

Exit status: 0 ok, 1 error, 2 usage, 4 the network exists.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p netip.Prefix
			if subnet != "" {
				var err error
				if p, err = netip.ParsePrefix(subnet); err != nil {
					return usageError("--subnet %q is not a subnet such as 10.78.0.0/24", subnet)
				}
			}
			st, err := openNetworks()
			if err != nil {
				return err
			}
			n, err := st.Create(args[0], p)
			if err != nil {
				return networkError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", n.Name, n.Subnet)
			return nil
		},
	}
	cmd.Flags().StringVar(&subnet, "subnet", "", "IPv4 subnet, such as 10.78.0.0/24")
	return cmd
}

func newNetworkLsCommand() *cobra.Command {
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:     "ls [--json]",
		Aliases: []string{"list"},
		Short:   "List managed networks",
		Long: `List the managed networks: NAME, SUBNET, GATEWAY, BRIDGE, STATE (up while
VMs on it run) and VMS (how many VMs have an address on it). --json
prints what paddock network inspect prints, for each.

Exit status: 0 ok, 1 error, 2 usage.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openNetworks()
			if err != nil {
				return err
			}
			names, err := st.Names()
			if err != nil {
				return err
			}
			var infos []*network.Info
			for _, name := range names {
				in, err := st.Info(name)
				if errors.Is(err, network.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				infos = append(infos, in)
			}
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				if infos == nil {
					infos = []*network.Info{}
				}
				return writeJSON(out, infos)
			case quiet:
				for _, in := range infos {
					fmt.Fprintln(out, in.Name)
				}
				return nil
			}
			rows := [][]string{{"NAME", "SUBNET", "GATEWAY", "BRIDGE", "STATE", "VMS"}}
			for _, in := range infos {
				vms := map[string]bool{}
				for _, l := range in.Leases {
					vms[l.VM] = true
				}
				rows = append(rows, []string{in.Name, in.Subnet.String(), in.Gateway.String(), in.Bridge, in.State, fmt.Sprint(len(vms))})
			}
			writeTable(out, rows, terminalWidth(out))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	return cmd
}

func newNetworkInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a managed network and its leases as JSON",
		Long: `Print one JSON object: the network (subnet, gateway, bridge and its MAC,
nftables table, tenant), its state (up while VMs on it run), its leases
(VM, NIC index, MAC, address) and its files.

Exit status: 0 ok, 1 error, 2 usage, 3 no such network.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openNetworks()
			if err != nil {
				return err
			}
			in, err := st.Info(args[0])
			if err != nil {
				return networkError(err)
			}
			return writeJSON(cmd.OutOrStdout(), in)
		},
	}
}

func newNetworkRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove managed networks",
		Long: `Remove each named network. A network that VMs have addresses on is
refused, naming them (remove the VMs first), and so is one that is up.

Exit status: 0 ok, 1 error, 2 usage, 3 no such network, 4 in use; with
several names, each is tried and the status is the first failure's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openNetworks()
			if err != nil {
				return err
			}
			return forEachVM(cmd, args, func(name string) error { return networkError(st.Remove(name)) })
		},
	}
}
