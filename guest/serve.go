package guest

import (
	"context"
	"io"

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
func ServeVMM(ctx context.Context, c VMMConfig) error {
	if c.Home == "" {
		h, err := store.DefaultHome()
		if err != nil {
			return err
		}
		c.Home = h
	}
	return vmm.Serve(ctx, vmm.Config{Home: c.Home, Name: c.Name, Ready: c.Ready, Log: c.Log, Signals: true, Restore: c.Restore, Warm: c.Warm, Version: c.Version, FDTable: c.FDTable})
}
