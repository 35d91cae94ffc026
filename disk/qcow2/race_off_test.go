//go:build !race

package qcow2

// raceEnabled: see race_on_test.go.
const raceEnabled = false
