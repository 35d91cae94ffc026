package ged

import (
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

func newGED(t *testing.T) (*GED, *devicestest.Line) {
	t.Helper()
	l := devicestest.NewLine()
	return New(Config{Port: DefaultPort, Line: l}), l
}

// read is the guest's _EVT: one byte from the register.
func read(g *GED) byte {
	b := []byte{0}
	g.ReadPort(DefaultPort, b)
	return b[0]
}

// TestTriggerAndRead follows one event through: the line rises, the
// guest's read returns the event's bit and lowers the line, a second
// read finds nothing.
func TestTriggerAndRead(t *testing.T) {
	g, l := newGED(t)
	if l.High() || read(g) != 0 {
		t.Fatal("a new GED has an event pending")
	}
	if err := g.Trigger(EventGenerationID); err != nil {
		t.Fatal(err)
	}
	if !l.High() || g.Pending() != 1<<EventGenerationID {
		t.Fatalf("after Trigger: line high %v, pending %#x", l.High(), g.Pending())
	}
	// Triggering a pending event again is the same event.
	if err := g.Trigger(EventGenerationID); err != nil {
		t.Fatal(err)
	}
	if l.Edges() != 1 {
		t.Fatalf("line rose %d times for one pending event", l.Edges())
	}
	if got := read(g); got != 1<<EventGenerationID {
		t.Fatalf("register read %#x, want %#x", got, 1<<EventGenerationID)
	}
	if l.High() {
		t.Fatal("the read did not lower the line")
	}
	if got := read(g); got != 0 {
		t.Fatalf("second read %#x, want 0", got)
	}
	// An event after the read raises the line again.
	if err := g.Trigger(EventGenerationID); err != nil {
		t.Fatal(err)
	}
	if !l.High() || l.Edges() != 2 {
		t.Fatalf("a second event: line high %v after %d edges, want high after 2", l.High(), l.Edges())
	}
	if g.Err() != nil {
		t.Fatal(g.Err())
	}
}

func TestUnknownEvents(t *testing.T) {
	g, l := newGED(t)
	for _, e := range []int{-1, 1, 7, 8, 100} {
		if err := g.Trigger(e); err == nil {
			t.Errorf("Trigger(%d) succeeded", e)
		}
	}
	if l.High() || g.Pending() != 0 {
		t.Fatal("a refused event changed the GED")
	}
}

// TestAccesses: writes change nothing (the register is read-only), a
// wider read returns the register in its first byte and open bus past
// it, and a read that starts elsewhere does not clear the register.
func TestAccesses(t *testing.T) {
	g, l := newGED(t)
	if err := g.Trigger(EventGenerationID); err != nil {
		t.Fatal(err)
	}
	g.WritePort(DefaultPort, []byte{0xff})
	g.WritePort(DefaultPort, []byte{0x00})
	if g.Pending() != 1 || !l.High() {
		t.Fatal("a write changed the register")
	}
	b := make([]byte, 4)
	g.ReadPort(DefaultPort-1, b[:1])
	if b[0] != 0xff || g.Pending() != 1 {
		t.Fatalf("a read of the port below read %#x and left pending %#x", b[0], g.Pending())
	}
	g.ReadPort(DefaultPort, b)
	if b[0] != 1 || b[1] != 0xff || b[2] != 0xff || b[3] != 0xff || l.High() {
		t.Fatalf("a 4-byte read returned % x, line high %v; want 01 ff ff ff and the line low", b, l.High())
	}
}

func TestSaveRestore(t *testing.T) {
	g, _ := newGED(t)
	if err := g.Trigger(EventGenerationID); err != nil {
		t.Fatal(err)
	}
	st := g.Save()
	q, l := newGED(t)
	if err := q.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatal(err)
	}
	if q.Save() != st || !l.High() {
		t.Fatalf("restored %+v with the line high %v, want %+v with it high", q.Save(), l.High(), st)
	}
	if got := read(q); got != 1<<EventGenerationID || l.High() {
		t.Fatalf("the restored event read %#x, line high %v", got, l.High())
	}
	if err := q.Restore(State{Pending: 0x82}); err == nil {
		t.Fatal("Restore accepted bits without an event")
	}
	if q.Save() != (State{}) || l.High() {
		t.Fatal("a refused Restore changed the GED")
	}
	if err := q.Restore(State{}); err != nil || l.High() {
		t.Fatalf("Restore of no events: %v, line high %v", err, l.High())
	}
}

// FuzzPorts mixes triggers, reads and writes of every width around the
// register: the line is high exactly while an event is pending, and a
// read of the register returns what was pending.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 1})
	f.Add([]byte{0, 0, 3, 1, 4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		g, l := newGED(t)
		for _, op := range ops {
			n := 1 << (op >> 6) // 1, 2, 4 or 8 bytes
			port := DefaultPort - 3 + uint16(op>>3&7)
			switch op & 7 {
			case 0:
				if err := g.Trigger(EventGenerationID); err != nil {
					t.Fatal(err)
				}
			case 1, 2:
				before := g.Pending()
				b := make([]byte, n)
				g.ReadPort(port, b)
				if i := int(DefaultPort) - int(port); i >= 0 && i < n && (b[i] != before || g.Pending() != 0) {
					t.Fatalf("read at %#x: register byte %#x (pending %#x before), %#x after", port, b[i], before, g.Pending())
				}
			default:
				g.WritePort(port, make([]byte, n))
			}
			if l.High() != (g.Pending() != 0) {
				t.Fatalf("line high %v with pending %#x", l.High(), g.Pending())
			}
		}
	})
}
