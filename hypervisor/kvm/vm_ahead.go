package kvm

import (
	"errors"
	"sync"
)

// VMAhead is a VM being created on a goroutine of its own
// (System.CreateVMAhead), for a caller that has other work to do before
// it needs the VM.
type VMAhead struct {
	done chan struct{}
	vm   *VM
	err  error

	mu    sync.Mutex
	taken bool // Take or Close was called. Guarded by mu.
}

// CreateVMAhead starts KVM_CREATE_VM (CreateVM) on a goroutine of its own
// and returns at once; Take waits for the VM. Creating a VM is one of
// the slowest steps of a VMM's start, and little of it is the calling
// thread's own work (15-25 ms of wall time, 3-4 ms of CPU, in the
// nested lab: docs/hosts.md, "The nested KVM lab"). A VMM that takes
// its locks and reads a snapshot's state before it builds the machine
// does that meanwhile.
// Close, if the VM is never taken, closes it.
func (s *System) CreateVMAhead() *VMAhead {
	a := &VMAhead{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.vm, a.err = s.CreateVM()
	}()
	return a
}

// Take waits for the VM and hands it over: the caller closes it. It can
// be taken once; a second Take, or a Take after Close, fails.
func (a *VMAhead) Take() (*VM, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.taken {
		return nil, errors.New("kvm: the VM created ahead was taken already")
	}
	a.taken = true
	<-a.done
	return a.vm, a.err
}

// Close closes the VM if it was not taken, once its creation ended.
func (a *VMAhead) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.taken {
		return nil
	}
	a.taken = true
	<-a.done
	if a.vm == nil {
		return nil
	}
	return a.vm.Close()
}
