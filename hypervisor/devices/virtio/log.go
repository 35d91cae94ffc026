package virtio

import (
	"sync"
	"time"
)

// A guest decides how often a device has something to report (a
// malformed ring, a refused write, a host I/O error on every request it
// sends): a device's messages go through a LogLimiter, so that a guest
// cannot fill the host's log.
const (
	// LogBurst is how many messages a device writes in a row.
	LogBurst = 32
	// LogInterval is how often a device may write one more message once
	// its burst is spent.
	LogInterval = time.Second
)

// LogLimiter passes messages to a logger at most LogBurst in a row and
// one per LogInterval after that (a token bucket), and counts the ones it
// holds back; the next message it writes says how many. It is safe for
// concurrent use.
type LogLimiter struct {
	logf func(format string, args ...any)
	now  func() time.Time

	mu         sync.Mutex
	tokens     int
	last       time.Time // when tokens was last refilled
	suppressed uint64    // held back since the last message written
	total      uint64    // held back in all
}

// NewLogLimiter returns a limiter writing to logf (nil discards
// everything); now is the clock (nil: time.Now).
func NewLogLimiter(logf func(format string, args ...any), now func() time.Time) *LogLimiter {
	if now == nil {
		now = time.Now
	}
	return &LogLimiter{logf: logf, now: now, tokens: LogBurst, last: now()}
}

// Printf writes the message, or counts it when the device has written
// too many lately.
func (l *LogLimiter) Printf(format string, args ...any) {
	if l.logf == nil {
		return
	}
	l.mu.Lock()
	now := l.now()
	if refill := int(now.Sub(l.last) / LogInterval); refill > 0 {
		l.tokens = min(LogBurst, l.tokens+refill)
		l.last = l.last.Add(time.Duration(refill) * LogInterval)
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
		format += " (%d earlier messages of this device suppressed)"
		args = append(args[:len(args):len(args)], held)
	}
	l.logf(format, args...)
}

// Suppressed returns how many messages the limiter has held back.
func (l *LogLimiter) Suppressed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
