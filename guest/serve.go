package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// VMMConfig is what the hidden `paddock vmm` command passes to ServeVMM.
type VMMConfig struct {
	// Home is the state directory (empty: the default) and Name the VM.
	Home, Name string
	// Ready is the readiness pipe from Start, or nil when run by hand.
	Ready io.WriteCloser
	// Log receives the VMM's messages (its stderr).
	Log io.Writer
	// Restore, if set, names the snapshot to restore instead of booting
	// (paddock snapshot restore).
	Restore string
	// Warm restores the memory snapshot of the VM's warm template
	// instead (a warm clone's first start).
	Warm bool
	// Version is paddock's version, recorded in snapshots.
	Version string
	// FDTable is the table of the handles Start handed over
	// (vmm.FDTableEnv); empty when run by hand: the VMM opens them.
	FDTable string
}

// ServeVMM is the body of a VMM process: it runs the VM until it ends for
// good (see vmm.Serve). SIGTERM and SIGINT shut the VM down through ACPI,
// a second one kills it.
//
// A jailed VMM (guest/jail) starts with the jail's Spec in its
// environment: it finishes the jail first (jail.Enter), then installs its
// seccomp filter and serves the VM. (A paddock built with cgo, a test
// binary, cannot finish the jail on all its threads: jail.Enter executes
// it again in the jail instead, and that second run, told by
// jail.JailedEnv, installs the filter and serves.)
func ServeVMM(ctx context.Context, c VMMConfig) error {
	var pid int
	jailed := false
	if s := os.Getenv(jail.SpecEnv); s != "" {
		spec, err := jail.ParseSpec(s)
		if err == nil {
			// The command may have taken the descriptor table out of
			// the environment; a second stage needs it.
			env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, vmm.FDTableEnv+"=") })
			if c.FDTable != "" {
				env = append(env, vmm.FDTableEnv+"="+c.FDTable)
			}
			pid, err = jail.Enter(spec, env)
		}
		if err != nil {
			vmmFailed(c, err)
			return err
		}
		os.Unsetenv(jail.SpecEnv)
		jailed = true
	} else if pid, jailed = jail.Jailed(); jailed {
		os.Unsetenv(jail.JailedEnv)
	}
	if jailed {
		if err := jail.Seccomp(); err != nil {
			vmmFailed(c, err)
			return err
		}
		jail.ForbiddenSyscall()
	}
	if c.Home == "" {
		h, err := store.DefaultHome()
		if err != nil {
			return err
		}
		c.Home = h
	}
	return vmm.Serve(ctx, vmm.Config{Home: c.Home, Name: c.Name, Ready: c.Ready, Log: c.Log, Signals: true, Restore: c.Restore, Warm: c.Warm, Version: c.Version, FDTable: c.FDTable, PID: pid})
}

// vmmFailed reports a VMM's failure before it could serve the VM: on its
// log and, as the VMM itself would, on the readiness pipe.
func vmmFailed(c VMMConfig, err error) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "vmm: %v\n", err)
	}
	if c.Ready != nil {
		b, _ := json.Marshal(vmm.Ready{Error: err.Error()})
		c.Ready.Write(append(b, '\n'))
		c.Ready.Close()
	}
}
