package guest

import (
	"context"
	"io"
	"net"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
)

// Backend runs managed VMs on one hypervisor: paddock's own VMM
// processes (native) or libvirt domains (libvirt). It follows the driver
// pattern of Lima's pkg/driver: the Manager resolves names, takes the
// VM's mutation lock where a method says so, keeps the state directory,
// and leaves to the VM's backend what the hypervisor does. Each method
// gets the VM's directory in the store; the backend keeps what it needs
// to remember there.
//
// Errors users act on are the Manager's types: *StateError when the VM's
// state does not allow the operation, *StartError when a start failed.
type Backend interface {
	// Kind is the backend's name, as a spec's backend field gives it.
	Kind() configs.Backend
	// Create sets the VM up on the hypervisor once it is in the store,
	// or fails leaving nothing behind there (the Manager then removes
	// the VM from the store). Precondition: the VM's lock is held and vm
	// is its validated spec.
	Create(ctx context.Context, v *store.VM, vm *configs.VM) error
	// Start boots the VM and returns once the guest runs.
	// Precondition: the VM's lock is held.
	Start(ctx context.Context, v *store.VM) error
	// Stop presses the ACPI power button, waits up to timeout for the
	// guest to power off, forces it off after that, and returns once the
	// VM is stopped. Precondition: the VM's lock is held.
	Stop(ctx context.Context, v *store.VM, timeout time.Duration) (api.StopResult, error)
	// Kill stops the VM at once and returns once it is stopped.
	Kill(ctx context.Context, v *store.VM) (api.StopResult, error)
	// Pause freezes the guest's vCPUs; Resume lets them run again.
	Pause(ctx context.Context, v *store.VM) (api.Status, error)
	Resume(ctx context.Context, v *store.VM) (api.Status, error)
	// Status is the live status of a VM that runs.
	Status(ctx context.Context, v *store.VM) (api.Status, error)
	// State fills in the VM's state, derived from the backend's facts,
	// and what it knows of the VM's runs: in.State and the runtime
	// fields of Info. An error means the VM's facts cannot be read: Info
	// then shows in.State (set) and the error, and nothing else.
	State(v *store.VM, in *Info) error
	// Attach connects to the console of a VM that runs (see
	// Manager.Attach).
	Attach(ctx context.Context, v *store.VM, tail int) (net.Conn, error)
	// Logs returns the VM's console output (see Manager.Logs).
	Logs(ctx context.Context, v *store.VM, o LogOptions) (io.ReadCloser, error)
	// CreateSnapshot takes the snapshot snap of a running or paused VM
	// (see Manager.CreateSnapshot). Precondition: the VM's lock is held
	// and snap is a valid name.
	CreateSnapshot(ctx context.Context, v *store.VM, snap string, stop bool) (*SnapshotInfo, error)
	// Snapshots lists the VM's snapshots, oldest first.
	Snapshots(v *store.VM) ([]*SnapshotInfo, error)
	// RestoreSnapshot puts the VM back to its snapshot snap, running as
	// it was then; a VM that runs is a *StateError unless force.
	// Precondition: the VM's lock is held.
	RestoreSnapshot(ctx context.Context, v *store.VM, snap string, force bool) error
	// RemoveSnapshot deletes the VM's snapshot snap. Precondition: the
	// VM's lock is held.
	RemoveSnapshot(ctx context.Context, v *store.VM, snap string) error
	// Remove deletes everything the VM has on the hypervisor; a VM that
	// runs is a *StateError unless force, which kills it first. The
	// Manager then removes the VM from the store. Precondition: the VM's
	// lock is held.
	Remove(ctx context.Context, v *store.VM, force bool) error
}
