package devices_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// TestLogLimiter checks the pacing: a burst, then one message per
// interval, the first of which counts those held back; a quiet spell
// refills the burst and no more.
func TestLogLimiter(t *testing.T) {
	pace := devices.Pace{Burst: 32, Interval: time.Second}
	var lines []string
	now := time.Unix(1000, 0)
	l := devices.NewLogLimiter(func(format string, args ...any) {
		lines = append(lines, fmt.Sprintf(format, args...))
	}, pace, func() time.Time { return now })
	for i := 0; i < 100; i++ {
		l.Printf("message %d", i)
	}
	if len(lines) != pace.Burst || l.Suppressed() != uint64(100-pace.Burst) {
		t.Fatalf("%d lines written, %d suppressed; want %d and %d", len(lines), l.Suppressed(), pace.Burst, 100-pace.Burst)
	}
	// Five intervals later, five more get through; the first says how
	// many were held back.
	now = now.Add(5*pace.Interval + pace.Interval/2)
	for i := 100; i < 110; i++ {
		l.Printf("message %d", i)
	}
	if got := len(lines) - pace.Burst; got != 5 {
		t.Fatalf("%d lines after 5 intervals, want 5", got)
	}
	want := fmt.Sprintf("message 100 (%d earlier messages suppressed: at most 32 in a row, then one per 1s)", 100-pace.Burst)
	if lines[pace.Burst] != want {
		t.Fatalf("line %q, want %q", lines[pace.Burst], want)
	}
	if !strings.HasSuffix(lines[pace.Burst+1], "message 101") {
		t.Fatalf("line %q repeats the count", lines[pace.Burst+1])
	}
	// A long quiet spell refills the burst, no more.
	now = now.Add(time.Hour)
	before := len(lines)
	for i := 0; i < 2*pace.Burst; i++ {
		l.Printf("again")
	}
	if got := len(lines) - before; got != pace.Burst {
		t.Fatalf("%d lines after an hour's quiet, want %d", got, pace.Burst)
	}
	devices.NewLogLimiter(nil, pace, nil).Printf("discarded") // must not panic
}
