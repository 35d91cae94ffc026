package virtio

import (
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// DevicePace is how often a virtio device may log: a guest decides how
// often a device has something to report, so the transport and each
// device write through a devices.LogLimiter at this pace.
var DevicePace = devices.Pace{Burst: LogBurst, Interval: LogInterval}

// The parts of DevicePace.
const (
	// LogBurst is how many messages a device writes in a row.
	LogBurst = 32
	// LogInterval is how often a device may write one more message once
	// its burst is spent.
	LogInterval = time.Second
)

// NewLogLimiter returns a limiter writing to logf (nil discards
// everything) at DevicePace; now is the clock (nil: time.Now).
func NewLogLimiter(logf func(format string, args ...any), now func() time.Time) *devices.LogLimiter {
	return devices.NewLogLimiter(logf, DevicePace, now)
}
