package pci

import (
	"encoding/binary"
	"reflect"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

const ecamBase = 0xe000_0000

// cfgAddr builds a CONFIG_ADDRESS value.
func cfgAddr(bus, dev, fn, reg int) uint32 {
	return addrEnable | uint32(bus)<<16 | uint32(dev)<<11 | uint32(fn)<<8 | uint32(reg)&0xfc
}

// ecamAddr builds an ECAM address.
func ecamAddr(bus, dev, fn, reg int) uint64 {
	return ecamBase + uint64(bus)<<20 | uint64(dev)<<15 | uint64(fn)<<12 | uint64(reg)
}

type bridgeRig struct {
	t      *testing.T
	h      *HostBridge
	resets int
}

func newBridge(t *testing.T) *bridgeRig {
	t.Helper()
	r := &bridgeRig{t: t}
	h, err := NewHostBridge(ecamBase, func() { r.resets++ })
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	return r
}

func (r *bridgeRig) in(port uint16, n int) uint32 {
	b := make([]byte, 4)
	r.h.ReadPort(port, b[:n])
	for i := n; i < 4; i++ {
		b[i] = 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *bridgeRig) out(port uint16, n int, v uint32) {
	b := binary.LittleEndian.AppendUint32(nil, v)
	r.h.WritePort(port, b[:n])
}

// conf1Read is Linux's pci_conf1_read: address, then data at 0xCFC plus
// the low bits of the register.
func (r *bridgeRig) conf1Read(bus, dev, fn, reg, n int) uint32 {
	r.out(ConfigAddressPort, 4, cfgAddr(bus, dev, fn, reg))
	return r.in(ConfigDataPort+uint16(reg&3), n)
}

func (r *bridgeRig) conf1Write(bus, dev, fn, reg, n int, v uint32) {
	r.out(ConfigAddressPort, 4, cfgAddr(bus, dev, fn, reg))
	r.out(ConfigDataPort+uint16(reg&3), n, v)
}

func (r *bridgeRig) ecamRead(addr uint64, n int) uint64 {
	b := make([]byte, 8)
	r.h.ReadMMIO(addr, b[:n])
	for i := n; i < 8; i++ {
		b[i] = 0
	}
	return binary.LittleEndian.Uint64(b)
}

// TestLinuxConf1Probe replays arch/x86/pci/direct.c: pci_check_type1
// with pci_sanity_check must succeed, pci_check_type2 must fail.
func TestLinuxConf1Probe(t *testing.T) {
	r := newBridge(t)
	// pci_check_type1
	r.out(0xcfb, 1, 0x01)
	tmp := r.in(ConfigAddressPort, 4)
	r.out(ConfigAddressPort, 4, 0x80000000)
	works := r.in(ConfigAddressPort, 4) == 0x80000000
	// pci_sanity_check: a host bridge (or VGA, or Intel/Compaq) on bus 0.
	sane := false
	for devfn := 0; devfn < 0x100 && works; devfn++ {
		class := r.conf1Read(0, devfn>>3, devfn&7, 0x0a, 2)
		if class == 0x0600 || class == 0x0300 {
			sane = true
			break
		}
	}
	r.out(ConfigAddressPort, 4, tmp)
	if !works || !sane {
		t.Fatalf("type 1 probe failed: address register works %v, sanity check %v", works, sane)
	}
	// pci_check_type2
	r.out(0xcfb, 1, 0x00)
	r.out(ConfigAddressPort, 1, 0x00)
	r.out(0xcfa, 1, 0x00)
	if r.in(ConfigAddressPort, 1) == 0x00 && r.in(0xcfa, 1) == 0x00 {
		t.Fatal("the bridge also passes Linux's type 2 probe")
	}
	if r.resets != 0 {
		t.Fatal("probing reset the machine")
	}
}

func TestHostBridgeConfig(t *testing.T) {
	tests := []struct {
		name string
		reg  int
		n    int
		want uint32
	}{
		{"vendor and device", 0x00, 4, DeviceRedHatHost<<16 | VendorRedHat},
		{"vendor", 0x00, 2, VendorRedHat},
		{"device, word at 0xCFE", 0x02, 2, DeviceRedHatHost},
		{"class and revision", 0x08, 4, ClassHostBridge << 8},
		{"class, byte at 0xCFF", 0x0b, 1, 0x06},
		{"subclass, byte at 0xCFE", 0x0a, 1, 0x00},
		{"header type", 0x0e, 1, 0x00},
		{"subsystem", 0x2c, 4, 0x1100<<16 | VendorRedHatQumranet},
		{"BAR 0 (none)", 0x10, 4, 0},
		{"capabilities pointer (none)", 0x34, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newBridge(t)
			if got := r.conf1Read(0, 0, 0, tc.reg, tc.n); got != tc.want {
				t.Fatalf("conf1 read of %#x/%d = %#x, want %#x", tc.reg, tc.n, got, tc.want)
			}
			if got := uint32(r.ecamRead(ecamAddr(0, 0, 0, tc.reg), tc.n)); got != tc.want {
				t.Fatalf("ECAM read of %#x/%d = %#x, want %#x", tc.reg, tc.n, got, tc.want)
			}
		})
	}
}

func TestAbsent(t *testing.T) {
	r := newBridge(t)
	tests := []struct {
		name string
		read func() uint64
		want uint64
	}{
		{"conf1 empty slot", func() uint64 { return uint64(r.conf1Read(0, 5, 0, 0, 4)) }, 0xffffffff},
		{"conf1 function 1 of the bridge", func() uint64 { return uint64(r.conf1Read(0, 0, 1, 0, 2)) }, 0xffff},
		{"conf1 bus 1", func() uint64 { return uint64(r.conf1Read(1, 0, 0, 0, 4)) }, 0xffffffff},
		{"conf1 disabled", func() uint64 {
			r.out(ConfigAddressPort, 4, cfgAddr(0, 0, 0, 0)&^addrEnable)
			return uint64(r.in(ConfigDataPort, 4))
		}, 0xffffffff},
		{"ECAM empty slot", func() uint64 { return r.ecamRead(ecamAddr(0, 31, 7, 0), 4) }, 0xffffffff},
		{"ECAM bus 255", func() uint64 { return r.ecamRead(ecamAddr(255, 0, 0, 0), 4) }, 0xffffffff},
		{"ECAM beyond the window", func() uint64 { return r.ecamRead(ecamBase+ECAMSize, 2) }, 0xffff},
		{"ECAM 8 bytes across the window's end", func() uint64 { return r.ecamRead(ecamBase-4, 8) }, 0x00081b36_ffffffff},
		{"word read of CONFIG_ADDRESS", func() uint64 { return uint64(r.in(ConfigAddressPort, 2)) }, 0xffff},
		{"dword at 0xCFD runs off CONFIG_DATA", func() uint64 {
			r.out(ConfigAddressPort, 4, cfgAddr(0, 0, 0, 0))
			return uint64(r.in(ConfigDataPort+1, 4))
		}, 0xff_00_08_1b},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.read(); got != tc.want {
				t.Fatalf("read %#x, want %#x", got, tc.want)
			}
		})
	}
	// Writes to absent functions go nowhere and do not disturb the bridge.
	before := r.h.Save()
	r.conf1Write(1, 0, 0, 0x04, 2, 0xffff)
	r.h.WriteMMIO(ecamAddr(0, 9, 0, 0x04), []byte{0xff, 0xff})
	after := r.h.Save()
	if !reflect.DeepEqual(before.Bridge, after.Bridge) {
		t.Fatal("a write to an absent function changed the host bridge")
	}
}

