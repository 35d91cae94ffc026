package acpipm

import (
	"encoding/binary"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

type rig struct {
	t                *testing.T
	pm               *PM
	sci              *devicestest.Line
	powerOff, resets int
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, sci: devicestest.NewLine()}
	cfg := DefaultConfig()
	cfg.SCI = r.sci
	cfg.OnPowerOff = func() { r.powerOff++ }
	cfg.OnReset = func() { r.resets++ }
	pm, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.pm = pm
	return r
}

func (r *rig) inw(port uint16) uint16 {
	b := make([]byte, 2)
	r.pm.ReadPort(port, b)
	return binary.LittleEndian.Uint16(b)
}

func (r *rig) outw(port, v uint16) {
	r.pm.WritePort(port, binary.LittleEndian.AppendUint16(nil, v))
}

// TestLinuxPowerOff replays ACPICA's acpi_hw_legacy_sleep(S5) on 16-bit
// PM1 registers, as Linux does on "poweroff".
func TestLinuxPowerOff(t *testing.T) {
	r := newRig(t)
	const pm1Sts, pm1Cnt = DefaultEventPort, DefaultControlPort
	r.outw(pm1Sts, wakSts) // clear WAK_STS
	r.outw(pm1Sts, 0xffff) // acpi_hw_clear_acpi_status
	cnt := r.inw(pm1Cnt)
	if cnt&cntSCIEn == 0 {
		t.Fatalf("PM1_CNT = %#04x: SCI_EN clear, Linux would try to enable ACPI mode", cnt)
	}
	cnt &^= cntSlpTyp | cntSlpEn
	cnt |= DefaultSleepTypeS5 << slpTypShift
	r.outw(pm1Cnt, cnt) // write #1: SLP_TYP only
	if r.powerOff != 0 {
		t.Fatal("powered off before SLP_EN")
	}
	r.outw(pm1Cnt, cnt|cntSlpEn) // write #2: SLP_TYP + SLP_EN
	if r.powerOff != 1 {
		t.Fatalf("%d power-offs after SLP_EN with S5, want 1", r.powerOff)
	}
	if got := r.inw(pm1Cnt); got&cntSlpEn != 0 || got&cntSlpTyp != DefaultSleepTypeS5<<slpTypShift {
		t.Fatalf("PM1_CNT reads %#04x: want SLP_TYP kept and SLP_EN reading 0", got)
	}
	if r.resets != 0 {
		t.Fatal("power-off also reset")
	}
}

func TestSleepControl(t *testing.T) {
	tests := []struct {
		name      string
		port      uint16
		data      []byte
		wantPower int
	}{
		{"S5 with SLP_EN, word", DefaultControlPort, []byte{0x01, 0x34}, 1}, // 0x3401: SLP_EN|5<<10|SCI_EN
		{"S5 with SLP_EN, high byte alone", DefaultControlPort + 1, []byte{0x34}, 1},
		{"S5 without SLP_EN", DefaultControlPort, []byte{0x00, 0x14}, 0},
		{"other sleep type (S1) with SLP_EN", DefaultControlPort, []byte{0x00, 0x24}, 0},
		{"SLP_EN in a write to PM1_EN", DefaultEventPort + 2, []byte{0x00, 0x34}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.pm.WritePort(tc.port, tc.data)
			if r.powerOff != tc.wantPower {
				t.Fatalf("%d power-offs, want %d", r.powerOff, tc.wantPower)
			}
		})
	}
}

func TestResetRegister(t *testing.T) {
	tests := []struct {
		name      string
		port      uint16
		data      []byte
		wantReset int
	}{
		{"reset value", DefaultResetPort, []byte{DefaultResetValue}, 1},
		{"other value", DefaultResetPort, []byte{0x01}, 0},
		{"word write, reset value in the low byte", DefaultResetPort, []byte{DefaultResetValue, 0}, 1},
		{"reset value to the control block", DefaultControlPort, []byte{DefaultResetValue}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.pm.WritePort(tc.port, tc.data)
			if r.resets != tc.wantReset {
				t.Fatalf("%d resets, want %d", r.resets, tc.wantReset)
			}
			if r.powerOff != 0 {
				t.Fatal("a reset-register write powered off")
			}
		})
	}
}

func TestPowerButton(t *testing.T) {
	const sts, en = DefaultEventPort, DefaultEventPort + 2
	r := newRig(t)
	r.pm.PressPowerButton()
	if r.sci.High() {
		t.Fatal("SCI raised with PWRBTN_EN clear")
	}
	if got := r.inw(sts); got != pwrbtn {
		t.Fatalf("PM1_STS = %#04x after a press, want PWRBTN_STS", got)
	}
	r.outw(en, pwrbtn)
	if !r.sci.High() {
		t.Fatal("enabling PWRBTN_EN with the status set did not raise the SCI")
	}
	if got := r.inw(en); got != pwrbtn {
		t.Fatalf("PM1_EN reads %#04x, want %#04x", got, pwrbtn)
	}
	r.outw(sts, 0) // writing 0 clears nothing
	if !r.sci.High() {
		t.Fatal("writing 0 to PM1_STS cleared the event")
	}
	r.outw(sts, pwrbtn) // the OS acknowledges
	if r.sci.High() {
		t.Fatal("SCI still high after PWRBTN_STS was cleared")
	}
	if got := r.inw(sts); got != 0 {
		t.Fatalf("PM1_STS = %#04x after clearing", got)
	}
	r.pm.PressPowerButton()
	if !r.sci.High() {
		t.Fatal("second press did not raise the SCI")
	}
	r.pm.WritePort(en+1, []byte{0}) // disable, high byte only
	if r.sci.High() {
		t.Fatal("SCI still high after PWRBTN_EN was cleared")
	}
	r.pm.Reset()
	if got := r.inw(sts); got != 0 || r.sci.High() {
		t.Fatalf("after reset PM1_STS = %#04x, SCI high %v", got, r.sci.High())
	}
}

