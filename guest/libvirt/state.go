package libvirt

import (
	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// ActiveState maps the state of a domain QEMU runs to a VM's state; ok
// is false for a shut-off domain, whose VM state depends on what paddock
// recorded (created, stopped or crashed).
func ActiveState(s State) (store.State, bool) {
	switch s.State {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return store.StateRunning, true
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return store.StatePaused, true
	case golibvirt.DomainShutdown:
		return store.StateStopping, true
	case golibvirt.DomainCrashed:
		return store.StateCrashed, true
	case golibvirt.DomainNostate:
		return store.StateStarting, true
	}
	return "", false
}

// CanPause reports whether a domain in state s can be paused: it runs.
func CanPause(s State) bool {
	st, _ := ActiveState(s)
	return st == store.StateRunning
}

// CanResume reports whether a domain in state s can be resumed: it is
// paused.
func CanResume(s State) bool {
	st, _ := ActiveState(s)
	return st == store.StatePaused
}

// EndReason says how the run of a domain that shut off (s) ended, when
// paddock did not end it: the guest powered off, it crashed, or it was
// destroyed outside paddock.
func EndReason(s State) exit.Reason {
	switch golibvirt.DomainShutoffReason(s.Reason) {
	case golibvirt.DomainShutoffShutdown:
		return exit.PowerOff
	case golibvirt.DomainShutoffCrashed, golibvirt.DomainShutoffFailed:
		return exit.Crash
	case golibvirt.DomainShutoffDestroyed:
		return exit.Kill
	}
	return exit.Stop
}

// EndDetail explains EndReason's answer, for the record.
func EndDetail(s State) string {
	switch golibvirt.DomainShutoffReason(s.Reason) {
	case golibvirt.DomainShutoffCrashed:
		return "libvirt reports the domain crashed"
	case golibvirt.DomainShutoffFailed:
		return "libvirt reports the domain failed to run (its QEMU died)"
	case golibvirt.DomainShutoffDestroyed:
		return "the domain was destroyed outside paddock"
	case golibvirt.DomainShutoffShutdown:
		return ""
	}
	return "the domain stopped outside paddock"
}

// DomainInfo is what libvirt says about a domain's size.
type DomainInfo struct {
	CPUs   int
	Memory uint64 // bytes
}

// Info asks libvirt for the domain's vCPUs and memory.
func (d *Dom) Info() (DomainInfo, error) {
	_, maxMem, _, cpus, _, err := d.c.l.DomainGetInfo(d.d)
	if err != nil {
		return DomainInfo{}, d.c.fail("get the size of domain "+d.d.Name, err)
	}
	return DomainInfo{CPUs: int(cpus), Memory: maxMem * 1024}, nil
}
