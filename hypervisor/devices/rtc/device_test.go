package rtc

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

// clock is a fake host clock with fake timers that fire only when the
// test advances it.
type clock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*timer
}

type timer struct {
	c       *clock
	when    time.Time
	f       func()
	stopped bool
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) afterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &timer{c: c, when: c.t.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return tm
}

func (tm *timer) Stop() bool {
	tm.c.mu.Lock()
	defer tm.c.mu.Unlock()
	was := !tm.stopped
	tm.stopped = true
	return was
}

// advance moves the clock forward by d, firing due timers in order.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	target := c.t.Add(d)
	for {
		sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].when.Before(c.timers[j].when) })
		var due *timer
		for _, tm := range c.timers {
			if !tm.stopped && !tm.when.After(target) {
				due = tm
				break
			}
		}
		if due == nil {
			c.t = target
			c.mu.Unlock()
			return
		}
		due.stopped = true
		if due.when.After(c.t) {
			c.t = due.when
		}
		c.mu.Unlock()
		due.f()
		c.mu.Lock()
	}
}

// armed returns how many timers are pending.
func (c *clock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, tm := range c.timers {
		if !tm.stopped {
			n++
		}
	}
	return n
}

// start is Saturday 2026-03-14 15:09:26.5 UTC.
var start = time.Date(2026, 3, 14, 15, 9, 26, 500_000_000, time.UTC)

type rig struct {
	t   *testing.T
	r   *RTC
	clk *clock
	irq *devicestest.Line
}

func newRig(t *testing.T, at time.Time) *rig {
	clk := &clock{t: at}
	irq := devicestest.NewLine()
	r := newRTC(Config{IRQ: irq, Now: clk.now, LowMemory: 512 << 20}, clk.afterFunc)
	t.Cleanup(r.Close)
	return &rig{t, r, clk, irq}
}

// cmosRead and cmosWrite are Linux's CMOS_READ/CMOS_WRITE.
func (g *rig) cmosRead(idx byte) byte {
	g.r.WritePort(IndexPort, []byte{idx})
	b := []byte{0}
	g.r.ReadPort(DataPort, b)
	return b[0]
}

func (g *rig) cmosWrite(v, idx byte) {
	g.r.WritePort(IndexPort, []byte{idx})
	g.r.WritePort(DataPort, []byte{v})
}

func bcd2bin(b byte) int { return int(b>>4)*10 + int(b&0x0f) }
func bin2bcd(v int) byte { return byte(v/10<<4 | v%10) }

// getTime is Linux's mc146818_get_time (drivers/rtc/rtc-mc146818-lib.c),
// with the FADT century at 0x32 and "mdelay(1)" advancing the fake
// clock. It fails the test if it loops more than a few times.
func (g *rig) getTime() time.Time {
	g.t.Helper()
	for tries := 0; ; tries++ {
		if tries > 5 {
			g.t.Fatal("mc146818_get_time would keep retrying")
		}
		sec := g.cmosRead(regSeconds)
		if g.cmosRead(regA)&aUIP != 0 {
			g.clk.advance(time.Millisecond)
			continue
		}
		if sec != g.cmosRead(regSeconds) {
			continue
		}
		mins, hrs := g.cmosRead(regMinutes), g.cmosRead(regHours)
		mday, mon, year := g.cmosRead(regDay), g.cmosRead(regMonth), g.cmosRead(regYear)
		century := g.cmosRead(CenturyRegister)
		ctrl := g.cmosRead(regB)
		retry := g.cmosRead(regA)&aUIP != 0 || sec != g.cmosRead(regSeconds)
		if retry {
			continue
		}
		v := func(b byte) int { return int(b) }
		if ctrl&bDM == 0 {
			v = bcd2bin
		}
		y := v(year)
		if c := v(century); c > 20 {
			y += (c - 19) * 100
		}
		if y <= 69 {
			y += 100
		}
		return time.Date(1900+y, time.Month(v(mon)), v(mday), v(hrs), v(mins), v(sec), 0, time.UTC)
	}
}

