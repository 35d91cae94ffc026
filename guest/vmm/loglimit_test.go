package vmm

import (
	"testing"
	"time"
)

// TestLogLimiter checks the pacing of the VMM's messages: a burst, then
// one per interval with a count of those dropped in between.
func TestLogLimiter(t *testing.T) {
	start := time.Unix(1e9, 0)
	l := newLogLimiter(start)
	for i := 0; i < LogBurst; i++ {
		if ok, note := l.allow(start); !ok || note != "" {
			t.Fatalf("message %d of the burst: %v %q", i, ok, note)
		}
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.allow(start.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("message %d past the burst was written", i)
		}
	}
	ok, note := l.allow(start.Add(LogInterval))
	if want := " (5 messages dropped before this one: more than 1000, then one per 10s)"; !ok || note != want {
		t.Errorf("after an interval: %v %q, want %q", ok, note, want)
	}
	if ok, _ := l.allow(start.Add(LogInterval)); ok {
		t.Error("two messages in one interval")
	}
	// A long quiet time refills the burst, no more.
	later := start.Add(1000 * time.Hour)
	n := 0
	for ok, _ := l.allow(later); ok; ok, _ = l.allow(later) {
		n++
	}
	if n != LogBurst {
		t.Errorf("after a quiet time, %d messages before pacing; want %d", n, LogBurst)
	}
}
