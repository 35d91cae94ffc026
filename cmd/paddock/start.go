package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/store"
)

func newStartCommand() *cobra.Command {
	var allow bool
	cmd := &cobra.Command{
		Use:   "start NAME...",
		Short: "Boot VMs in the background",
		Long: `Boot each VM in its own detached VMM process and return once its guest
runs. The console goes to the VM's console log (paddock logs) and to
attached consoles (paddock console). If the VMM cannot start the guest
(a kernel that went missing, no /dev/kvm, ...), the reason is printed and
the VM keeps its previous state. On a host whose KVM has no hardware
virtualization a Linux kernel cannot boot, and is refused unless
--allow-emulated (paddock doctor tells).

Every name is tried, in order; each failure is printed as it happens.
Exit status (of the first failure): 0 every VM started, 1 a VM could not
start, 2 usage, 3 no such VM, 4 a VM runs already, 5 another command is
changing a VM.`,
		Example: `  paddock start web
  paddock start web db`,
		Args: someVMs,
		RunE: func(cmd *cobra.Command, names []string) error {
			return startAction(cmd, names, allow)
		},
	}
	allowEmulatedFlag(cmd, &allow)
	return managed(cmd, store.StateCreated, store.StateStopped, store.StateCrashed)
}

func startAction(cmd *cobra.Command, names []string, allow bool) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	host := hostFacts(cmd)
	return forEachVM(cmd, names, func(name string) error {
		if host.EmulatedKVM {
			vm, err := m.Spec(name)
			if err != nil {
				return err
			}
			if err := checkBootable(cmd, vm, host, allowEmulated(allow)); err != nil {
				return err
			}
		}
		info, err := m.Start(cmd.Context(), name)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", name, started(info))
		return nil
	})
}
