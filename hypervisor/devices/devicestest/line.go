// Package devicestest holds what the device tests share: a fake
// interrupt line that records what a device does to it.
package devicestest

import (
	"errors"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// ErrPulsed is what Line.Pulse returns: the devices tested with a Line
// (UART, i8042, RTC, ACPI PM, virtio-pci INTx) drive their lines
// level-style, so a pulse is a mistake of the device.
var ErrPulsed = errors.New("devicestest: line pulsed; the device drives it level-style")

// Line is a level-triggered devices.InterruptLine for tests: it records
// its level and its low-to-high edges, and lets a test wait for a level
// or an edge. Safe for concurrent use; create it with NewLine.
type Line struct {
	mu    sync.Mutex
	cond  *sync.Cond
	high  bool
	edges int
	raise chan struct{}
}

var _ devices.InterruptLine = (*Line)(nil)

// NewLine returns a low line.
func NewLine() *Line {
	l := &Line{raise: make(chan struct{}, 1)}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// SetLevel implements devices.InterruptLine.
func (l *Line) SetLevel(high bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if high && !l.high {
		l.edges++
		select {
		case l.raise <- struct{}{}:
		default:
		}
	}
	l.high = high
	l.cond.Broadcast()
	return nil
}

// Pulse implements devices.InterruptLine: it changes nothing and returns
// ErrPulsed.
func (l *Line) Pulse() error { return ErrPulsed }

// High reports the line's level.
func (l *Line) High() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.high
}

// Edges counts the line's low-to-high transitions.
func (l *Line) Edges() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.edges
}

// Wait blocks until the line is at level.
func (l *Line) Wait(level bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.high != level {
		l.cond.Wait()
	}
}

// C receives once for one or more low-to-high transitions since it was
// last read.
func (l *Line) C() <-chan struct{} { return l.raise }
