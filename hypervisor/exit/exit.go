// Package exit names how a VM's run ends, with one type for every layer
// that reports it: the machine (hypervisor/machine) ends with the guest's
// own PowerOff, Reboot or Crash, or with Stop when its host stopped it;
// the VMM (guest/vmm) tells a Stop from a Kill and records the end in
// state.json (guest/store); the manager (guest) records VMMDied for a
// VMM that died without recording one; `paddock run` turns it into its
// exit status. The package is a leaf, so the machine and the store share
// the type without depending on each other.
package exit

// Reason says how a run ended. Its values are what state.json stores and
// what commands print: they never change.
type Reason string

// Reasons.
const (
	// PowerOff: the guest powered itself off (ACPI S5).
	PowerOff Reason = "poweroff"
	// Reboot: the guest asked for a reset (ACPI reset register, i8042,
	// triple fault). A managed VM ends with it when its spec says
	// on_reboot: exit.
	Reboot Reason = "reboot"
	// Crash: the guest or KVM failed in a way the VM cannot survive (or
	// a restart failed).
	Crash Reason = "crash"
	// Stop: the host stopped the VM: the machine's context was
	// cancelled, or paddock stop ended it (how: acpi or forced).
	Stop Reason = "stop"
	// Kill: paddock kill ended it.
	Kill Reason = "kill"
	// VMMDied: the VMM died without recording an end; the next command
	// found its lock free and recorded this.
	VMMDied Reason = "vmm-died"
)

// Failed reports whether the reason leaves the VM crashed.
func (r Reason) Failed() bool { return r == Crash || r == VMMDied }
