package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
)

func newUpCommand() *cobra.Command {
	var file, name, host string
	var allow bool
	cmd := &cobra.Command{
		Use:   "up -f FILE [--name NAME] [--host HOST]",
		Short: "Create a VM from a YAML file if needed, and start it",
		Long: `paddock create, then paddock start, in one step. If the VM exists already
with the same resolved spec it is only started (and left alone if it
runs); if its spec differs, nothing is done: remove it first, or pick
another --name. On a host whose KVM has no hardware virtualization a
Linux kernel cannot boot, and is refused before anything is created
unless --allow-emulated (paddock doctor tells). --host puts a libvirt VM
on a libvirt host (a name, or auto), as with paddock create.

Exit status: 0 the VM runs, 1 invalid file or the VM could not start, 2
usage, 4 a VM of that name exists with another spec, 5 another command is
changing the VM.`,
		Example: `  paddock up -f web.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return upAction(cmd, file, name, host, allow)
		},
	}
	specFlags(cmd, &file, &name)
	hostFlag(cmd, &host)
	allowEmulatedFlag(cmd, &allow)
	return managed(cmd)
}

func upAction(cmd *cobra.Command, file, name, libvirtHost string, allow bool) error {
	host := hostFacts(cmd)
	vm, err := readSpec(cmd, file, name, host)
	if err != nil {
		return err
	}
	if err := applyHost(vm, libvirtHost); err != nil {
		return err
	}
	if err := checkBootable(cmd, vm, host, allowEmulated(allow)); err != nil {
		return err
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	_, err = m.CreateContext(cmd.Context(), vm, file)
	var exists *guest.ExistsError
	switch {
	case errors.As(err, &exists):
		stored, err := m.Spec(vm.Name)
		if err != nil {
			return managedError(err)
		}
		a, err1 := yaml.Marshal(stored)
		b, err2 := yaml.Marshal(vm)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if string(a) != string(b) {
			return &exitError{code: codeWrongState, err: fmt.Errorf("VM '%s' exists with a different spec: remove it first (paddock rm %s) or pick another name (--name)", vm.Name, vm.Name)}
		}
	case err != nil:
		return managedError(err)
	default:
		fmt.Fprintf(out, "%s: created\n", vm.Name)
	}
	info, err := m.Start(cmd.Context(), vm.Name)
	var se *guest.StateError
	if errors.As(err, &se) && se.State.Active() && se.State != store.StateStopping {
		fmt.Fprintf(out, "%s: %s already\n", vm.Name, se.State)
		return nil
	}
	if err != nil {
		return managedError(err)
	}
	fmt.Fprintf(out, "%s: %s\n", vm.Name, started(info))
	return nil
}
