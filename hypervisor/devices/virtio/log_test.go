package virtio_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

func TestLogLimiter(t *testing.T) {
	var lines []string
	now := time.Unix(1000, 0)
	l := virtio.NewLogLimiter(func(format string, args ...any) {
		lines = append(lines, fmt.Sprintf(format, args...))
	}, func() time.Time { return now })
	for i := 0; i < 100; i++ {
		l.Printf("message %d", i)
	}
	if len(lines) != virtio.LogBurst || l.Suppressed() != 100-virtio.LogBurst {
		t.Fatalf("%d lines written, %d suppressed; want %d and %d", len(lines), l.Suppressed(), virtio.LogBurst, 100-virtio.LogBurst)
	}
	// Five intervals later, five more get through; the first says how
	// many were held back.
	now = now.Add(5*virtio.LogInterval + virtio.LogInterval/2)
	for i := 100; i < 110; i++ {
		l.Printf("message %d", i)
	}
	if got := len(lines) - virtio.LogBurst; got != 5 {
		t.Fatalf("%d lines after 5 intervals, want 5", got)
	}
	want := fmt.Sprintf("message 100 (%d earlier messages of this device suppressed)", 100-virtio.LogBurst)
	if lines[virtio.LogBurst] != want {
		t.Fatalf("line %q, want %q", lines[virtio.LogBurst], want)
	}
	if !strings.HasSuffix(lines[virtio.LogBurst+1], "message 101") {
		t.Fatalf("line %q repeats the count", lines[virtio.LogBurst+1])
	}
	// A long quiet spell refills the burst, no more.
	now = now.Add(time.Hour)
	before := len(lines)
	for i := 0; i < 2*virtio.LogBurst; i++ {
		l.Printf("again")
	}
	if got := len(lines) - before; got != virtio.LogBurst {
		t.Fatalf("%d lines after an hour's quiet, want %d", got, virtio.LogBurst)
	}
	virtio.NewLogLimiter(nil, nil).Printf("discarded") // must not panic
}

// TestGuestCannotFloodTheLog: a driver that writes a status the
// transport complains about, over and over, gets a burst of messages
// into the host's log and no more.
func TestGuestCannotFloodTheLog(t *testing.T) {
	r := newRig(t)
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	for i := 0; i < 10000; i++ {
		r.drv.SetStatus(virtio.StatusAcknowledge) // clears DRIVER without a reset
	}
	if n := r.logs.count(); n > virtio.LogBurst {
		t.Fatalf("%d log lines for 10000 bad status writes, want at most %d", n, virtio.LogBurst)
	}
}