// setTime is Linux's mc146818_set_time in BCD mode, with the divider
// reset (Intel) or without it (AMD, apply_amd_register_a_behavior).
func (g *rig) setTime(t time.Time, amd bool) {
	yrs := t.Year() - 1900
	century := (yrs + 1900) / 100
	yrs %= 100
	saveControl := g.cmosRead(regB)
	g.cmosWrite(saveControl|bSET, regB)
	saveFreq := g.cmosRead(regA)
	if amd {
		g.cmosWrite(saveFreq&^0x10, regA)
	} else {
		g.cmosWrite(saveFreq|0x70, regA)
	}
	g.cmosWrite(bin2bcd(yrs), regYear)
	g.cmosWrite(bin2bcd(int(t.Month())), regMonth)
	g.cmosWrite(bin2bcd(t.Day()), regDay)
	g.cmosWrite(bin2bcd(t.Hour()), regHours)
	g.cmosWrite(bin2bcd(t.Minute()), regMinutes)
	g.cmosWrite(bin2bcd(t.Second()), regSeconds)
	g.cmosWrite(bin2bcd(century), CenturyRegister)
	g.cmosWrite(saveControl, regB)
	g.cmosWrite(saveFreq, regA)
}

func TestReadTimeFormats(t *testing.T) {
	tests := []struct {
		name                  string
		regB                  byte
		at                    time.Time
		sec, mins, hour, wday byte
		day, mon, year, cent  byte
	}{
		{"24h BCD", b24, start, 0x26, 0x09, 0x15, 0x07, 0x14, 0x03, 0x26, 0x20},
		{"24h binary", b24 | bDM, start, 26, 9, 15, 7, 14, 3, 26, 20},
		{"12h BCD afternoon", 0, start, 0x26, 0x09, 0x83, 0x07, 0x14, 0x03, 0x26, 0x20},
		{"12h binary afternoon", bDM, start, 26, 9, 0x83, 7, 14, 3, 26, 20},
		{"12h BCD midnight is 12 AM", 0, time.Date(2099, 12, 31, 0, 30, 0, 0, time.UTC), 0x00, 0x30, 0x12, 0x05, 0x31, 0x12, 0x99, 0x20},
		{"12h BCD noon is 12 PM", 0, time.Date(2000, 1, 2, 12, 0, 59, 0, time.UTC), 0x59, 0x00, 0x92, 0x01, 0x02, 0x01, 0x00, 0x20},
		{"24h binary 1999", b24 | bDM, time.Date(1999, 7, 4, 23, 59, 58, 0, time.UTC), 58, 59, 23, 1, 4, 7, 99, 19},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, tc.at)
			g.cmosWrite(tc.regB, regB)
			got := []byte{
				g.cmosRead(regSeconds), g.cmosRead(regMinutes), g.cmosRead(regHours), g.cmosRead(regWeekday),
				g.cmosRead(regDay), g.cmosRead(regMonth), g.cmosRead(regYear), g.cmosRead(CenturyRegister),
			}
			want := []byte{tc.sec, tc.mins, tc.hour, tc.wday, tc.day, tc.mon, tc.year, tc.cent}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("clock registers = % x, want % x", got, want)
				}
			}
		})
	}
}

func TestLinuxGetTime(t *testing.T) {
	tests := []struct {
		name string
		at   time.Time
	}{
		{"mid-second", start},
		{"inside the UIP window", time.Date(2026, 12, 31, 23, 59, 59, 999_900_000, time.UTC)},
		{"just after an update", time.Date(2030, 2, 28, 8, 0, 0, 1000, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, tc.at)
			got := g.getTime()
			if want := g.clk.now().Truncate(time.Second); !got.Equal(want) {
				t.Fatalf("guest reads %v, host clock is %v", got, want)
			}
		})
	}
}

