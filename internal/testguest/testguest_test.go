package testguest

import (
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/boot"
)

// TestStubs checks that the boot loader takes BzImage for a Linux kernel
// and PVHStub for a non-Linux PVH guest.
func TestStubs(t *testing.T) {
	dir := t.TempDir()
	k, err := boot.Inspect(BzImage(t, dir, "vmlinuz"))
	if err != nil || k != (boot.Kernel{Protocol: boot.ProtocolBzImage64, Version: 0x020f, Linux: true}) {
		t.Errorf("BzImage: Inspect = %+v, %v", k, err)
	}
	k, err = boot.Inspect(PVHStub(t, dir, "stub.elf"))
	if err != nil || k != (boot.Kernel{Protocol: boot.ProtocolPVH}) {
		t.Errorf("PVHStub: Inspect = %+v, %v", k, err)
	}
}
