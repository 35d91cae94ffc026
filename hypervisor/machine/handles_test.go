package machine

import (
	"os"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/boot"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// testKVM opens the KVM device for one test; it is closed when the test
// ends, after the test's machines (cleanups run last-in first-out).
func testKVM(t testing.TB) *kvm.System {
	t.Helper()
	requireKVM(t)
	sys, err := kvm.Open(kvm.DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	return sys
}

// openKernel opens the kernel file at path for BootConfig, for the
// length of the test.
func openKernel(t fataler, path string) *os.File {
	t.Helper()
	f, err := boot.OpenKernel(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// guestKernel builds the tiny guest called name (buildGuest) and opens it.
func guestKernel(t testing.TB, name string, defs map[string]int) *os.File {
	t.Helper()
	return openKernel(t, buildGuest(t, name, defs))
}

// openDisk opens the image at path as a machine's disk, with o, for the
// length of the test. A raw disk whose format o leaves out is detected,
// and guarded as the VMM guards it.
func openDisk(t testing.TB, path string, o disk.Options) Disk {
	t.Helper()
	img, err := disk.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	guard := o.Format == "" && img.Capabilities().Format == disk.FormatRaw
	return Disk{Image: img, Name: path, ReadOnly: o.ReadOnly, GuardFormat: guard}
}
