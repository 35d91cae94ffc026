package e2e

import (
	"os"
	"testing"

	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
)

// TestMain stops the libvirt daemons the tests started. With envProbe
// set, the test binary is a probe instead (TestJailTenants).
func TestMain(m *testing.M) {
	if os.Getenv(envProbe) == "1" {
		probe(os.Args[1:])
		os.Exit(0)
	}
	code := m.Run()
	libvirttest.Cleanup()
	os.Exit(code)
}
