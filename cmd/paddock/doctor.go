package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// Exit statuses of `paddock doctor`.
const (
	doctorReady    = 0 // KVM usable with hardware virtualization
	doctorUnusable = 1 // no usable KVM
	doctorEmulated = 3 // KVM usable but emulation-only: no stock kernels
)

func newDoctorCommand() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether this host can run paddock VMs, and how",
		Long: `Check /dev/kvm access, the KVM API version and the capabilities paddock
needs, and whether the CPU offers hardware virtualization or KVM only
emulates guest kernel code (as in some cloud VMs), which cannot boot a
stock Linux kernel.

Exit status: 0 ready (hardware virtualization), 1 KVM unusable,
3 KVM usable but emulation-only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return doctorAction(cmd, quiet)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing; only set the exit status")
	return cmd
}

func doctorAction(cmd *cobra.Command, quiet bool) error {
	r := guest.HostReport()
	out := cmd.OutOrStdout()
	if !quiet {
		for _, c := range r.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(out, "%s  %-14s %s\n", mark, c.Name, c.Detail)
		}
	}
	switch {
	case !r.Usable:
		if !quiet {
			fmt.Fprintln(out, "\npaddock cannot run VMs on this host: fix the failures above.")
		}
		return &exitError{code: doctorUnusable}
	case r.Acceleration != machine.AccelHardware:
		if !quiet {
			fmt.Fprintln(out, "\nThis host's KVM works but cannot boot a stock Linux kernel: it has no")
			fmt.Fprintln(out, "hardware virtualization and emulates guest kernel code. Tiny guest programs")
			fmt.Fprintln(out, "run; full guests need a host with VT-x/AMD-V (or nested virtualization).")
			fmt.Fprintln(out, "`make demo` runs the demo inside paddock's nested KVM lab instead.")
		}
		return &exitError{code: doctorEmulated}
	}
	if !quiet {
		fmt.Fprintln(out, "\nReady: this host can boot stock Linux guests with hardware virtualization.")
	}
	return nil
}
