package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
)

func newCloneCommand() *cobra.Command {
	var count int
	var start, allow bool
	var libvirtHost, tenantName string
	cmd := &cobra.Command{
		Use:   "clone TEMPLATE NAME [-n COUNT] [--start] [--tenant T] [--host HOST]",
		Short: "Make new VMs from a template",
		Long: `Make the VM NAME from TEMPLATE: it gets the template's spec (a built
template's, from paddock template build, is paddock's defaults with one
NIC on the network default), a qcow2 overlay on each of the template's base
disks (nothing is copied: creation takes the same time whatever the
disks' size) and a new identity: a new UUID (SMBIOS, cloud-init
instance-id), MAC addresses derived from its name, its own DHCP leases
and its name as hostname, so cloud-init makes new SSH host keys and a
new machine-id at its first boot. -n COUNT makes NAME-1 .. NAME-COUNT,
in parallel; either all are made (and with --start, all run) or none:
a failure removes those made. Clones are ordinary VMs (ls, stop, rm,
snapshot); rm removes only the clone's overlays.

The clones of a warm template (template create --memory) are warm: the
first start of each restores the template's memory snapshot instead of
booting, every clone sharing the template's memory file; their NICs
get MAC addresses and leases of their own, which a guest takes when it
re-probes its NICs on the VM generation change (docs/cli.md). A warm template saved on another
kind of CPU is refused before any clone is made.

--host HOST makes the clones libvirt VMs on that libvirt host (a name
from paddock host ls, or auto: the one with the most free memory, for
all the clones): the template's kernel, initrd and base disks go into
the host's storage pool once, and each clone's disk is an overlay there
on its base (docs/libvirt.md). A warm template is refused: libvirt
cannot restore its memory snapshot.

The clones belong to the tenant of the template's spec (the VM's it was
made from), or to --tenant's; they must fit in its limits all together
(paddock tenant ls), or none is made.

Exit status: 0 made, 1 error, 2 usage, 3 no such template or tenant, 4
a VM of that name exists or the tenant's limits would be exceeded.`,
		Example: `  paddock clone web-tpl web-a
  paddock clone web-tpl worker -n 20 --start
  paddock clone web-tpl web-b --host lab1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("clone needs a template and a name (usage: paddock %s)", cmd.Use)
			}
			return nil
		},
		ValidArgsFunction: completeTemplates,
		RunE: func(cmd *cobra.Command, args []string) error {
			host := hostFacts(cmd)
			o := guest.CloneOptions{Numbered: cmd.Flags().Changed("count"), Count: count, Start: start, Host: host, LibvirtHost: libvirtHost, Tenant: tenantName}
			o.CheckStart = func(vm *configs.VM) error {
				return checkBootable(cmd, vm, host, allowEmulated(allow))
			}
			if o.Numbered && (count < 1 || count > guest.MaxClones) {
				return usageError("-n %d: the number of clones must be 1 to %d", count, guest.MaxClones)
			}
			m, err := openManager()
			if err != nil {
				return err
			}
			names, err := m.Clone(cmd.Context(), args[0], args[1], o)
			if err != nil {
				return templateError(err)
			}
			what := "created"
			if start {
				what = "running"
			}
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", n, what)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 0, "make COUNT clones, NAME-1 .. NAME-COUNT")
	cmd.Flags().BoolVar(&start, "start", false, "start the clones once all are made")
	cmd.Flags().StringVar(&libvirtHost, "host", "", "make the clones libvirt VMs on this libvirt host (a name from paddock host ls, or auto: the most free memory)")
	cmd.Flags().StringVar(&tenantName, "tenant", "", "put the clones in this tenant, not the template's spec's")
	allowEmulatedFlag(cmd, &allow)
	return cmd
}