func TestUIP(t *testing.T) {
	tests := []struct {
		name  string
		frac  time.Duration
		regA  byte
		regB  byte
		want  bool
		first byte // seconds register
	}{
		{"mid-second", 500 * time.Millisecond, resetA, resetB, false, 0x26},
		{"just before the window", time.Second - uipWindow - 1, resetA, resetB, false, 0x26},
		{"start of the window", time.Second - uipWindow, resetA, resetB, true, 0x26},
		{"end of the second", time.Second - 1, resetA, resetB, true, 0x26},
		{"SET halts updates", time.Second - 1, resetA, resetB | bSET, false, 0x26},
		{"divider in reset", time.Second - 1, resetA | 0x70, resetB, false, 0x26},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, start.Truncate(time.Second).Add(tc.frac))
			g.cmosWrite(tc.regB, regB)
			g.cmosWrite(tc.regA, regA)
			if got := g.cmosRead(regA)&aUIP != 0; got != tc.want {
				t.Fatalf("UIP = %v, want %v", got, tc.want)
			}
			if got := g.cmosRead(regSeconds); got != tc.first {
				t.Fatalf("seconds = %#x, want %#x", got, tc.first)
			}
		})
	}
	t.Run("time is stable while UIP is clear", func(t *testing.T) {
		g := newRig(t, start.Truncate(time.Second).Add(time.Second-uipWindow-time.Microsecond))
		if g.cmosRead(regA)&aUIP != 0 {
			t.Fatal("UIP set")
		}
		sec := g.cmosRead(regSeconds)
		g.clk.advance(uipWindow) // the window guarantees 244 µs
		if got := g.cmosRead(regSeconds); got != sec {
			t.Fatalf("seconds changed from %#x to %#x within 244 µs of UIP clear", sec, got)
		}
		g.clk.advance(time.Microsecond)
		if got := g.cmosRead(regSeconds); got != sec+1 || g.cmosRead(regA)&aUIP != 0 {
			t.Fatalf("seconds = %#x after the update, want %#x with UIP clear", got, sec+1)
		}
	})
}

func TestSetTime(t *testing.T) {
	target := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		amd    bool
		after  time.Duration
		wantAt time.Time
	}{
		// Releasing the divider restarts the second half-way.
		{"divider reset, 0.4 s later", false, 400 * time.Millisecond, target},
		{"divider reset, 0.6 s later", false, 600 * time.Millisecond, target.Add(time.Second)},
		{"divider reset, an hour later", false, time.Hour, target.Add(time.Hour)},
		// Without the reset the divider keeps its phase (start is .5 s in).
		{"AMD, 0.4 s later", true, 400 * time.Millisecond, target},
		{"AMD, 0.6 s later", true, 600 * time.Millisecond, target.Add(time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, start)
			hostBefore := g.clk.now()
			g.setTime(target, tc.amd)
			if !g.clk.now().Equal(hostBefore) {
				t.Fatal("setting the guest time moved the host clock")
			}
			g.clk.advance(tc.after)
			if got := g.getTime(); !got.Equal(tc.wantAt) {
				t.Fatalf("guest reads %v, want %v", got, tc.wantAt)
			}
			// Both ways the clock runs half a second into target when the
			// guest finishes (start is half a second into its second).
			st := g.r.Save()
			if got, want := st.Guest.Sub(st.Host), target.Add(time.Second/2).Sub(start); got != want {
				t.Fatalf("saved offset %v, want %v", got, want)
			}
		})
	}
	t.Run("one field of a running clock", func(t *testing.T) {
		g := newRig(t, start)
		g.cmosWrite(0x45, regMinutes)
		want := time.Date(2026, 3, 14, 15, 45, 26, 0, time.UTC)
		if got := g.getTime(); !got.Equal(want) {
			t.Fatalf("guest reads %v, want %v", got, want)
		}
	})
	t.Run("12-hour binary with SET", func(t *testing.T) {
		g := newRig(t, start)
		g.cmosWrite(bSET|bDM, regB)
		g.cmosWrite(0x80|11, regHours) // 11 PM
		g.cmosWrite(0, regMinutes)
		g.cmosWrite(0, regSeconds)
		if got := g.cmosRead(regHours); got != 0x80|11 {
			t.Fatalf("frozen hours register reads %#x", got)
		}
		g.cmosWrite(bDM, regB) // run, still 12-hour binary
		if got := g.cmosRead(regHours); got != 0x80|11 {
			t.Fatalf("hours = %#x once running, want 11 PM (0x8b)", got)
		}
		g.cmosWrite(bDM|b24, regB)
		if got := g.cmosRead(regHours); got != 23 {
			t.Fatalf("hours = %d after switching to 24-hour, want 23", got)
		}
	})
}

