package machine

import (
	"sync"
)

// sharedLine is a level-triggered GSI that several functions drive: it is
// high while any of them holds it high (KVM_IRQ_LINE from user space has
// a single source, so the sharing is resolved here).
type sharedLine struct {
	line *gsiLine

	mu   sync.Mutex
	high map[int]bool
}

// lineSource is one function's view of a shared line.
type lineSource struct {
	l  *sharedLine
	id int
}

// SetLevel implements devices.InterruptLine.
func (s *lineSource) SetLevel(high bool) error {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if high {
		l.high[s.id] = true
	} else {
		delete(l.high, s.id)
	}
	return l.line.SetLevel(len(l.high) > 0)
}

// Pulse implements devices.InterruptLine: an edge, unless another
// function holds the line high.
func (s *lineSource) Pulse() error {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.high) > 0 {
		return nil
	}
	return l.line.Pulse()
}
