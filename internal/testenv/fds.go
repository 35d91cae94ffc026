package testenv

import (
	"os"
	"testing"
)

// OpenFDs counts the calling process's open file descriptors, for tests
// that check that a failure, or a Close, leaves none behind.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