func TestRegisters(t *testing.T) {
	g := newRig(t, start)
	if got := g.cmosRead(regD); got != dVRT {
		t.Fatalf("register D = %#x, want VRT", got)
	}
	if got := g.cmosRead(regA); got != resetA {
		t.Fatalf("register A = %#x, want %#x", got, resetA)
	}
	if got := g.cmosRead(regB); got != resetB {
		t.Fatalf("register B = %#x, want %#x (24-hour BCD, as rtc-cmos requires)", got, resetB)
	}
	g.cmosWrite(0xff, regD)
	g.cmosWrite(0xff, regC)
	if d, c := g.cmosRead(regD), g.cmosRead(regC); d != dVRT || c != 0 {
		t.Fatalf("writes to read-only C/D stuck: C %#x D %#x", c, d)
	}
	g.r.WritePort(IndexPort, []byte{0x80 | 0x40})
	if !g.r.NMIDisabled() {
		t.Fatal("NMI-disable bit not recorded")
	}
	g.r.WritePort(DataPort, []byte{0x5a})
	if got := g.cmosRead(0x40); got != 0x5a {
		t.Fatalf("CMOS[0x40] = %#x: the NMI bit was taken as part of the index", got)
	}
	if g.r.NMIDisabled() {
		t.Fatal("NMI-disable bit still set after an index write without it")
	}
	b := []byte{0}
	g.r.ReadPort(IndexPort, b)
	if b[0] != 0xff {
		t.Fatalf("index port reads %#x, want 0xff (write-only)", b[0])
	}
	g.r.WritePort(IndexPort, []byte{0x7f, 0x99}) // outw: index and data
	if got := g.cmosRead(0x7f); got != 0x99 {
		t.Fatalf("word write to 0x70 left CMOS[0x7f] = %#x", got)
	}
}

func TestMemorySize(t *testing.T) {
	tests := []struct {
		name      string
		low, high uint64
		want      map[byte]byte
	}{
		{"512 MiB", 512 << 20, 0, map[byte]byte{
			0x15: 0x80, 0x16: 0x02, // 640 KiB
			0x17: 0xff, 0x18: 0xff, 0x30: 0xff, 0x31: 0xff, // capped at 0xFFFF KiB
			0x34: 0x00, 0x35: 0x1f, // (512-16) MiB / 64 KiB = 0x1F00
			0x5b: 0, 0x5c: 0, 0x5d: 0,
		}},
		{"8 MiB", 8 << 20, 0, map[byte]byte{0x17: 0x00, 0x18: 0x1c, 0x34: 0, 0x35: 0}},
		{"3 GiB + 5 GiB", 3 << 30, 5 << 30, map[byte]byte{
			0x34: 0x00, 0x35: 0xbf, // (3 GiB-16 MiB)/64 KiB = 0xBF00
			0x5b: 0x00, 0x5c: 0x40, 0x5d: 0x01, // 5 GiB / 64 KiB = 0x14000
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Config{LowMemory: tc.low, HighMemory: tc.high})
			defer r.Close()
			st := r.Save()
			for idx, want := range tc.want {
				if got := st.CMOS[idx]; got != want {
					t.Errorf("CMOS[%#x] = %#x, want %#x", idx, got, want)
				}
			}
		})
	}
}

