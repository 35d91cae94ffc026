package main

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
)

func newStopCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME... [--timeout 30s]",
		Short: "Shut VMs down: ACPI power button, then forced off after a timeout",
		Long: `Press each VM's ACPI power button (a paused VM is resumed first, so it
hears it) and wait for the guest to power off; a guest that has not within
--timeout (seconds, or a duration such as 2m) is forced off. A VM waiting
to restart (restart policy) stops at once. Returns when the VMM has
exited. Every name is tried, in order; each failure is printed as it
happens.

Exit status (of the first failure): 0 stopped (cleanly or forced: the message says which), 1
error, 2 usage, 3 no such VM, 4 a VM is not running, 5 another command is
changing a VM.`,
		Example: `  paddock stop web
  paddock stop web --timeout 2m
  paddock stop web db -t 10`,
		Args: someVMs,
		RunE: func(cmd *cobra.Command, names []string) error {
			return stopAction(cmd, names, timeout)
		},
	}
	timeout = api.DefaultShutdownTimeout
	cmd.Flags().VarP((*seconds)(&timeout), "timeout", "t", "how long the guest has to power off before it is forced off: seconds (10) or a duration (90s, 2m)")
	return managed(cmd, store.StateRunning, store.StatePaused, store.StateRestarting)
}

func stopAction(cmd *cobra.Command, names []string, timeout time.Duration) error {
	if timeout < 0 || timeout > api.MaxShutdownTimeout {
		return usageError("--timeout %s: want 0 to %s", timeout, api.MaxShutdownTimeout)
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	return forEachVM(cmd, names, func(name string) error {
		res, err := m.Stop(cmd.Context(), name, timeout)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%.1fs)\n", name, describeStop(res, timeout), res.Elapsed)
		return nil
	})
}

// describeStop says how a stop went.
func describeStop(res api.StopResult, timeout time.Duration) string {
	switch res.How {
	case api.StopACPI:
		return "stopped: the guest shut down after the ACPI power button"
	case api.StopForced:
		return fmt.Sprintf("forced off: the guest did not power off within %s of the ACPI power button", timeout)
	case api.StopCancelled:
		return "stopped while waiting to restart"
	case api.StopKilled:
		return "killed"
	}
	return "stopped"
}

// seconds is a duration flag that also takes plain seconds: "10" and
// "1.5" as well as Go durations ("90s", "2m", "1m30s").
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Type() string { return "duration" }

func (s *seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return fmt.Errorf("%q is not a number of seconds", v)
		}
		*s = seconds(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds (10) or a duration (90s, 2m), got %q", v)
	}
	*s = seconds(d)
	return nil
}
