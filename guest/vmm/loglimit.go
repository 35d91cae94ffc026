package vmm

import (
	"fmt"
	"time"
)

// Pacing of the VMM's own messages (vmm.log).
const (
	// LogBurst is how many messages the VMM writes before pacing starts.
	LogBurst = 1000
	// LogInterval is the pace after the burst: one message per interval,
	// the others dropped and counted. Devices report guest mistakes, and
	// a guest may repeat a mistake without end: paced, vmm.log grows by
	// at most a few MiB a day.
	LogInterval = 10 * time.Second
)

// logLimiter paces messages as a token bucket: LogBurst tokens, one more
// per LogInterval. Not safe for concurrent use (the VMM's logf locks).
type logLimiter struct {
	tokens     float64
	last       time.Time
	suppressed int
}

func newLogLimiter(now time.Time) *logLimiter {
	return &logLimiter{tokens: LogBurst, last: now}
}

// allow reports whether a message may be written at now, and if so the
// note to add about the messages dropped before it ("" if none).
func (l *logLimiter) allow(now time.Time) (bool, string) {
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(LogBurst, l.tokens+d.Seconds()/LogInterval.Seconds())
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, ""
	}
	l.tokens--
	note := ""
	if l.suppressed > 0 {
		note = fmt.Sprintf(" (%d messages dropped before this one: more than %d, then one per %s)", l.suppressed, LogBurst, LogInterval)
		l.suppressed = 0
	}
	return true, note
}
