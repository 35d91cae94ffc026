package machine

import "errors"

// Hold pauses the machine whether or not Run has started it: after Run
// started it is Pause; before, it marks the machine paused, so the vCPUs
// Run starts park before their first guest instruction. Either way, once
// Hold returns no vCPU executes guest code until Resume. It lets a manager
// that calls Run on one goroutine accept a pause from another at any
// time, without racing Run's start. It fails once the machine has
// stopped.
func (m *Machine) Hold() error {
	m.ctl.Lock()
	if m.started.Load() {
		m.ctl.Unlock()
		return m.Pause()
	}
	defer m.ctl.Unlock()
	// Run takes ctl before it starts any vCPU, so none runs yet, and
	// none can start before the state below is visible.
	if runState(m.state.Load()) == stateStopped {
		return errors.New("machine: stopped")
	}
	m.state.Store(int32(statePaused))
	m.cond.Broadcast()
	return nil
}
