package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
)

func newTemplateCreateCommand() *cobra.Command {
	var from string
	var memory bool
	cmd := &cobra.Command{
		Use:   "create NAME --from VM [--memory]",
		Short: "Make a template of a VM, to clone it",
		Long: `Make the template NAME of the stopped VM: each of the VM's writable disks
is copied into a read-only, checksummed base disk of the template (a
disk that is an overlay on another template is flattened), with the
VM's kernel, initrd and command line, and its spec without its identity
(no name, UUID, MAC addresses, port forwards or console log path). The
VM is left as it was: it keeps running on its own disks. paddock clone
makes new VMs of the template; a YAML file can say from: NAME too.

A running VM is refused unless --memory: then the VM must run (or be
paused), and the template is warm: a snapshot of the VM is taken, each
disk is copied as it was at the snapshot's instant, the snapshot's
machine state and memory file become the template's, and the snapshot
is removed from the VM, which runs on. Clones of a warm template restore
that memory at their first start instead of booting (paddock clone).

Exit status: 0 made, 1 error, 2 usage, 3 no such VM, 4 a template of
that name exists or the VM runs, 5 another command is changing the VM.`,
		Example: `  paddock template create web-tpl --from web
  paddock template create web-warm --from web --memory`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("template create needs one template name (usage: paddock template %s)", cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			t, err := m.CreateTemplateFromVM(cmd.Context(), args[0], from, guest.TemplateFromVMOptions{Memory: memory})
			if err != nil {
				return templateError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: made from VM %s (%s in %.1fs)\n", t.Name, from, humanSize(t.Meta.Size()), t.Meta.Origin.Seconds)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the VM to make the template of")
	cmd.Flags().BoolVar(&memory, "memory", false, "also save the running VM's memory (a warm template)")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.RegisterFlagCompletionFunc("from", completeVMs())
	return cmd
}
