//go:build sample_exit

package sample

import (
	"os"
	"testing"
)

// TestExit ends the test binary in the middle of a test, as a crash or
// a stray os.Exit would: go test reports no result for the test.
func TestExit(t *testing.T) {
	t.Log("about to exit")
	os.Exit(3)
}