func TestConfigAddressRegister(t *testing.T) {
	r := newBridge(t)
	r.out(ConfigAddressPort, 4, 0xffffffff)
	if got := r.in(ConfigAddressPort, 4); got != addrMask {
		t.Fatalf("CONFIG_ADDRESS reads %#x after writing all ones, want %#x", got, addrMask)
	}
	r.out(ConfigAddressPort, 2, 0x1234) // not a dword: not the register
	if got := r.in(ConfigAddressPort, 4); got != addrMask {
		t.Fatalf("a word write changed CONFIG_ADDRESS to %#x", got)
	}
}

func TestResetControlRegister(t *testing.T) {
	// Linux's reboot=pci: request a hard reset, then set RST_CPU.
	r := newBridge(t)
	cf9 := r.in(ResetControlPort, 1) &^ 0x06
	r.out(ResetControlPort, 1, cf9|0x02)
	if r.resets != 0 {
		t.Fatal("SYS_RST alone reset the machine")
	}
	if got := r.in(ResetControlPort, 1); got != 0x02 {
		t.Fatalf("reset control reads %#x, want 0x02", got)
	}
	r.out(ResetControlPort, 1, cf9|0x06)
	if r.resets != 1 {
		t.Fatalf("%d resets after RST_CPU, want 1", r.resets)
	}
	r.out(ConfigAddressPort, 4, 0x80000000|0x0400) // a dword at 0xCF8 is CONFIG_ADDRESS, not a reset
	if r.resets != 1 {
		t.Fatal("a CONFIG_ADDRESS write reset the machine")
	}
}

