package devices

import (
	"sync"
	"time"
)

// A guest decides how often a device has something to report (a
// malformed ring, a refused write, a host I/O error on every request it
// sends), so the messages of devices and of the VMM that collects them go
// through a LogLimiter: a guest cannot fill the host's log.

// Pace is how many messages a LogLimiter passes: Burst in a row, then one
// per Interval, with the ones in between held back and counted.
type Pace struct {
	Burst    int
	Interval time.Duration
}

// LogLimiter passes messages to a logger at its Pace (a token bucket) and
// counts the ones it holds back; the next message it writes says how
// many. It is safe for concurrent use.
type LogLimiter struct {
	logf func(format string, args ...any)
	pace Pace
	now  func() time.Time

	mu         sync.Mutex
	tokens     int
	last       time.Time // when tokens was last refilled
	suppressed uint64    // held back since the last message written
	total      uint64    // held back in all
}

// NewLogLimiter returns a limiter writing to logf (nil discards
// everything) at pace; now is the clock (nil: time.Now).
// Precondition: pace.Burst >= 1 and pace.Interval > 0.
func NewLogLimiter(logf func(format string, args ...any), pace Pace, now func() time.Time) *LogLimiter {
	if now == nil {
		now = time.Now
	}
	return &LogLimiter{logf: logf, pace: pace, now: now, tokens: pace.Burst, last: now()}
}

// Printf writes the message, or counts it when too many were written
// lately.
func (l *LogLimiter) Printf(format string, args ...any) {
	if l.logf == nil {
		return
	}
	l.mu.Lock()
	now := l.now()
	if refill := int(now.Sub(l.last) / l.pace.Interval); refill > 0 {
		l.tokens = min(l.pace.Burst, l.tokens+refill)
		l.last = l.last.Add(time.Duration(refill) * l.pace.Interval)
	}
	if l.tokens == 0 {
		l.suppressed++
		l.total++
		l.mu.Unlock()
		return
	}
	l.tokens--
	held := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if held > 0 {
		format += " (%d earlier messages suppressed: at most %d in a row, then one per %s)"
		args = append(args[:len(args):len(args)], held, l.pace.Burst, l.pace.Interval)
	}
	l.logf(format, args...)
}

// Suppressed returns how many messages the limiter has held back.
func (l *LogLimiter) Suppressed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
