package network

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// LogPace paces netd's messages (netd.log): guests decide how often the
// DHCP and DNS servers have something to say, so after a burst of 1000
// netd writes one message per 10 s and counts the rest, as a VMM does.
var LogPace = devices.Pace{Burst: 1000, Interval: 10 * time.Second}

// NetdLogger returns the Logf of a netd that writes to w: a time stamp,
// netd and its pid on each line, paced by LogPace.
func NetdLogger(w io.Writer) func(format string, args ...any) {
	var mu sync.Mutex
	return devices.NewLogLimiter(func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s netd[%d]: %s\n", time.Now().Format(time.RFC3339Nano), os.Getpid(), fmt.Sprintf(format, args...))
	}, LogPace, nil).Printf
}
