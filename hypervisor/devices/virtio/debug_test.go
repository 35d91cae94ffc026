package virtio_test

import (
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

// TestWriteDebug checks the state dump names the ring positions after
// three requests, and the MSI-X setup.
func TestWriteDebug(t *testing.T) {
	r := newRig(t)
	var before strings.Builder
	r.pci.WriteDebug(&before)
	if !strings.Contains(before.String(), "queue 0: inactive") {
		t.Errorf("before the driver: %s", before.String())
	}
	r.init(t, virtiotest.Options{MSIX: true})
	q := r.drv.Queues[0]
	for i := 0; i < 3; i++ {
		out := r.mem.Alloc(16, 1)
		if _, err := q.Add([]virtiotest.Buf{{Addr: r.mem.Put([]byte("ping")), Len: 4}, {Addr: out, Len: 16, Write: true}}); err != nil {
			t.Fatal(err)
		}
		r.drv.Kick(0)
		if _, err := q.WaitUsed(); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	r.pci.WriteDebug(&b)
	dump := b.String()
	for _, want := range []string{"active true", "MSI-X enabled true", "device took 3 and returned 3", "driver made 3 available", "3 interrupts since creation"} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump)
		}
	}
}
