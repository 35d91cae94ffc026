package virtio_test

import (
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

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