func TestInterrupts(t *testing.T) {
	t.Run("update-ended", func(t *testing.T) {
		g := newRig(t, start)
		g.cmosWrite(resetB|bUIE, regB)
		g.clk.advance(400 * time.Millisecond)
		if g.irq.High() {
			t.Fatal("IRQ 8 raised before the second ended")
		}
		g.clk.advance(100 * time.Millisecond)
		if !g.irq.High() {
			t.Fatal("IRQ 8 not raised at the update")
		}
		// PF is set too: the periodic flag runs at 1024 Hz, enabled or not.
		if c := g.cmosRead(regC); c&(cIRQF|cUF|cAF) != cIRQF|cUF {
			t.Fatalf("register C = %#x, want IRQF|UF", c)
		}
		if g.irq.High() {
			t.Fatal("reading register C did not lower IRQ 8")
		}
		g.clk.advance(time.Second)
		if !g.irq.High() || g.irq.Edges() != 2 {
			t.Fatalf("second update: line %v after %d edges", g.irq.High(), g.irq.Edges())
		}
	})
	t.Run("alarm", func(t *testing.T) {
		g := newRig(t, start) // 15:09:26.5
		g.cmosWrite(0x30, regSecondsAlarm)
		g.cmosWrite(0x09, regMinutesAlarm)
		g.cmosWrite(0xff, regHoursAlarm) // any hour
		g.cmosWrite(resetB|bAIE, regB)
		g.clk.advance(3 * time.Second) // 15:09:29.5
		if g.irq.High() {
			t.Fatal("alarm fired early")
		}
		g.clk.advance(time.Second) // 15:09:30.5
		if !g.irq.High() {
			t.Fatal("alarm did not fire at 15:09:30")
		}
		if c := g.cmosRead(regC); c&(cIRQF|cAF) != cIRQF|cAF {
			t.Fatalf("register C = %#x, want IRQF|AF", c)
		}
		g.clk.advance(59 * time.Minute) // next match is 16:09:30
		if g.irq.High() {
			t.Fatal("alarm fired before the next matching hour")
		}
		g.clk.advance(time.Minute)
		if !g.irq.High() {
			t.Fatal("alarm did not fire at 16:09:30")
		}
	})
	t.Run("periodic 2 Hz", func(t *testing.T) {
		g := newRig(t, start.Truncate(time.Second))
		g.cmosWrite(dividerNorm|0x0f, regA)
		g.cmosWrite(resetB|bPIE, regB)
		g.clk.advance(499 * time.Millisecond)
		if g.irq.High() {
			t.Fatal("periodic interrupt before its period")
		}
		g.clk.advance(time.Millisecond)
		if !g.irq.High() {
			t.Fatal("no periodic interrupt after 500 ms at 2 Hz")
		}
		if c := g.cmosRead(regC); c&(cIRQF|cPF) != cIRQF|cPF {
			t.Fatalf("register C = %#x, want IRQF|PF", c)
		}
	})
	t.Run("polled flags without interrupts", func(t *testing.T) {
		g := newRig(t, start)
		g.cmosRead(regC)
		g.cmosWrite(0x26, regSecondsAlarm)
		g.cmosWrite(0xc0, regMinutesAlarm)
		g.cmosWrite(0xc0, regHoursAlarm)
		if n := g.clk.armed(); n != 0 {
			t.Fatalf("%d timers armed with every interrupt disabled", n)
		}
		g.clk.advance(time.Second)
		if c := g.cmosRead(regC); c != cUF|cPF {
			t.Fatalf("register C = %#x after a second, want UF|PF and no IRQF", c)
		}
		g.clk.advance(time.Minute)
		if c := g.cmosRead(regC); c != cUF|cAF|cPF {
			t.Fatalf("register C = %#x after passing hh:mm:26, want UF|AF|PF", c)
		}
		if g.irq.Edges() != 0 {
			t.Fatal("IRQ 8 raised with interrupts disabled")
		}
	})
	t.Run("SET clears UIE and stops updates", func(t *testing.T) {
		g := newRig(t, start)
		g.cmosWrite(resetB|bUIE, regB)
		g.cmosWrite(resetB|bUIE|bSET, regB)
		if b := g.cmosRead(regB); b&bUIE != 0 {
			t.Fatalf("register B = %#x: SET did not clear UIE", b)
		}
		g.cmosRead(regC)
		g.clk.advance(3 * time.Second)
		if c := g.cmosRead(regC); c&cUF != 0 {
			t.Fatalf("register C = %#x: update flagged while SET", c)
		}
	})
	t.Run("reset clears enables and flags", func(t *testing.T) {
		g := newRig(t, start)
		g.cmosWrite(resetB|bUIE, regB)
		g.clk.advance(time.Second)
		g.r.Reset()
		if g.irq.High() || g.cmosRead(regB)&bUIE != 0 || g.cmosRead(regC) != 0 {
			t.Fatal("reset left an interrupt enabled or pending")
		}
		if n := g.clk.armed(); n != 0 {
			t.Fatalf("%d timers armed after reset", n)
		}
	})
}

