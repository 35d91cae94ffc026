// Package rtc emulates the PC's MC146818 real-time clock and its CMOS
// RAM at ports 0x70 (index, with the NMI-disable bit) and 0x71 (data).
//
// The clock is the host's clock plus an offset: it starts at the host's
// UTC time, and when the guest sets the time it moves the offset, never
// the host clock. Registers A-D behave as Linux and hwclock expect: UIP
// in the 244 µs before each update, BCD or binary and 12- or 24-hour
// formats per register B, the SET bit freezing the time for setting, the
// divider reset that restarts the second half a second later, VRT set in
// register D. The periodic, alarm (seconds/minutes/hours with "don't
// care" values) and update-ended flags of register C are kept whether or
// not their interrupts are enabled; enabled ones raise IRQ 8 through a
// host timer scheduled only while an enabled interrupt can still become
// pending. Daylight-saving adjustment (register B bit 0) and the square
// wave output are not emulated. The day of the week always follows the
// date (Sunday = 1).
//
// Byte 0x32 holds the century, maintained with the clock (the FADT's
// CENTURY field should name it).
package rtc

import (
	"fmt"
	"sync"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// Ports and interrupt of the RTC on a PC.
const (
	IndexPort = 0x70
	DataPort  = 0x71
	IRQ       = 8
)

// CenturyRegister is the CMOS byte that holds the century, for the
// FADT's CENTURY field.
const CenturyRegister = 0x32

// CMOSSize is the size of the CMOS RAM, registers included.
const CMOSSize = 128

// Clock registers.
const (
	regSeconds      = 0x00
	regSecondsAlarm = 0x01
	regMinutes      = 0x02
	regMinutesAlarm = 0x03
	regHours        = 0x04
	regHoursAlarm   = 0x05
	regWeekday      = 0x06
	regDay          = 0x07
	regMonth        = 0x08
	regYear         = 0x09
	regA            = 0x0a
	regB            = 0x0b
	regC            = 0x0c
	regD            = 0x0d
)

// Register A: update in progress, divider (bits 6-4), rate select (3-0).
const (
	aUIP        = 0x80
	aDivider    = 0x70
	aRate       = 0x0f
	dividerNorm = 0x20 // 32.768 kHz time base, running
	resetA      = dividerNorm | 0x06
)

// Register B.
const (
	bSET   = 0x80 // halt updates, for setting the time
	bPIE   = 0x40
	bAIE   = 0x20
	bUIE   = 0x10
	bSQWE  = 0x08
	bDM    = 0x04 // binary rather than BCD
	b24    = 0x02 // 24-hour rather than 12-hour
	bDSE   = 0x01
	resetB = b24
)

// Register C: interrupt request and the three event flags.
const (
	cIRQF  = 0x80
	cPF    = 0x40
	cAF    = 0x20
	cUF    = 0x10
	cFlags = cPF | cAF | cUF
)

// Register D: valid RAM and time.
const dVRT = 0x80

// alarmDontCare: an alarm byte with both top bits set matches any value.
const alarmDontCare = 0xc0

// uipWindow is how long before each update UIP is set: 244 µs, eight
// periods of the 32.768 kHz time base. Time read while UIP is clear is
// guaranteed not to change for at least that long.
const uipWindow = 8 * time.Second / 32768

// hz32k is the frequency of the time base, in which periodic interrupt
// rates are expressed.
const hz32k = 32768

// Config describes an RTC.
type Config struct {
	// IRQ is interrupt line 8, driven level-style while register C's
	// IRQF is set. Nil means no interrupts (the flags still work).
	IRQ devices.InterruptLine
	// LowMemory and HighMemory are the guest's RAM below and above
	// 4 GiB, in bytes, reported in the CMOS memory-size bytes as a PC
	// BIOS (and QEMU) does.
	LowMemory, HighMemory uint64
	// Now is the host clock; nil means time.Now.
	Now func() time.Time
}

// timerFunc schedules f after d, like time.AfterFunc.
type timerFunc func(d time.Duration, f func()) stopper

// stopper is the part of *time.Timer the RTC uses.
type stopper interface{ Stop() bool }

// RTC is one MC146818 with its CMOS RAM. It implements devices.PortDevice
// for IndexPort and DataPort. All methods are safe for concurrent use.
type RTC struct {
	irq       devices.InterruptLine
	now       func() time.Time
	afterFunc timerFunc

	mu    sync.Mutex
	index byte
	nmi   bool // NMI disable bit of the last index write
	cmos  [CMOSSize]byte
	// guestBase and hostBase anchor the guest clock: at host time
	// hostBase the guest clock read guestBase. The guest clock runs
	// whenever the divider does; while it is frozen (SET or divider
	// stopped) the clock registers in cmos hold the latched time, and
	// the fraction of guestBase still carries the divider's phase.
	guestBase, hostBase time.Time
	lastEval            time.Time // guest time up to which flags are accumulated
	flags               byte      // cPF|cAF|cUF
	timer               stopper
	timerGen            uint64
	closed              bool
	irqLevel            bool
	irqErr              error
}

// New returns an RTC reading the host clock, with registers A-D at their
// power-on values (32.768 kHz time base, 1024 Hz rate, 24-hour BCD, no
// interrupts) and the memory-size bytes filled in from cfg.
func New(cfg Config) *RTC {
	return newRTC(cfg, func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) })
}

