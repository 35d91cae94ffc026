package store

// State is a VM's state as commands report it, derived from facts by
// Derive.
type State string

// States. Created, running, paused, stopped and crashed are where a VM
// rests; starting, stopping and restarting are passing.
const (
	StateCreated    State = "created"
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateStopping   State = "stopping"
	StateRestarting State = "restarting"
	StateStopped    State = "stopped"
	StateCrashed    State = "crashed"
	// StateUnknown: the VM's state cannot be learnt now (its libvirt
	// host cannot be reached); Info.Problem says why. Derive never
	// returns it.
	StateUnknown State = "unknown"
)

// Active reports whether a VMM runs the VM in this state.
func (s State) Active() bool {
	switch s {
	case StateStarting, StateRunning, StatePaused, StateStopping, StateRestarting:
		return true
	}
	return false
}

// Derive computes a VM's state from its record and its run lock. The
// record is trusted only while its writer is alive: a record of a live
// phase whose VMM no longer holds the lock is a VMM that died (crashed,
// and Stale reports it so the caller can clean up).
func Derive(r Record, h Holder) State {
	if h.Alive {
		if h.RunID == "" || r.RunID != h.RunID {
			return StateStarting // the VMM has not written its record yet
		}
		switch r.Phase {
		case PhaseRunning:
			return StateRunning
		case PhasePaused:
			return StatePaused
		case PhaseStopping, PhaseExited:
			return StateStopping
		case PhaseRestarting:
			return StateRestarting
		}
		return StateStarting
	}
	switch r.Phase {
	case PhaseCreated:
		return StateCreated
	case PhaseExited:
		switch {
		case r.Exit == nil:
			return StateCreated // only failed starts so far
		case r.Exit.Reason.Failed():
			return StateCrashed
		}
		return StateStopped
	}
	return StateCrashed // a live phase without a live VMM
}

// Stale reports whether the record describes a VMM that died without
// recording its end: the VM needs the cleanup that records exit.VMMDied.
func Stale(r Record, h Holder) bool {
	if h.Alive {
		return false
	}
	return r.Phase != PhaseCreated && r.Phase != PhaseExited
}
