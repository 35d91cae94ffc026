package jail

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// capBnd returns the CapBnd mask of a /proc/.../status text.
func capBnd(t *testing.T, status string) uint64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapBnd in %q", status)
	return 0
}

// TestStartNarrowsBoundingSet: a VMM started by Spec.Start has only the
// capabilities Enter needs in its bounding set, and the starting
// process keeps its own.
func TestStartNarrowsBoundingSet(t *testing.T) {
	testenv.RequireRoot(t, "narrowing a bounding set takes CAP_SETPCAP")
	mine := func() uint64 {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		return capBnd(t, string(b))
	}
	before := mine()
	var want uint64
	for _, c := range enterCaps {
		want |= 1 << c
	}
	// What this process lacks the VMM cannot get (the build hosts'
	// bounding set has no CAP_SYS_RESOURCE).
	want &= before
	if want == 0 {
		t.Fatalf("this process's bounding set %#x has none of the capabilities Enter needs", before)
	}
	for i := 0; i < 3; i++ { // each time from a new thread
		var out bytes.Buffer
		cmd := exec.Command("/bin/sh", "-c", "cat /proc/self/status")
		cmd.Stdout = &out
		if err := (&Spec{}).Start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := capBnd(t, out.String()); got != want {
			t.Errorf("the started process's bounding set is %#x, want %#x", got, want)
		}
	}
	if after := mine(); after != before {
		t.Errorf("this process's bounding set went from %#x to %#x", before, after)
	}
}