func newRTC(cfg Config, after timerFunc) *RTC {
	r := &RTC{irq: cfg.IRQ, now: cfg.Now, afterFunc: after}
	if r.now == nil {
		r.now = time.Now
	}
	n := r.now()
	r.guestBase, r.hostBase = n.UTC(), n
	r.lastEval = r.guestBase
	r.cmos[regA] = resetA
	r.cmos[regB] = resetB
	r.cmos[regD] = dVRT
	r.cmos[CenturyRegister] = r.encode(n.UTC().Year() / 100)
	fillMemorySize(&r.cmos, cfg.LowMemory, cfg.HighMemory)
	return r
}

// fillMemorySize writes the memory-size bytes a PC BIOS leaves in CMOS:
// base memory in KiB (0x15-0x16), extended memory above 1 MiB in KiB
// (0x17-0x18 and 0x30-0x31, at most 0xFFFF), memory between 16 MiB and
// 4 GiB in 64 KiB units (0x34-0x35) and above 4 GiB in 64 KiB units
// (0x5B-0x5D).
func fillMemorySize(cmos *[CMOSSize]byte, low, high uint64) {
	put := func(off int, v uint64, n int) {
		for i := range n {
			cmos[off+i] = byte(v >> (8 * i))
		}
	}
	put(0x15, min(low>>10, 640), 2)
	ext := uint64(0)
	if low > 1<<20 {
		ext = min((low-1<<20)>>10, 0xffff)
	}
	put(0x17, ext, 2)
	put(0x30, ext, 2)
	above16 := uint64(0)
	if low > 16<<20 {
		above16 = min((low-16<<20)>>16, 0xffff)
	}
	put(0x34, above16, 2)
	put(0x5b, min(high>>16, 0xffffff), 3)
}

// Close stops the interrupt timer. The RTC keeps working without
// interrupts afterwards.
func (r *RTC) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.stopTimer()
}

// Err returns the first error the interrupt line reported, if any.
func (r *RTC) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.irqErr
}

// Reset does what the MC146818's RESET pin does: it clears the interrupt
// enables and flags. The time and the CMOS RAM are kept (battery-backed).
func (r *RTC) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance()
	r.cmos[regB] &^= bPIE | bAIE | bUIE | bSQWE
	r.flags = 0
	r.update()
}

// ReadPort implements devices.PortDevice. The index port is write-only
// and reads as 0xFF; a wider access decodes only its first byte.
func (r *RTC) ReadPort(port uint16, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
	if len(data) == 0 || port != DataPort {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	data[0] = r.read(r.index)
}

// WritePort implements devices.PortDevice. A wider access writes its
// bytes to consecutive ports, so "outw 0x70" sets the index and writes
// the data in one go, as on a PC.
func (r *RTC) WritePort(port uint16, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range data {
		switch int(port) + i {
		case IndexPort:
			r.index = v &^ 0x80
			r.nmi = v&0x80 != 0
		case DataPort:
			r.write(r.index, v)
		}
	}
}

// NMIDisabled reports the NMI-disable bit of the last index write. The
// machine may honour it; the RTC itself has no NMI to gate.
func (r *RTC) NMIDisabled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nmi
}

// isClockReg reports whether idx is one of the registers the clock
// updates.
func isClockReg(idx byte) bool {
	switch idx {
	case regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, CenturyRegister:
		return true
	}
	return false
}

