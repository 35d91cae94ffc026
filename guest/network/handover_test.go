package network

import (
	"net/netip"
	"strings"
	"testing"
)

// TestAttachmentHandover hands a VM's attachment over, as the paddock
// command that starts a VMM does: netd keeps the VM attached (its port
// forward stays taken) after the attaching side closed everything of its
// own, and the adopted attachment's Close detaches it.
func TestAttachmentHandover(t *testing.T) {
	h := newNetdHost(t)
	lo := netip.MustParseAddr("127.0.0.1")
	fwd := Port{Proto: "tcp", HostIP: lo, HostPort: 8090, GuestPort: 80}
	web, err := h.attach("web", 1, DefaultName, fwd)
	if err != nil {
		t.Fatal(err)
	}
	files, err := web.Handover()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("%d files handed over for one network", len(files))
	}
	if err := web.Close(); err != nil { // nothing left to close
		t.Fatal(err)
	}
	adopted, err := Adopt(files)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.attach("other", 3, DefaultName, fwd); err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Fatalf("web's port after the handover: %v, want it still in use", err)
	}
	if err := adopted.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := h.attach("other", 3, DefaultName, fwd)
	if err != nil {
		t.Fatalf("web's port after the adopted attachment closed: %v", err)
	}
	again.Close()

	// A foreground run's attachment stays with its run.
	eph, err := h.attach("other", 3, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	defer eph.Close()
	if _, err := eph.Handover(); err == nil {
		t.Error("an ephemeral attachment was handed over")
	}
}