func TestUnimplementedBits(t *testing.T) {
	r := newRig(t)
	r.outw(DefaultEventPort+2, 0xffff)
	if got := r.inw(DefaultEventPort + 2); got != enMask {
		t.Fatalf("PM1_EN reads %#04x after writing all ones, want %#04x", got, enMask)
	}
	r.outw(DefaultControlPort, 0xffff&^cntSlpEn)
	if got := r.inw(DefaultControlPort); got != cntMask|cntSCIEn {
		t.Fatalf("PM1_CNT reads %#04x after writing all ones, want %#04x", got, cntMask|cntSCIEn)
	}
	b := []byte{0}
	r.pm.ReadPort(DefaultResetPort, b)
	if b[0] != 0 {
		t.Fatalf("reset register reads %#x, want 0", b[0])
	}
	r.pm.ReadPort(DefaultResetPort+1, b)
	if b[0] != 0xff {
		t.Fatalf("port after the reset register reads %#x, want open bus", b[0])
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"S5 type too large", func(c *Config) { c.SleepTypeS5 = 8 }},
		{"control block inside the event block", func(c *Config) { c.ControlPort = c.EventPort + 3 }},
		{"reset register inside the control block", func(c *Config) { c.ResetPort = c.ControlPort + 1 }},
		{"event block past the I/O space", func(c *Config) { c.EventPort = 0xfffe }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Fatal("New accepted the configuration")
			}
		})
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t)
	r.outw(DefaultEventPort+2, pwrbtn)
	r.pm.PressPowerButton()
	r.outw(DefaultControlPort, 3<<slpTypShift|cntBMRld)
	st := r.pm.Save()

	q := newRig(t)
	if err := q.pm.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if q.pm.Save() != st {
		t.Fatalf("state after restore = %+v, want %+v", q.pm.Save(), st)
	}
	if !q.sci.High() {
		t.Fatal("pending power button event not restored onto the SCI")
	}
	for _, bad := range []State{{Status: 0x0001}, {Enable: 0x0002}, {Control: cntSlpEn}} {
		if err := q.pm.Restore(bad); err == nil {
			t.Fatalf("Restore accepted %+v", bad)
		}
		if q.pm.Save() != st {
			t.Fatal("a refused Restore changed the block")
		}
	}
}

// FuzzPorts writes random bytes across the block's ports and checks that
// the SCI follows PM1_STS & PM1_EN and that power-off and reset happen
// only on the writes that ask for them.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{0x04, 0x01, 0x34, 0x08, 0x06})
	f.Add([]byte{0x02, 0x00, 0x01, 0x00, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newRig(t)
		for len(ops) >= 3 {
			port := DefaultEventPort + uint16(ops[0]%12)
			n := 1 + int(ops[0]>>4&1) // a byte or a word
			data := ops[1 : 1+n]
			ops = ops[1+n:]
			powerOff, resets := r.powerOff, r.resets
			r.pm.WritePort(port, data)
			st := r.pm.Save()
			if r.sci.High() != (st.Status&st.Enable != 0) {
				t.Fatalf("SCI high = %v with PM1_STS %#04x PM1_EN %#04x", r.sci.High(), st.Status, st.Enable)
			}
			if r.powerOff > powerOff+1 || r.resets > resets+len(data) {
				t.Fatalf("one write caused %d power-offs and %d resets", r.powerOff-powerOff, r.resets-resets)
			}
			if r.resets > resets && !containsAt(port, data, DefaultResetPort, DefaultResetValue) {
				t.Fatalf("reset from writing % x at %#x", data, port)
			}
		}
	})
}

// containsAt reports whether writing data at port puts v at target.
func containsAt(port uint16, data []byte, target uint16, v byte) bool {
	i := int(target) - int(port)
	return i >= 0 && i < len(data) && data[i] == v
}

// TestEnablesStick replays what ACPICA does when it installs the global
// lock and the RTC fixed-event handlers: it sets GBL_EN and RTC_EN and
// reads PM1_EN back, reporting "Could not enable ... event" otherwise.
// Neither enable raises the SCI: those events never happen here.
func TestEnablesStick(t *testing.T) {
	r := newRig(t)
	for _, bit := range []uint16{gblEn, rtcEn, gblEn | rtcEn | pwrbtn} {
		r.outw(DefaultEventPort+2, bit)
		if got := r.inw(DefaultEventPort + 2); got != bit {
			t.Errorf("PM1_EN reads %#04x after writing %#04x", got, bit)
		}
		if r.sci.High() {
			t.Errorf("SCI raised by enabling %#04x with no event pending", bit)
		}
	}
}