func TestAttach(t *testing.T) {
	single := mustConfigSpace(t, Header{VendorID: 0x1af4, DeviceID: 0x1041}, nil)
	multi := mustConfigSpace(t, Header{VendorID: 0x1af4, DeviceID: 0x1041, MultiFunction: true}, nil)
	other := mustConfigSpace(t, Header{VendorID: 0x1af4, DeviceID: 0x1042}, nil)
	tests := []struct {
		name    string
		setup   func(h *HostBridge)
		dev, fn int
		f       Function
		wantErr bool
	}{
		{"free slot", nil, 1, 0, single, false},
		{"the host bridge's slot", nil, 0, 0, single, true},
		{"device 32", nil, 32, 0, single, true},
		{"function 8", nil, 1, 8, single, true},
		{"nil function", nil, 1, 0, nil, true},
		{"function 1 before function 0", nil, 2, 1, other, true},
		{"function 1 of a single-function device", func(h *HostBridge) { h.Attach(2, 0, single) }, 2, 1, other, true},
		{"function 1 of a multi-function device", func(h *HostBridge) { h.Attach(2, 0, multi) }, 2, 1, other, false},
		{"occupied", func(h *HostBridge) { h.Attach(3, 0, single) }, 3, 0, other, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newBridge(t)
			if tc.setup != nil {
				tc.setup(r.h)
			}
			err := r.h.Attach(tc.dev, tc.fn, tc.f)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Attach(%d, %d) = %v, want error %v", tc.dev, tc.fn, err, tc.wantErr)
			}
			if err == nil {
				if got := r.conf1Read(0, tc.dev, tc.fn, 0, 4); got != 0x1041_1af4 && got != 0x1042_1af4 {
					t.Fatalf("attached function reads %#x", got)
				}
			}
		})
	}
	t.Run("detach", func(t *testing.T) {
		r := newBridge(t)
		if err := r.h.Attach(4, 0, multi); err != nil {
			t.Fatal(err)
		}
		if err := r.h.Attach(4, 3, other); err != nil {
			t.Fatal(err)
		}
		if err := r.h.Detach(4, 0); err == nil {
			t.Fatal("detached function 0 while function 3 is attached")
		}
		if err := r.h.Detach(0, 0); err == nil {
			t.Fatal("detached the host bridge")
		}
		if err := r.h.Detach(4, 3); err != nil {
			t.Fatal(err)
		}
		if err := r.h.Detach(4, 0); err != nil {
			t.Fatal(err)
		}
		if got := r.conf1Read(0, 4, 0, 0, 4); got != 0xffffffff {
			t.Fatalf("detached slot reads %#x", got)
		}
		if err := r.h.Detach(4, 0); err == nil {
			t.Fatal("detached an empty slot")
		}
	})
}

