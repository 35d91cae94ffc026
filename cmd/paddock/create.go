package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCreateCommand() *cobra.Command {
	var file, name, host string
	cmd := &cobra.Command{
		Use:   "create -f FILE [--name NAME] [--host HOST]",
		Short: "Define a VM from a YAML file, without starting it",
		Long: `Load and validate a VM YAML file (as paddock validate does) and add the VM
to paddock's state directory ($PADDOCK_HOME): its resolved spec (defaults
filled, paths absolute) is stored, so later changes to the file do not
affect it. "-f -" reads standard input. --name overrides the file's name,
to create several VMs from one file. A libvirt VM (backend: libvirt) is
defined on its libvirt host now, with its kernel, initrd and disks put into
the host's storage pool; --host puts it on another host (a name, or auto).

Exit status: 0 created, 1 the file is invalid (every problem is printed),
2 usage, 4 a VM of that name exists already.`,
		Example: `  paddock create -f web.yaml
  paddock create -f web.yaml --name web-2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return createAction(cmd, file, name, host)
		},
	}
	specFlags(cmd, &file, &name)
	hostFlag(cmd, &host)
	return managed(cmd)
}

// specFlags adds the flags that name a VM file: -f FILE (required) and
// --name NAME.
func specFlags(cmd *cobra.Command, file, name *string) {
	cmd.Flags().StringVarP(file, "file", "f", "", "VM description (YAML); - for standard input")
	cmd.Flags().StringVar(name, "name", "", "name of the VM, instead of the file's")
	_ = cmd.MarkFlagRequired("file")
}

func createAction(cmd *cobra.Command, file, name, libvirtHost string) error {
	host := hostFacts(cmd)
	host.CheckPorts = true // ports: forwards' host ports free
	vm, err := readSpec(cmd, file, name, host)
	if err != nil {
		return err
	}
	if err := applyHost(vm, libvirtHost); err != nil {
		return err
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	if _, err := m.CreateContext(cmd.Context(), vm, file); err != nil {
		return managedError(err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: created\n", vm.Name)
	printWarnings(cmd, bootWarnings(vm, host))
	return nil
}
