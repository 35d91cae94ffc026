package main

import (
	"fmt"
	"strings"

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
	var quiet, asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--json | --quiet]",
		Short: "Check whether this host can run paddock VMs, and how",
		Long: `Check /dev/kvm access, the KVM API version and the capabilities paddock
needs, and whether the CPU offers hardware virtualization or KVM only
emulates guest kernel code (as in some cloud VMs), which cannot boot a
stock Linux kernel.

--json prints one object: status (ready, emulated or unusable), usable,
acceleration (hardware, emulated or unknown), max_vcpus, checks (each
with name, ok and detail) and advice.

Exit status: 0 ready (hardware virtualization), 1 KVM unusable,
3 KVM usable but emulation-only.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return doctorAction(cmd, quiet, asJSON)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing; only set the exit status")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	cmd.MarkFlagsMutuallyExclusive("quiet", "json")
	return cmd
}

// doctorReport is what `paddock doctor --json` prints.
type doctorReport struct {
	Status       string        `json:"status"` // ready, emulated or unusable
	Usable       bool          `json:"usable"`
	Acceleration string        `json:"acceleration"` // hardware, emulated or unknown
	MaxVCPUs     int           `json:"max_vcpus"`
	Checks       []doctorCheck `json:"checks"`
	Advice       string        `json:"advice"`
}

// doctorCheck is one line of the report.
type doctorCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Advice for each outcome, printed after the checks.
const (
	adviceUnusable = "paddock cannot run VMs on this host: fix the failures above."
	adviceEmulated = "This host's KVM works but cannot boot a stock Linux kernel: it has no " +
		"hardware virtualization and emulates guest kernel code. Tiny guest programs " +
		"run; full guests need a host with VT-x/AMD-V (or nested virtualization). " +
		"`make demo` runs the demo inside paddock's nested KVM lab instead."
	adviceReady = "Ready: this host can boot stock Linux guests with hardware virtualization."
)

func doctorAction(cmd *cobra.Command, quiet, asJSON bool) error {
	r := guest.HostReport()
	rep := doctorReport{Usable: r.Usable, Acceleration: r.Acceleration.String(), MaxVCPUs: r.MaxVCPUs, Checks: []doctorCheck{}}
	for _, c := range r.Checks {
		rep.Checks = append(rep.Checks, doctorCheck(c))
	}
	code := doctorReady
	switch {
	case !r.Usable:
		rep.Status, rep.Advice, code = "unusable", adviceUnusable, doctorUnusable
	case r.Acceleration != machine.AccelHardware:
		rep.Status, rep.Advice, code = "emulated", adviceEmulated, doctorEmulated
	default:
		rep.Status, rep.Advice = "ready", adviceReady
	}
	out := cmd.OutOrStdout()
	switch {
	case asJSON:
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	case !quiet:
		for _, c := range rep.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(out, "%s  %-14s %s\n", mark, c.Name, c.Detail)
		}
		fmt.Fprintf(out, "\n%s\n", wrap(rep.Advice, 76))
	}
	if code != doctorReady {
		return &exitError{code: code}
	}
	return nil
}

// wrap breaks text into lines of at most width columns, between words.
func wrap(text string, width int) string {
	var b strings.Builder
	col := 0
	for _, w := range strings.Fields(text) {
		switch {
		case col == 0:
		case col+1+len(w) > width:
			b.WriteByte('\n')
			col = 0
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}
