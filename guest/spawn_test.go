package guest

import (
	"slices"
	"testing"

	"github.com/paddock-vm/paddock/guest/vmm"
)

// TestVMMEnv checks a VMM's environment: the starting command's, less
// its own descriptor table, with vmmGODEBUG first among GODEBUG's
// settings, so that the command's own settings win.
func TestVMMEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []string
	}{
		{"no GODEBUG", []string{"PATH=/bin", vmm.FDTableEnv + "=x"}, []string{"PATH=/bin", "GODEBUG=" + vmmGODEBUG}},
		{"empty GODEBUG", []string{"GODEBUG=", "HOME=/root"}, []string{"HOME=/root", "GODEBUG=" + vmmGODEBUG}},
		{"GODEBUG of the command", []string{"GODEBUG=gctrace=1,cpu.sse42=on"}, []string{"GODEBUG=" + vmmGODEBUG + ",gctrace=1,cpu.sse42=on"}},
	} {
		if got := vmmEnv(tc.in); !slices.Equal(got, tc.out) {
			t.Errorf("%s: vmmEnv(%q) = %q, want %q", tc.name, tc.in, got, tc.out)
		}
	}
}
