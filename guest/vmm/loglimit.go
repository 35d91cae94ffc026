package vmm

import (
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// LogPace paces the VMM's own messages (vmm.log): devices report guest
// mistakes, and a guest may repeat a mistake without end, so after a
// burst of 1000 the VMM writes one message per 10 s and counts the rest;
// vmm.log grows by at most a few MiB a day.
var LogPace = devices.Pace{Burst: 1000, Interval: 10 * time.Second}
