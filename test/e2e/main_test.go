package e2e

import (
	"os"
	"testing"

	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
)

// TestMain stops the libvirt daemons the tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	libvirttest.Cleanup()
	os.Exit(code)
}
