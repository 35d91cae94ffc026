package main

import (
	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/access"
	"github.com/paddock-vm/paddock/guest/store"
)

func newCpCommand() *cobra.Command {
	var f sshFlags
	var recursive bool
	cmd := &cobra.Command{
		Use:   "cp [-r] SRC DST",
		Short: "Copy files between the host and a VM's guest, over SSH",
		Long: `Copy SRC to DST with the system's scp, one of them in a running VM with
cloud_init written NAME:PATH (a relative PATH is relative to the guest
user's home; write ./a:b for a host file whose name has a colon). paddock
reaches the guest as paddock ssh does: as its user, with paddock's key,
after waiting for its SSH server (--wait), with the host keys of the VM's
known_hosts. -r copies directories.

Exit status: scp's (1 when a copy failed); before scp runs, 1 error,
2 usage, 3 no such VM, 4 the VM is not running.`,
		Example: `  paddock cp ./site.tar.gz web:/tmp/
  paddock cp web:/var/log/nginx/access.log .
  paddock cp -r ./conf web:conf`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("cp needs a source and a destination, got %d arguments (usage: paddock %s)", len(args), cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cpAction(cmd, args[0], args[1], recursive, f)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy directories and what they hold")
	f.add(cmd)
	return managed(cmd, store.StateRunning)
}

func cpAction(cmd *cobra.Command, srcArg, dstArg string, recursive bool, f sshFlags) error {
	src, err := access.ParsePath(srcArg, store.ValidName)
	if err != nil {
		return usageError("%v", err)
	}
	dst, err := access.ParsePath(dstArg, store.ValidName)
	if err != nil {
		return usageError("%v", err)
	}
	var name string
	switch {
	case src.Remote && dst.Remote:
		return usageError("cp copies between the host and one VM: %s and %s are both in VMs; copy through the host", srcArg, dstArg)
	case src.Remote:
		name = src.VM
	case dst.Remote:
		name = dst.VM
	default:
		return usageError("cp copies between the host and a VM: neither %s nor %s is NAME:PATH", srcArg, dstArg)
	}
	t, err := f.target(cmd, name)
	if err != nil {
		return err
	}
	args, err := t.SCPArgs(recursive, src, dst)
	if err != nil {
		return err
	}
	return runSystem(cmd, "scp", args)
}