func TestHostBridgeSaveRestore(t *testing.T) {
	r := newBridge(t)
	r.conf1Write(0, 0, 0, 0x04, 2, CommandMemory|CommandBusMaster)
	r.conf1Write(0, 0, 0, 0x3c, 1, 0x0b)
	r.out(ResetControlPort, 1, 0x02)
	r.out(ConfigAddressPort, 4, cfgAddr(0, 3, 0, 0x10))
	st := r.h.Save()

	q := newBridge(t)
	if err := q.h.Restore(devicestest.Golden(t, "host-bridge-state", st)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := q.h.Save(); !reflect.DeepEqual(got, st) {
		t.Fatal("state after restore differs")
	}
	if got := q.in(ConfigAddressPort, 4); got != cfgAddr(0, 3, 0, 0x10) {
		t.Fatalf("CONFIG_ADDRESS %#x after restore", got)
	}
	bad := st
	bad.ConfigAddress = 0x3
	if err := q.h.Restore(bad); err == nil {
		t.Fatal("Restore accepted reserved CONFIG_ADDRESS bits")
	}
	bad = st
	bad.Bridge = ConfigState{Data: append([]byte(nil), st.Bridge.Data...)}
	bad.Bridge.Data[0] = 0x86 // another vendor
	if err := q.h.Restore(bad); err == nil {
		t.Fatal("Restore accepted another device's configuration space")
	}
}

func TestNewHostBridgeErrors(t *testing.T) {
	if _, err := NewHostBridge(ecamBase+0x1000, nil); err == nil {
		t.Fatal("accepted an ECAM base that is not 1 MiB aligned")
	}
}

// FuzzConf1 decodes random port traffic on 0xCF8-0xCFF (any width, any
// alignment) against a bridge with a function attached, and checks that
// nothing panics, CONFIG_ADDRESS keeps only its defined bits, absent
// functions read as all ones and BAR notifications match the registers.
func FuzzConf1(f *testing.F) {
	f.Add([]byte{0x04, 0x00, 0x08, 0x00, 0x80, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x05, 0x10, 0x08, 0x01, 0x80, 0x06, 0x06, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newBridge(t)
		var mu sync.Mutex
		var cs *ConfigSpace
		cs = mustConfigSpace(t, fuzzHeader, func(ch BARChange) {
			mu.Lock()
			defer mu.Unlock()
			if got := cs.BARMapping(ch.Index); got != ch.New {
				t.Errorf("BAR %d notified as %+v, reads %+v", ch.Index, ch.New, got)
			}
		})
		if err := r.h.Attach(1, 0, cs); err != nil {
			t.Fatal(err)
		}
		for len(ops) >= 6 {
			op := ops[0]
			port := ConfigAddressPort + uint16(op&7)
			n := []int{1, 2, 4, 4}[op>>3&3]
			v := binary.LittleEndian.Uint32(ops[1:5])
			ops = ops[5:]
			if op&0x20 != 0 {
				r.out(port, n, v)
				if port == ConfigAddressPort && n == 4 {
					if got := r.in(ConfigAddressPort, 4); got != v&addrMask {
						t.Fatalf("CONFIG_ADDRESS = %#x after writing %#x", got, v)
					}
				}
				continue
			}
			got := r.in(port, n)
			addr := r.h.Save().ConfigAddress
			enabled, bus, dev, fn, _ := decodeConf1(addr)
			absent := !enabled || bus != 0 || !(dev == 0 && fn == 0 || dev == 1 && fn == 0)
			if ones := uint32(uint64(1)<<(8*n) - 1); port == ConfigDataPort && absent && got != ones {
				t.Fatalf("read %#x from an absent function (address %#x)", got, addr)
			}
		}
	})
}

// FuzzECAM does the same through the ECAM window, with accesses of any
// size at any address around it.
func FuzzECAM(f *testing.F) {
	f.Add(uint32(0x8010), uint8(4), uint64(0xffffffff), true)
	f.Add(uint32(0x8ffe), uint8(8), uint64(0), false)
	f.Fuzz(func(t *testing.T, off uint32, size uint8, v uint64, write bool) {
		r := newBridge(t)
		cs := mustConfigSpace(t, fuzzHeader, nil)
		if err := r.h.Attach(1, 0, cs); err != nil {
			t.Fatal(err)
		}
		n := []int{1, 2, 4, 8}[size&3]
		addr := ecamBase - 0x10 + uint64(off)
		b := binary.LittleEndian.AppendUint64(nil, v)[:n]
		if write {
			r.h.WriteMMIO(addr, b)
			return
		}
		r.h.ReadMMIO(addr, b)
		for i := range b {
			a := addr + uint64(i)
			o := a - ecamBase
			inside := a >= ecamBase && o < ECAMSize && o>>20 == 0
			devfn := o >> 12 & 0xff
			if (!inside || devfn != 0 && devfn != 8) && b[i] != 0xff {
				t.Fatalf("byte at %#x of an absent function reads %#x", a, b[i])
			}
		}
	})
}

var fuzzHeader = Header{
	VendorID: 0x1af4, DeviceID: 0x1041, Class: 0x020000, InterruptPin: 1,
	BARs: [numBARs]BAR{
		{Kind: BARIO, Size: 0x40},
		{Kind: BARMem32, Size: 0x1000},
		{Kind: BARMem64, Size: 0x4000, Prefetchable: true},
	},
}

func BenchmarkConf1Read(b *testing.B) {
	h, err := NewHostBridge(ecamBase, nil)
	if err != nil {
		b.Fatal(err)
	}
	addr := binary.LittleEndian.AppendUint32(nil, cfgAddr(0, 0, 0, 0))
	data := make([]byte, 4)
	for b.Loop() {
		h.WritePort(ConfigAddressPort, addr)
		h.ReadPort(ConfigDataPort, data)
	}
}

func BenchmarkECAMRead(b *testing.B) {
	h, err := NewHostBridge(ecamBase, nil)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4)
	for b.Loop() {
		h.ReadMMIO(ecamBase, data)
	}
}
