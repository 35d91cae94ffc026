package kvm

import "testing"

// TestCreateVMAhead: the VM created ahead is a working VM, handed over
// once; one never taken is closed by Close.
func TestCreateVMAhead(t *testing.T) {
	sys := openSystem(t)
	a := sys.CreateVMAhead()
	vm, err := a.Take()
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	defer vm.Close()
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatalf("the VM created ahead cannot make a vCPU: %v", err)
	}
	c.Close()
	if _, err := a.Take(); err == nil {
		t.Error("a second Take succeeded")
	}
	if err := a.Close(); err != nil || vm.Fd() < 0 {
		t.Errorf("Close after Take: %v, VM fd %d; want no error and the taker's VM left open", err, vm.Fd())
	}

	b := sys.CreateVMAhead()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b.vm == nil || b.vm.Fd() >= 0 {
		t.Errorf("Close of a VM never taken left it open (%v)", b.vm)
	}
	if _, err := b.Take(); err == nil {
		t.Error("Take after Close succeeded")
	}
}