// read returns CMOS byte idx as the guest sees it. Precondition: mu is held.
func (r *RTC) read(idx byte) byte {
	switch {
	case isClockReg(idx) && r.running():
		return r.clockReg(idx, r.guestNow().Truncate(time.Second))
	case idx == regA:
		v := r.cmos[regA] &^ aUIP
		if r.updateInProgress() {
			v |= aUIP
		}
		return v
	case idx == regC:
		r.advance()
		v := r.flags
		if r.irqPending() {
			v |= cIRQF
		}
		r.flags = 0
		r.update()
		return v
	case idx == regD:
		return dVRT
	}
	return r.cmos[idx]
}

// write stores CMOS byte idx with the side effects of the register it
// is. Precondition: mu is held.
func (r *RTC) write(idx byte, v byte) {
	switch {
	case isClockReg(idx):
		if !r.running() {
			r.cmos[idx] = v
			return
		}
		// Setting one field of a running clock: latch, change, restart
		// from the new time keeping the divider's phase.
		r.advance()
		r.latch()
		r.cmos[idx] = v
		r.commit(r.phase())
	case idx == regA:
		r.writeA(v)
	case idx == regB:
		r.writeB(v)
	case idx == regC, idx == regD:
		// Read-only.
	case idx == regSecondsAlarm, idx == regMinutesAlarm, idx == regHoursAlarm:
		r.advance()
		r.cmos[idx] = v
		r.update()
	default:
		r.cmos[idx] = v
	}
}

// writeA sets the divider and rate. Taking the divider out of reset
// restarts the clock so that the next update comes half a second later,
// which is how Linux's mc146818_set_time aligns the second.
// Precondition: mu is held.
func (r *RTC) writeA(v byte) {
	r.advance()
	wasDivider, wasRunning := r.dividerRunning(), r.running()
	if wasRunning {
		r.latch()
	}
	r.cmos[regA] = v &^ aUIP
	if !wasDivider && r.dividerRunning() {
		r.setPhase(time.Second / 2)
	}
	if r.running() {
		if !wasRunning {
			r.commit(r.phase())
		}
	}
	r.update()
}

// writeB sets the mode and interrupt enables. Setting SET freezes the
// clock registers for the guest to write and clears UIE; clearing it
// starts the clock from what the guest wrote. Precondition: mu is held.
func (r *RTC) writeB(v byte) {
	r.advance()
	wasRunning := r.running()
	if wasRunning && v&bSET != 0 {
		r.latch()
	}
	if v&bSET != 0 {
		v &^= bUIE
	}
	r.cmos[regB] = v
	if !wasRunning && r.running() {
		r.commit(r.phase())
	}
	r.update()
}

// dividerRunning reports whether the divider chain counts: a 32.768 kHz
// (or faster) time base selected and not held in reset.
// Precondition: mu is held.
func (r *RTC) dividerRunning() bool { return r.cmos[regA]&aDivider <= dividerNorm }

// running reports whether the clock updates once a second.
// Precondition: mu is held.
func (r *RTC) running() bool { return r.dividerRunning() && r.cmos[regB]&bSET == 0 }

// guestNow returns the guest clock. Precondition: mu is held.
func (r *RTC) guestNow() time.Time { return r.guestBase.Add(r.now().Sub(r.hostBase)) }

// phase returns how far into its current second the divider chain is.
// Precondition: mu is held.
func (r *RTC) phase() time.Duration { return time.Duration(r.guestNow().Nanosecond()) }

// setPhase moves the divider chain to phase into the current second.
// Precondition: mu is held.
func (r *RTC) setPhase(phase time.Duration) {
	r.guestBase, r.hostBase = r.guestNow().Truncate(time.Second).Add(phase), r.now()
	r.lastEval = r.guestBase
}

// updateInProgress reports UIP: set in the last uipWindow before each
// update of a running clock. Precondition: mu is held.
func (r *RTC) updateInProgress() bool {
	return r.running() && r.phase() >= time.Second-uipWindow
}

// latch copies the running clock into the clock registers.
// Precondition: mu is held.
func (r *RTC) latch() {
	t := r.guestNow().Truncate(time.Second)
	for _, idx := range []byte{regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, CenturyRegister} {
		r.cmos[idx] = r.clockReg(idx, t)
	}
}

// commit starts the clock from the time in the clock registers, phase
// into its first second. Precondition: mu is held.
func (r *RTC) commit(phase time.Duration) {
	r.guestBase, r.hostBase = r.registerTime().Add(phase), r.now()
	r.lastEval = r.guestBase
}

