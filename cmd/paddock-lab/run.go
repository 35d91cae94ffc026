package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/paddock-vm/paddock/test/lab"
	"github.com/spf13/cobra"
)

func newRunCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run SCRIPT.sh",
		Short: "Boot the lab's L1 VM, run a shell script in it and stream its console",
		Long: `Boots the nested KVM lab's L1 VM (QEMU TCG with emulated AMD-V; kvm-amd loaded)
and runs SCRIPT.sh there as root, printing L1's serial console with host
timestamps. The stock Debian kernel and the hello initrd are in L1 as
/guest/vmlinuz and /guest/initrd.img; --qemu adds qemu-system-x86_64,
--paddock a static paddock built from this checkout, --vmlinux /guest/vmlinux.

Exit status: the script's, or 1 if L1 failed or timed out.`,
		Args: cobra.ExactArgs(1),
		RunE: runAction,
	}
	addMachineFlags(cmd)
	cmd.Flags().Bool("qemu", false, "add QEMU to L1 (the peer VMM)")
	cmd.Flags().Bool("paddock", false, "add a static paddock built from this checkout to L1")
	cmd.Flags().Bool("vmlinux", false, "add the guest's ELF vmlinux (/guest/vmlinux, PVH boot)")
	cmd.Flags().Duration("timeout", 10*time.Minute, "timeout of the script")
	cmd.Flags().StringArray("file", nil, "HOST:L1PATH: copy a host file into L1 (repeatable)")
	return cmd
}

func runAction(cmd *cobra.Command, args []string) error {
	script, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	opts, err := labOptions(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	opts.Echo = func(l lab.Line) { fmt.Fprintln(out, l.String()) }
	l := lab.NewLab(opts)
	defer l.Close()

	timeout, _ := cmd.Flags().GetDuration("timeout")
	sc := lab.Scenario{Steps: []lab.Step{{Name: "script", Script: string(script), Timeout: timeout}}}
	sc.WithQEMU, _ = cmd.Flags().GetBool("qemu")
	sc.WithPaddock, _ = cmd.Flags().GetBool("paddock")
	sc.WithVmlinux, _ = cmd.Flags().GetBool("vmlinux")
	files, _ := cmd.Flags().GetStringArray("file")
	if sc.Files, err = parseFileFlags(files); err != nil {
		return err
	}
	if logf := progress(cmd); logf != nil {
		logf("building the L1 image")
		if _, err := l.Image(cmd.Context()); err != nil {
			return err
		}
		logf("booting L1")
	}
	res, err := l.Run(cmd.Context(), sc)
	var re *lab.RunError
	if errors.As(err, &re) {
		return re.Err // the transcript is already on stdout
	}
	if err != nil {
		return err
	}
	st, _ := res.Step("script")
	if st.RC != 0 {
		return &exitError{code: st.RC}
	}
	return nil
}
