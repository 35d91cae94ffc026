package kvm

import (
	"strings"
	"testing"
)

// TestNames checks that String names every Cap, ExitReason and MPState
// constant after its Go identifier, and falls back to Type(N) otherwise.
func TestNames(t *testing.T) {
	seen := 0
	for _, c := range constChecks() {
		var got string
		switch {
		case strings.HasPrefix(c.name, "Cap"):
			got = Cap(c.value).String()
		case strings.HasPrefix(c.name, "Exit"):
			got = ExitReason(c.value).String()
		case strings.HasPrefix(c.name, "MPState"):
			got = MPState(c.value).String()
		default:
			continue
		}
		seen++
		if got != c.name {
			t.Errorf("String of %s (%d) = %q", c.name, c.value, got)
		}
	}
	if seen < 100 {
		t.Errorf("only %d named constants checked", seen)
	}
	for _, tc := range []struct{ got, want string }{
		{Cap(100000).String(), "Cap(100000)"},
		{ExitReason(99).String(), "ExitReason(99)"},
		{MPState(77).String(), "MPState(77)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
