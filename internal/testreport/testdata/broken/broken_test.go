// Package broken does not compile: testreport's tests show that a
// package whose build fails fails the run and its errors are shown.
package broken

import "testing"

func TestBroken(t *testing.T) {
	notDefined()
}