// TestHostTimer runs the periodic interrupt on the real host clock and
// timers, at 8192 Hz, through a few acknowledge cycles.
func TestHostTimer(t *testing.T) {
	irq := devicestest.NewLine()
	r := New(Config{IRQ: irq})
	defer r.Close()
	g := &rig{t: t, r: r}
	g.cmosWrite(dividerNorm|0x03, regA)
	g.cmosWrite(resetB|bPIE, regB)
	for range 3 {
		irq.Wait(true)
		if c := g.cmosRead(regC); c&(cIRQF|cPF) != cIRQF|cPF {
			t.Fatalf("register C = %#x, want IRQF|PF", c)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSaveRestore(t *testing.T) {
	g := newRig(t, start)
	g.setTime(time.Date(2040, 6, 7, 8, 9, 10, 0, time.UTC), false)
	g.cmosWrite(0x77, 0x50)
	g.cmosWrite(resetB|bUIE, regB)
	g.clk.advance(2 * time.Second)
	st := g.r.Save()

	// Saved at host start+2s with the guest at 08:09:12.5; restored at
	// host start+1h, the clock has run on for 1h-2s.
	h := newRig(t, start.Add(time.Hour))
	if err := h.r.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !h.irq.High() {
		t.Fatal("pending update interrupt not restored onto the line")
	}
	want := time.Date(2040, 6, 7, 9, 9, 10, 0, time.UTC)
	if got := h.getTime(); !got.Equal(want) {
		t.Fatalf("restored clock reads %v, want %v", got, want)
	}
	if got := h.cmosRead(0x50); got != 0x77 {
		t.Fatalf("CMOS[0x50] = %#x after restore", got)
	}

	// Restored at the host instant it was saved, with an index and NMIs
	// disabled as a guest leaves them, the RTC saves again exactly what
	// it was given: every field, the whole CMOS.
	same := st
	same.Index, same.NMIDisabled = 0x2a, true
	k := newRig(t, st.Host)
	if err := k.r.Restore(same); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if again := k.r.Save(); again != same {
		t.Fatalf("Save after Restore:\n got %+v\nwant %+v", again, same)
	}

	bad := []struct {
		name string
		mod  func(*State)
	}{
		{"index", func(s *State) { s.Index = 0x80 }},
		{"register C", func(s *State) { s.CMOS[regC] = cIRQF }},
		{"register D", func(s *State) { s.CMOS[regD] = 0 }},
		{"clock", func(s *State) { s.Guest = time.Time{} }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s := st
			tc.mod(&s)
			if err := h.r.Restore(s); err == nil {
				t.Fatal("Restore accepted an impossible state")
			}
		})
	}
}

// FuzzCMOS writes random values to random CMOS bytes while the clock
// moves, and checks that nothing panics, register D stays valid and IRQ 8
// is at the level register C implies.
func FuzzCMOS(f *testing.F) {
	f.Add([]byte{0x0b, 0x80, 0x09, 0x99, 0x08, 0x13, 0x0b, 0x02, 0x0a, 0x70})
	f.Add([]byte{0x0b, 0x52, 0x0a, 0x23, 0x01, 0xc0, 0x0c, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		g := newRig(t, start)
		for len(ops) >= 2 {
			idx, v := ops[0]&0x7f, ops[1]
			if ops[0]&0x80 != 0 {
				g.cmosRead(idx)
			} else {
				g.cmosWrite(v, idx)
			}
			g.clk.advance(time.Duration(v) * 7 * time.Millisecond)
			ops = ops[2:]
			if d := g.cmosRead(regD); d != dVRT {
				t.Fatalf("register D = %#x", d)
			}
			g.r.mu.Lock()
			want := g.r.irqPending()
			g.r.mu.Unlock()
			if g.irq.High() != want {
				t.Fatalf("IRQ 8 high = %v, register C implies %v", g.irq.High(), want)
			}
		}
	})
}
