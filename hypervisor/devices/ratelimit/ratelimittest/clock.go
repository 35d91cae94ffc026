// Package ratelimittest is a fake clock for tests of rate-limited
// devices: time moves only when the test advances it, and the test can
// wait until a device sleeps on a timer.
package ratelimittest

import (
	"sync"
	"testing"
	"time"
)

// Timeout is how long ExpectWait waits (real time) for a sleeper.
const Timeout = 20 * time.Second

// Clock is a ratelimit.Clock whose time moves only by Advance.
type Clock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	pending []*timer
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock at an arbitrary fixed time.
func New() *Clock {
	c := &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Now implements ratelimit.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements ratelimit.Clock: the timer fires when Advance
// reaches its time.
func (c *Clock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t.ch, func() {}
	}
	c.pending = append(c.pending, t)
	c.cond.Broadcast()
	return t.ch, func() { c.remove(t) }
}

// remove forgets a timer that has not fired.
func (c *Clock) remove(t *timer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.pending {
		if p == t {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return
		}
	}
}

// Advance moves the time on by d and fires the timers it reaches.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.pending[:0]
	for _, t := range c.pending {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			t.ch <- c.now
		}
	}
	c.pending = kept
}

// WaitTimer blocks until someone waits on a timer that has not fired,
// and returns how long from now that timer fires (the earliest, if
// several). It gives up after timeout (real time) and returns false.
func (c *Clock) WaitTimer(timeout time.Duration) (time.Duration, bool) {
	expired := false
	stop := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		expired = true
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) == 0 && !expired {
		c.cond.Wait()
	}
	if len(c.pending) == 0 {
		return 0, false
	}
	first := c.pending[0].at
	for _, t := range c.pending[1:] {
		if t.at.Before(first) {
			first = t.at
		}
	}
	return first.Sub(c.now), true
}

// Pending returns the number of timers that have not fired.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// ExpectWait waits until someone sleeps on a timer of the clock and
// fails t unless the earliest timer fires want from now (a microsecond
// later is allowed: rounding up). It returns the timer's delay.
func (c *Clock) ExpectWait(t testing.TB, want time.Duration) time.Duration {
	t.Helper()
	d, ok := c.WaitTimer(Timeout)
	switch {
	case !ok:
		t.Fatalf("nothing waited on the limiter's clock within %v, want a wait of %v", Timeout, want)
	case d < want || d > want+time.Microsecond:
		t.Fatalf("waits %v on the limiter's clock, want %v", d, want)
	}
	return d
}
