//go:build race

package qcow2

// raceEnabled: the race detector slows I/O-heavy tests down about tenfold,
// so they do less work under it.
const raceEnabled = true