// clockReg encodes clock register idx for time t in the current format.
// Precondition: mu is held.
func (r *RTC) clockReg(idx byte, t time.Time) byte {
	switch idx {
	case regSeconds:
		return r.encode(t.Second())
	case regMinutes:
		return r.encode(t.Minute())
	case regHours:
		return r.encodeHour(t.Hour())
	case regWeekday:
		return r.encode(int(t.Weekday()) + 1)
	case regDay:
		return r.encode(t.Day())
	case regMonth:
		return r.encode(int(t.Month()))
	case regYear:
		return r.encode(t.Year() % 100)
	default: // CenturyRegister
		return r.encode(t.Year() / 100)
	}
}

// registerTime decodes the clock registers. Out-of-range values (month
// 13, BCD digits above 9) are normalised as time.Date does, rather than
// refused: the guest gets some time, never a crash. A century byte that
// is not 19-99 is taken as unset and guessed from the year as Linux
// does (00-69 is 20xx). Precondition: mu is held.
func (r *RTC) registerTime() time.Time {
	yy := r.decode(r.cmos[regYear])
	cc := r.decode(r.cmos[CenturyRegister])
	if cc < 19 || cc > 99 {
		cc = 20
		if yy >= 70 {
			cc = 19
		}
	}
	return time.Date(cc*100+yy, time.Month(r.decode(r.cmos[regMonth])), r.decode(r.cmos[regDay]),
		r.decodeHour(r.cmos[regHours]), r.decode(r.cmos[regMinutes]), r.decode(r.cmos[regSeconds]), 0, time.UTC)
}

// encode formats a clock value as BCD or binary per register B.
// Precondition: mu is held.
func (r *RTC) encode(v int) byte {
	if r.cmos[regB]&bDM != 0 {
		return byte(v)
	}
	return byte(v/10%10<<4 | v%10)
}

// decode reads a clock value as BCD or binary per register B.
// Precondition: mu is held.
func (r *RTC) decode(b byte) int {
	if r.cmos[regB]&bDM != 0 {
		return int(b)
	}
	return int(b>>4)*10 + int(b&0x0f)
}

// encodeHour formats an hour (0-23) in 24-hour or 12-hour (bit 7 = PM)
// form. Precondition: mu is held.
func (r *RTC) encodeHour(h int) byte {
	if r.cmos[regB]&b24 != 0 {
		return r.encode(h)
	}
	h12 := h % 12
	if h12 == 0 {
		h12 = 12
	}
	v := r.encode(h12)
	if h >= 12 {
		v |= 0x80
	}
	return v
}

// decodeHour is the inverse of encodeHour. Precondition: mu is held.
func (r *RTC) decodeHour(b byte) int {
	if r.cmos[regB]&b24 != 0 {
		return r.decode(b)
	}
	h := r.decode(b&0x7f) % 12
	if b&0x80 != 0 {
		h += 12
	}
	return h
}

// periodTicks returns the periodic interrupt period in time-base ticks
// for the rate in register A, or 0 for none. Precondition: mu is held.
func (r *RTC) periodTicks() int64 {
	rs := int64(r.cmos[regA] & aRate)
	switch {
	case rs == 0:
		return 0
	case rs <= 2:
		return 1 << (rs + 6) // 256 and 128 Hz
	default:
		return 1 << (rs - 1) // 8192 Hz down to 2 Hz
	}
}

// ticks returns t in time-base ticks since the Unix epoch (negative
// before it).
func ticks(t time.Time) int64 {
	return t.Unix()*hz32k + int64(t.Nanosecond())*hz32k/int64(time.Second)
}

// fromTicks returns the earliest time at or after tick n.
func fromTicks(n int64) time.Time {
	sec := floorDiv(n, hz32k)
	rem := n - sec*hz32k
	ns := (rem*int64(time.Second) + hz32k - 1) / hz32k
	return time.Unix(sec, ns).UTC()
}

