package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/tenant"
)

func newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network COMMAND",
		Short: "Manage paddock's managed networks (bridge, DHCP, DNS, NAT, port forwards)",
		Long: `A managed network gives its VMs (nics: [{network: NAME}]) a bridge, a
subnet, addresses from a DHCP server pinned to each VM, DNS through the
host's resolvers, outbound NAT and the VMs' port forwards (ports:). The
network "default" is created the first time a VM uses it. A network is up
while VMs on it run, and down otherwise. Each tenant has networks of its
own (--tenant; a VM's network: names one of its tenant's), so acme's
default network is not the default tenant's. See docs/networks.md.`,
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

// tenantNetFlag adds --tenant, the tenant whose networks a network
// command means.
func tenantNetFlag(cmd *cobra.Command, ten *string) {
	cmd.Flags().StringVar(ten, "tenant", tenant.Default, "the tenant whose network this is")
}

// networkRef is the reference of network name of tenant ten; name may
// be a reference itself (TENANT/NAME), when --tenant was not given.
func networkRef(cmd *cobra.Command, ten, name string) (string, error) {
	if strings.Contains(name, "/") {
		if cmd.Flags().Changed("tenant") {
			return "", usageError("%q names its tenant already: leave out --tenant", name)
		}
		return name, nil
	}
	return network.Ref(ten, name), nil
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
	var subnet, ten string
	cmd := &cobra.Command{
		Use:   "create [--subnet CIDR] [--tenant TENANT] NAME",
		Short: "Create a managed network",
		Long: `Create the managed network NAME (1 to 32 lowercase letters, digits and
dashes). --subnet gives its IPv4 subnet (a prefix length of 16 to 30); by
default paddock takes the first of 10.77.0.0/24, 10.77.1.0/24, ... that no
other network of the tenant has and no route of the host overlaps. The
host's address on the network (gateway, DHCP and DNS server) is the
subnet's first address. Nothing changes on the host until a VM on the
network starts. --tenant makes the network the tenant's (its VMs' network:
NAME). Every tenant but the default has its networks in a network
namespace of its own, so tenants may use the same subnets: a subnet must
be free only among its tenant's networks (and overlap no route of the
host but the managed networks' bridges, nor 100.127.0.0/16, kept for the
tenants' uplinks).

Exit status: 0 ok, 1 error, 2 usage, 3 no such tenant, 4 the network
exists.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p netip.Prefix
			if subnet != "" {
				var err error
				if p, err = netip.ParsePrefix(subnet); err != nil {
					return usageError("--subnet %q is not a subnet such as 10.78.0.0/24", subnet)
				}
			}
			m, err := openManager()
			if err != nil {
				return err
			}
			n, err := m.CreateNetwork(ten, args[0], p)
			if err != nil {
				return tenantError(networkError(err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", n.Name, n.Subnet)
			return nil
		},
	}
	cmd.Flags().StringVar(&subnet, "subnet", "", "IPv4 subnet, such as 10.78.0.0/24")
	tenantNetFlag(cmd, &ten)
	return cmd
}

func newNetworkLsCommand() *cobra.Command {
	var asJSON, quiet bool
	var ten string
	cmd := &cobra.Command{
		Use:     "ls [--json] [--tenant TENANT]",
		Aliases: []string{"list"},
		Short:   "List managed networks",
		Long: `List the managed networks of every tenant: NAME, SUBNET, GATEWAY, BRIDGE,
STATE (up while VMs on it run) and VMS (how many VMs have an address on
it); a TENANT column follows NAME when a network is not the default
tenant's. --tenant lists only that tenant's. --json prints what paddock
network inspect prints, for each.

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
				if ten == "" || in.Tenant == ten {
					infos = append(infos, in)
				}
			}
			return writeListing(cmd.OutOrStdout(), asJSON, quiet, infos, func(in *network.Info) string { return in.Name }, networkRows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names (references: TENANT/NAME for a tenant other than the default) only")
	cmd.Flags().StringVar(&ten, "tenant", "", "only this tenant's networks")
	return cmd
}

// networkRows is network ls's table.
func networkRows(infos []*network.Info) [][]string {
	tenants := slices.ContainsFunc(infos, func(in *network.Info) bool { return in.Tenant != network.DefaultTenant })
	rows := [][]string{{"NAME", "SUBNET", "GATEWAY", "BRIDGE", "STATE", "VMS"}}
	if tenants {
		rows[0] = slices.Insert(rows[0], 1, "TENANT")
	}
	for _, in := range infos {
		vms := map[string]bool{}
		for _, l := range in.Leases {
			vms[l.VM] = true
		}
		row := []string{in.ShortName(), in.Subnet.String(), in.Gateway.String(), in.Bridge, in.State, fmt.Sprint(len(vms))}
		if tenants {
			row = slices.Insert(row, 1, in.Tenant)
		}
		rows = append(rows, row)
	}
	return rows
}

func newNetworkInspectCommand() *cobra.Command {
	var ten string
	cmd := &cobra.Command{
		Use:   "inspect [--tenant TENANT] NAME",
		Short: "Show a managed network and its leases as JSON",
		Long: `Print one JSON object: the network (subnet, gateway, bridge and its MAC,
nftables table, tenant; its name is TENANT/NAME for a tenant other than
the default), its state (up while VMs on it run), its leases (VM, NIC
index, MAC, address) and its files. NAME is --tenant's network (the
default tenant's without it), or written TENANT/NAME.

Exit status: 0 ok, 1 error, 2 usage, 3 no such network.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openNetworks()
			if err != nil {
				return err
			}
			ref, err := networkRef(cmd, ten, args[0])
			if err != nil {
				return err
			}
			in, err := st.Info(ref)
			if err != nil {
				return networkError(err)
			}
			return writeJSON(cmd.OutOrStdout(), in)
		},
	}
	tenantNetFlag(cmd, &ten)
	return cmd
}

func newNetworkRmCommand() *cobra.Command {
	var ten string
	cmd := &cobra.Command{
		Use:     "rm [--tenant TENANT] NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove managed networks",
		Long: `Remove each named network of --tenant (the default tenant's without it;
TENANT/NAME names another's too). A network that VMs have addresses on
is refused, naming them (remove the VMs first), and so is one that is
up.

Exit status: 0 ok, 1 error, 2 usage, 3 no such network, 4 in use; with
several names, each is tried and the status is the first failure's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openNetworks()
			if err != nil {
				return err
			}
			return forEachVM(cmd, args, func(name string) error {
				ref, err := networkRef(cmd, ten, name)
				if err != nil {
					return err
				}
				return networkError(st.Remove(ref))
			})
		},
	}
	tenantNetFlag(cmd, &ten)
	return cmd
}
