package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
)

func newCreateCommand() *cobra.Command {
	var file, name string
	cmd := &cobra.Command{
		Use:   "create -f FILE [--name NAME]",
		Short: "Define a VM from a YAML file, without starting it",
		Long: `Load and validate a VM YAML file (as paddock validate does) and add the VM
to paddock's state directory ($PADDOCK_HOME): its resolved spec (defaults
filled, paths absolute) is stored, so later changes to the file do not
affect it. "-f -" reads standard input. --name overrides the file's name,
to create several VMs from one file.

Exit status: 0 created, 1 the file is invalid (every problem is printed),
2 usage, 4 a VM of that name exists already.`,
		Example: `  paddock create -f web.yaml
  paddock create -f web.yaml --name web-2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return createAction(cmd, file, name)
		},
	}
	specFlags(cmd, &file, &name)
	return managed(cmd)
}

// specFlags adds the flags that name a VM file: -f FILE (required) and
// --name NAME.
func specFlags(cmd *cobra.Command, file, name *string) {
	cmd.Flags().StringVarP(file, "file", "f", "", "VM description (YAML); - for standard input")
	cmd.Flags().StringVar(name, "name", "", "name of the VM, instead of the file's")
	_ = cmd.MarkFlagRequired("file")
}

func createAction(cmd *cobra.Command, file, name string) error {
	vm, err := loadSpec(cmd, file, name)
	if err != nil {
		return err
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	if _, err := m.Create(vm, file); err != nil {
		return managedError(err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: created\n", vm.Name)
	return nil
}

// loadSpec loads, defaults and validates the VM file (- for standard
// input), with its name replaced by name if set.
func loadSpec(cmd *cobra.Command, file, name string) (*configs.VM, error) {
	if file == "" {
		return nil, usageError("-f needs a file name (or - for standard input)")
	}
	if name != "" && !store.ValidName(name) {
		return nil, usageError("--name %q: a VM name is a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')", name)
	}
	var vm *configs.VM
	var err error
	if file == "-" {
		vm, err = configs.Read(cmd.InOrStdin(), "<stdin>")
	} else {
		vm, err = configs.Load(file)
	}
	if err != nil {
		return nil, err
	}
	if name != "" {
		vm.Name = name
	}
	vm.FillDefaults()
	host, err := configs.HostFacts()
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "paddock: warning: %v; host memory not checked\n", err)
	}
	host.MaxVCPUs = guest.MaxVCPUs()
	if err := vm.Validate(host); err != nil {
		return nil, err
	}
	return vm, nil
}