// floorDiv divides rounding towards minus infinity. Precondition: b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// advance accumulates register C's flags for the guest time that has
// passed since the last call: a periodic flag per period boundary of a
// running divider, and, while the clock updates, the update-ended flag
// per second boundary and the alarm flag when a second matching the
// alarm began. Precondition: mu is held.
func (r *RTC) advance() {
	g := r.guestNow()
	from := r.lastEval
	r.lastEval = g
	if !g.After(from) {
		return
	}
	if p := r.periodTicks(); p != 0 && r.dividerRunning() && floorDiv(ticks(g), p) > floorDiv(ticks(from), p) {
		r.flags |= cPF
	}
	if !r.running() {
		return
	}
	first, last := from.Truncate(time.Second), g.Truncate(time.Second)
	if last.After(first) {
		r.flags |= cUF
		if at, ok := r.nextAlarm(first); ok && !at.After(last) {
			r.flags |= cAF
		}
	}
}

// nextAlarm returns the first whole second after t whose time matches
// the alarm registers, if any does. Precondition: mu is held.
func (r *RTC) nextAlarm(t time.Time) (time.Time, bool) {
	sec, mins, hrs := r.cmos[regSecondsAlarm], r.cmos[regMinutesAlarm], r.cmos[regHoursAlarm]
	match := func(alarm, v byte) bool { return alarm >= alarmDontCare || alarm == v }
	// An alarm byte no time can match never fires; checking that first
	// keeps the search below short.
	can := func(alarm byte, n int, enc func(int) byte) bool {
		for v := range n {
			if match(alarm, enc(v)) {
				return true
			}
		}
		return false
	}
	if !can(sec, 60, r.encode) || !can(mins, 60, r.encode) || !can(hrs, 24, r.encodeHour) {
		return time.Time{}, false
	}
	t = t.Truncate(time.Second)
	hour := t.Truncate(time.Hour)
	for h := 0; h <= 24; h, hour = h+1, hour.Add(time.Hour) {
		if !match(hrs, r.encodeHour(hour.Hour())) {
			continue
		}
		minute := hour
		for m := 0; m < 60; m, minute = m+1, minute.Add(time.Minute) {
			if !minute.Add(59*time.Second).After(t) || !match(mins, r.encode(minute.Minute())) {
				continue
			}
			s := minute
			for i := 0; i < 60; i, s = i+1, s.Add(time.Second) {
				if s.After(t) && match(sec, r.encode(s.Second())) {
					return s, true
				}
			}
		}
	}
	return time.Time{}, false
}

// irqPending reports register C's IRQF: a flag set whose interrupt is
// enabled. Precondition: mu is held.
func (r *RTC) irqPending() bool {
	// The enables in register B sit at the same bits as their flags.
	return r.flags&r.cmos[regB]&(bPIE|bAIE|bUIE) != 0
}

// update drives the interrupt line from IRQF and schedules the timer for
// the next enabled event. Precondition: mu is held.
func (r *RTC) update() {
	level := r.irqPending()
	if level != r.irqLevel {
		r.irqLevel = level
		if r.irq != nil {
			if err := r.irq.SetLevel(level); err != nil && r.irqErr == nil {
				r.irqErr = fmt.Errorf("rtc: set IRQ %d level %v: %w", IRQ, level, err)
			}
		}
	}
	r.schedule()
}

// schedule arms the timer for the next event that would raise IRQF, or
// disarms it when none can (no line, interrupts disabled, IRQF already
// set, or the clock stopped). Precondition: mu is held.
func (r *RTC) schedule() {
	r.stopTimer()
	if r.irq == nil || r.closed || r.irqLevel {
		return
	}
	g := r.guestNow()
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	b := r.cmos[regB]
	if p := r.periodTicks(); b&bPIE != 0 && p != 0 && r.dividerRunning() {
		consider(fromTicks((floorDiv(ticks(g), p) + 1) * p))
	}
	if r.running() {
		if b&bUIE != 0 {
			consider(g.Truncate(time.Second).Add(time.Second))
		}
		if b&bAIE != 0 {
			if at, ok := r.nextAlarm(g); ok {
				consider(at)
			}
		}
	}
	if next.IsZero() {
		return
	}
	r.timerGen++
	gen := r.timerGen
	r.timer = r.afterFunc(max(next.Sub(g), 0), func() { r.fire(gen) })
}

// fire runs when the timer expires: it accumulates the flags and drives
// the line, which re-arms the timer if nothing became pending yet.
func (r *RTC) fire(gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.timerGen || r.closed {
		return // a newer schedule replaced this timer
	}
	r.timer = nil
	r.advance()
	r.update()
}

// stopTimer cancels the pending timer, if any. Precondition: mu is held.
func (r *RTC) stopTimer() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.timerGen++
}
