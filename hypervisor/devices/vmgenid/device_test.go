package vmgenid

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

// memory is guest RAM [base, base+len(b)) for tests.
type memory struct {
	base uint64
	b    []byte
}

func (m *memory) Slice(gpa, n uint64) ([]byte, error) {
	if gpa < m.base || gpa-m.base > uint64(len(m.b)) || n > uint64(len(m.b))-(gpa-m.base) {
		return nil, fmt.Errorf("%#x+%d is not RAM", gpa, n)
	}
	return m.b[gpa-m.base : gpa-m.base+n], nil
}

const testAddr = 0xEF000

func newMemory() *memory { return &memory{base: 0xE0000, b: make([]byte, 0x20000)} }

// at returns the 16 bytes at addr.
func (m *memory) at(addr uint64) ID {
	var id ID
	copy(id[:], m.b[addr-m.base:])
	return id
}

func TestRandomIDs(t *testing.T) {
	seen := map[ID]bool{}
	for range 4 {
		d, err := New(Config{Addr: testAddr, Memory: newMemory()})
		if err != nil {
			t.Fatal(err)
		}
		if d.ID() == (ID{}) || seen[d.ID()] {
			t.Fatalf("New picked %s, after %v", d.ID(), seen)
		}
		seen[d.ID()] = true
	}
}

func TestWrite(t *testing.T) {
	mem := newMemory()
	id := ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	d, err := New(Config{Addr: testAddr, Memory: mem, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if mem.at(testAddr) != (ID{}) {
		t.Fatal("New wrote into guest memory")
	}
	if err := d.Write(); err != nil {
		t.Fatal(err)
	}
	if got := mem.at(testAddr); got != id || d.ID() != id || d.Addr() != testAddr {
		t.Fatalf("memory holds %s, the device says %s at %#x; want %s at %#x", got, d.ID(), d.Addr(), id, testAddr)
	}
	if n := bytes.Count(mem.b, []byte{0}); n != len(mem.b)-Len {
		t.Fatalf("Write changed %d bytes, want %d", len(mem.b)-n, Len)
	}
	if id.String() != "0102030405060708090a0b0c0d0e0f10" {
		t.Errorf("String() = %s", id)
	}
}

func TestBadAddresses(t *testing.T) {
	for _, addr := range []uint64{0, testAddr + 4, ^uint64(7)} {
		if _, err := New(Config{Addr: addr, Memory: newMemory()}); err == nil || !strings.HasPrefix(err.Error(), "vmgenid: ") {
			t.Errorf("New at %#x: %v, want an error", addr, err)
		}
	}
	d, err := New(Config{Addr: 0x1000, Memory: newMemory()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Write(); err == nil || !strings.Contains(err.Error(), "write the ID at 0x1000") {
		t.Errorf("Write outside RAM: %v", err)
	}
}

// TestRestore: a restored device puts its own ID, not the saved one, at
// the saved address, and refuses a saved address that is not aligned
// guest RAM without changing anything.
func TestRestore(t *testing.T) {
	oldID := ID{0xaa}
	d, err := New(Config{Addr: testAddr, Memory: newMemory(), ID: oldID})
	if err != nil {
		t.Fatal(err)
	}
	st := devicestest.Golden(t, "state", d.Save())

	mem := newMemory()
	newID := ID{0xbb, 0xcc}
	q, err := New(Config{Addr: 0xE8000, Memory: mem, ID: newID})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Restore(st); err != nil {
		t.Fatal(err)
	}
	if mem.at(testAddr) != newID || q.Addr() != testAddr || q.ID() != newID {
		t.Fatalf("after Restore memory holds %s at %#x, the device %s at %#x; want %s at %#x",
			mem.at(testAddr), uint64(testAddr), q.ID(), q.Addr(), newID, testAddr)
	}
	if q.Save() != (State{Addr: testAddr, ID: newID}) {
		t.Fatalf("a restored device saves %+v", q.Save())
	}
	for _, bad := range []State{
		{Addr: 0},
		{Addr: testAddr + 1},
		{Addr: 0x1000},                        // not RAM
		{Addr: 0xFFFF8},                       // runs past the end of RAM
		{Addr: ^uint64(7)},                    // wraps around
		{Addr: mem.base + uint64(len(mem.b))}, // just past RAM
	} {
		before := append([]byte(nil), mem.b...)
		if err := q.Restore(bad); err == nil || !strings.HasPrefix(err.Error(), "vmgenid: restore: ") {
			t.Errorf("Restore at %#x: %v, want an error", bad.Addr, err)
		}
		if q.Addr() != testAddr || !bytes.Equal(mem.b, before) {
			t.Fatalf("a refused Restore at %#x changed the device or guest memory", bad.Addr)
		}
	}
}

func TestIDText(t *testing.T) {
	id := ID{0xde, 0xad, 0xbe, 0xef, 15: 0x01}
	b, err := id.MarshalText()
	if err != nil || string(b) != "deadbeef000000000000000000000001" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var back ID
	if err := back.UnmarshalText(b); err != nil || back != id {
		t.Fatalf("UnmarshalText(%q) = %s, %v", b, back, err)
	}
	for _, bad := range []string{"", "dead", "deadbeef0000000000000000000000011", "xxadbeef000000000000000000000001"} {
		v := ID{1}
		if err := v.UnmarshalText([]byte(bad)); err == nil || v != (ID{1}) {
			t.Errorf("UnmarshalText(%q): %v, left %s", bad, err, v)
		}
	}
}

func TestNotify(t *testing.T) {
	calls := 0
	d, err := New(Config{Addr: testAddr, Memory: newMemory(), Notify: func() error { calls++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(); err != nil || calls != 1 {
		t.Fatalf("Notify: %v after %d calls", err, calls)
	}
	boom := errors.New("boom")
	d, _ = New(Config{Addr: testAddr, Memory: newMemory(), Notify: func() error { return boom }})
	if err := d.Notify(); !errors.Is(err, boom) {
		t.Fatalf("Notify: %v, want it to wrap %v", err, boom)
	}
	d, _ = New(Config{Addr: testAddr, Memory: newMemory()})
	if err := d.Notify(); err != nil {
		t.Fatalf("Notify without a callback: %v", err)
	}
}
