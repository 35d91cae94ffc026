package machine

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// The cpl3count guest's report registers (MMIO): the iteration count,
// then the running hash (testdata/guests/cpl3count.S).
const (
	reportCount = 0xd000_0000
	reportHash  = reportCount + 4
)

// report is one of cpl3count's reports: the low halves of %rsi and %rdi.
type report struct{ Count, Hash uint32 }

// expectedReports computes the first n reports cpl3count makes.
func expectedReports(n int) []report {
	var out []report
	var rsi, rdi uint64 = 0, 1
	for len(out) < n {
		rsi++
		rdi = rdi*31 + rsi
		if rsi&0xfffff == 0 {
			out = append(out, report{uint32(rsi), uint32(rdi)})
		}
	}
	return out
}

// reporter records cpl3count's reports (a valueLog on its MMIO
// registers). With pauseAt set it pauses the machine from inside the
// MMIO write of that report's hash, so the vCPU parks on that exit.
type reporter struct{ log *valueLog }

func newReporter(t fataler, m *Machine, pauseAt int) *reporter {
	t.Helper()
	l := newValueLog()
	l.onWrite = func(addr uint64, n int) {
		if addr == reportHash && n == pauseAt {
			m.setState(statePaused)
		}
	}
	if err := m.mmio.register(reportCount, 8, l); err != nil {
		t.Fatal(err)
	}
	return &reporter{log: l}
}

// wait blocks until n reports have arrived and returns them all.
func (r *reporter) wait(t fataler, n int, run *running) []report {
	t.Helper()
	vals := r.log.waitEach(t, run, n, reportCount, reportHash)
	var out []report
	for i, h := range vals[reportHash] {
		out = append(out, report{vals[reportCount][i], h})
	}
	return out
}

// running is a machine whose Run goroutine the test owns.
type running struct {
	m      *Machine
	cancel context.CancelFunc
	done   chan struct{}
	exit   Exit
	err    error
}

// runMachine starts m.Run on a goroutine; stop ends it.
func runMachine(t fataler, m *Machine) *running {
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	r := &running{m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.exit, r.err = m.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.m.Close()
}

// pauseMidLoop pauses the cpl3count guest until its vCPU stops in the
// middle of its CPL3 loop rather than on a report's exit; after a pause
// that lands on a report, the guest makes one more report before the
// next try.
func pauseMidLoop(t fataler, m *Machine, rep *reporter, run *running) {
	t.Helper()
	for try := 0; try < 100; try++ {
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
		regs, err := m.vcpus[0].k.Regs()
		if err != nil {
			t.Fatal(err)
		}
		sregs, err := m.vcpus[0].k.Sregs()
		if err != nil {
			t.Fatal(err)
		}
		if regs.RSI&0xfffff != 0 && sregs.CS.Selector&3 == 3 {
			return
		}
		n := len(rep.wait(t, 0, run))
		if err := m.Resume(); err != nil {
			t.Fatal(err)
		}
		rep.wait(t, n+1, run)
	}
	t.Fatal("the vCPU never stopped in the middle of its loop")
}

// saveCounting boots cpl3count (kernel, built by buildGuest), lets it report a few times, pauses it
// (on an I/O exit or mid-loop) and saves it with its memory into dir.
// It returns the state and the reports made before the save.
func saveCounting(t fataler, cfg Config, kernel, dir string, atIOExit bool) (*State, []report) {
	t.Helper()
	m, err := New(cfg, BootConfig{Kernel: openKernel(t, kernel)})
	if err != nil {
		t.Fatal(err)
	}
	pauseAt := 0
	if atIOExit {
		pauseAt = 3
	}
	rep := newReporter(t, m, pauseAt)
	run := runMachine(t, m)
	rep.wait(t, 3, run)
	if atIOExit {
		waitParked(t, m, cfg.CPUs)
	} else {
		pauseMidLoop(t, m, rep, run)
	}
	st := pauseSave(t, m, run, dir)
	return st, rep.wait(t, 0, run)
}

// restoreFrom restores st with the memory file in dir.
func restoreFrom(t *testing.T, cfg Config, st *State, dir string) *Machine {
	t.Helper()
	mf, err := os.Open(filepath.Join(dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Restore(cfg, st, mf)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSaveRestore saves the cpl3count guest, closes its machine, and
// restores it into a new one from the state and the memory file: the
// guest continues exactly where it was, both when it was saved on an
// I/O exit and in the middle of its CPL3 loop.
func TestSaveRestore(t *testing.T) {
	requireKVM(t)
	for _, tc := range []struct {
		name     string
		atIOExit bool
	}{{"io-exit", true}, {"cpl3-loop", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}
			st, before := saveCounting(t, cfg, buildGuest(t, "cpl3count", nil), dir, tc.atIOExit)
			want := expectedReports(len(before) + 3)
			if !reflect.DeepEqual(before, want[:len(before)]) {
				t.Fatalf("reports before the save %v, want %v", before, want[:len(before)])
			}
			m := restoreFrom(t, cfg, st, dir)
			rep := newReporter(t, m, 0)
			run := runMachine(t, m)
			got := rep.wait(t, 3, run)
			if !reflect.DeepEqual(got[:3], want[len(before):]) {
				t.Fatalf("after the restore the guest reported %v, want %v (it reported %d before the save)", got[:3], want[len(before):], len(before))
			}
		})
	}
}

// TestSaveRestoreSave restores a saved machine and saves it again before
// it runs: the vCPUs' registers and the devices' states are what was
// saved, but for the generation ID.
func TestSaveRestoreSave(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	cfg := Config{KVM: testKVM(t), CPUs: 2, Memory: 64 << 20}
	st, _ := saveCounting(t, cfg, buildGuest(t, "cpl3count", nil), dir, false)
	m := restoreFrom(t, cfg, st, dir)
	defer m.Close()
	again, err := m.Save(SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := again.State, st
	for i := range b.VCPUs {
		x, y := a.VCPUs[i], b.VCPUs[i]
		for _, c := range []struct {
			what     string
			got, was any
		}{
			{"registers", x.Regs, y.Regs}, {"special registers", x.Sregs, y.Sregs},
			{"XCRs", x.XCRs, y.XCRs}, {"debug registers", x.Debug, y.Debug},
			{"MP state", x.MP, y.MP}, {"events", x.Events, y.Events},
			{"XSAVE area", x.XSave, y.XSave}, {"CPUID", x.CPUID, y.CPUID},
		} {
			if !reflect.DeepEqual(c.got, c.was) {
				t.Errorf("vCPU %d: %s after restore differ:\n got %+v\nsaved %+v", i, c.what, c.got, c.was)
			}
		}
	}
	for _, c := range []struct {
		what     string
		got, was any
	}{
		{"master PIC", a.PICMaster, b.PICMaster}, {"slave PIC", a.PICSlave, b.PICSlave}, {"IOAPIC", a.IOAPIC, b.IOAPIC},
		{"serial", a.Serial, b.Serial}, {"i8042", a.I8042, b.I8042}, {"ACPI PM", a.PM, b.PM}, {"PCI", a.PCI, b.PCI},
		{"GED", a.GED, b.GED},
	} {
		if !reflect.DeepEqual(c.got, c.was) {
			t.Errorf("%s after restore differs:\n got %+v\nsaved %+v", c.what, c.got, c.was)
		}
	}
	if fmt.Sprint(a.RTC.CMOS) != fmt.Sprint(b.RTC.CMOS) {
		t.Errorf("RTC CMOS after restore differs")
	}
	// The generation ID stays where it was and is new: a restore is a
	// new generation.
	if a.VMGenID.Addr != b.VMGenID.Addr || a.VMGenID.ID == b.VMGenID.ID {
		t.Errorf("generation ID after restore %+v, saved %+v: want a new ID at the same address", a.VMGenID, b.VMGenID)
	}
}

// TestRestoreTwice restores one snapshot into two machines at once: each
// continues the guest from the same instant, independently (the memory
// file is mapped privately into each: what one guest writes neither the
// other nor the file sees).
func TestRestoreTwice(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}
	st, before := saveCounting(t, cfg, buildGuest(t, "cpl3count", nil), dir, true)
	want := expectedReports(len(before) + 3)[len(before):]
	a, b := restoreFrom(t, cfg, st, dir), restoreFrom(t, cfg, st, dir)
	ra, rb := newReporter(t, a, 0), newReporter(t, b, 0)
	runA, runB := runMachine(t, a), runMachine(t, b)
	for i, got := range [][]report{ra.wait(t, 3, runA), rb.wait(t, 3, runB)} {
		if !reflect.DeepEqual(got[:3], want) {
			t.Fatalf("restore %d reported %v, want %v", i, got[:3], want)
		}
	}
	// The guests' stacks and counters differ from here on only by their
	// own doing; a byte written into one is seen by neither the other
	// nor the memory file.
	pa, err := a.Memory().Slice(0x1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.Memory().Slice(0x1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	old := pb[0]
	pa[0] = ^old
	if pb[0] != old {
		t.Fatal("a write into one restored guest's memory showed in the other's")
	}
	f, err := os.Open(filepath.Join(dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var one [1]byte
	if _, err := f.ReadAt(one[:], 0x1000); err != nil {
		t.Fatal(err)
	}
	if one[0] != old {
		t.Fatal("a write into a restored guest's memory reached the memory file")
	}
}

// TestRestoreClockContinues checks that a restored guest's kvmclock
// continues from the instant it was saved: not from zero, as a new VM's
// clock starts (a jump backwards), and not from the saved instant plus
// the time the snapshot lay on disk (a jump forwards; 500 ms here).
// While the restored guest runs, its clock may have moved on by at most
// the time since its Run began.
func TestRestoreClockContinues(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}
	st, _ := saveCounting(t, cfg, buildGuest(t, "cpl3count", nil), dir, true)
	if st.Clock == 0 {
		t.Fatal("the saved state has no clock")
	}
	saved := time.Now()
	// The snapshot lies on disk for a while: the scenario, not a wait
	// for anything.
	time.Sleep(500 * time.Millisecond)
	// A forward jump shows only if the restored guest's run, until the
	// clock is read, is shorter than the time on disk: on a machine so
	// loaded that it is not, the restore is made again (3 tries).
	for try := 1; ; try++ {
		m := restoreFrom(t, cfg, st, dir)
		rep := newReporter(t, m, 0)
		began := time.Now()
		run := runMachine(t, m)
		rep.wait(t, 1, run) // Run has set the clock: the guest ran
		c, err := m.vm.Clock()
		ran := time.Since(began)
		run.stop()
		if err != nil {
			t.Fatal(err)
		}
		if onDisk := began.Sub(saved); ran >= onDisk/2 {
			if try == 3 {
				t.Fatalf("the restored guest took %v to run, more than half the %v its snapshot lay on disk, in 3 tries: the test cannot tell a jump forward", ran, onDisk)
			}
			continue
		}
		// A millisecond of slack either way: KVM computes the clock it
		// sets and the one it reports by different paths.
		const slack = uint64(time.Millisecond)
		if c.Clock+slack < st.Clock || c.Clock > st.Clock+uint64(ran)+slack {
			t.Errorf("the restored guest's clock is %d ns, %+d ns from the saved %d ns, %v after its Run began; want between 0 and that", c.Clock, int64(c.Clock-st.Clock), st.Clock, ran)
		}
		return
	}
}

// TestRestoreVCPUState gives a saved vCPU state values a vCPU has not at
// reset (an XMM register, the debug registers, NMIs masked, the TSC, the
// TSC_AUX and kvmclock MSRs, the LAPIC's task priority and spurious
// vector), restores it and saves it again: each comes back, the LAPIC
// whole but for its timer's current count, which runs.
// TestSaveRestoreSave alone could not tell a part that is not restored
// from one its guest never changed.
func TestRestoreVCPUState(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}
	st, _ := saveCounting(t, cfg, buildGuest(t, "cpl3count", nil), dir, true)
	vs := &st.VCPUs[0]

	// The XMM registers are at bytes 160-415 of the legacy XSAVE area.
	const xmm0 = 160
	if len(vs.XSave) < xmm0+16 {
		t.Fatalf("XSAVE area of %d bytes", len(vs.XSave))
	}
	pattern := []byte("paddock xmm0 !!!")
	copy(vs.XSave[xmm0:], pattern)
	// XSTATE_BV (bytes 512-519) bit 1: the SSE state is not in its
	// initial configuration, so the XMM registers are loaded.
	if len(vs.XSave) < 520 {
		t.Fatalf("XSAVE area of %d bytes", len(vs.XSave))
	}
	vs.XSave[512] |= 2
	vs.Debug.DB = [4]uint64{0x1000, 0x2000, 0x3000, 0x4000}
	vs.Debug.DR7 = 0x400 | 0x2 // the always-one bit and G0
	vs.Events.NMI.Masked = 1
	// The LAPIC: a task priority (and the processor priority KVM
	// derives from it), and the spurious-interrupt vector register with
	// the APIC software-enabled and vector 0xef.
	if len(vs.LAPIC) != len(kvm.LAPICState{}) {
		t.Fatalf("LAPIC state of %d bytes", len(vs.LAPIC))
	}
	binary.LittleEndian.PutUint32(vs.LAPIC[0x80:], 0x20)
	binary.LittleEndian.PutUint32(vs.LAPIC[0xa0:], 0x20)
	binary.LittleEndian.PutUint32(vs.LAPIC[0xf0:], 0x1ef)
	const tsc, tscAux, kvmclock = 1 << 40, 0x5a, 0x5000 | kvm.MSRKVMEnabled
	want := map[uint32]uint64{kvm.MSRTSC: tsc, kvm.MSRKVMSystemTimeNew: kvmclock}
	// TSC_AUX only where KVM lists it (not on this host's KVM).
	for _, e := range vs.MSRs {
		if e.Index == kvm.MSRTSCAux {
			want[kvm.MSRTSCAux] = tscAux
		}
	}
	for i, e := range vs.MSRs {
		if v, ok := want[e.Index]; ok {
			vs.MSRs[i].Data = v
		}
	}
	offsets := tscWritable(t, cfg.KVM)
	saved := time.Now()

	m := restoreFrom(t, cfg, st, dir)
	defer m.Close()
	again, err := m.Save(SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(saved)
	got := again.State.VCPUs[0]
	if string(got.XSave[xmm0:xmm0+16]) != string(pattern) {
		t.Errorf("XMM0 after restore %q, want %q", got.XSave[xmm0:xmm0+16], pattern)
	}
	if got.Debug.DB != vs.Debug.DB || got.Debug.DR7 != vs.Debug.DR7 {
		t.Errorf("debug registers after restore DR0-3 %#x DR7 %#x, want %#x and %#x", got.Debug.DB, got.Debug.DR7, vs.Debug.DB, vs.Debug.DR7)
	}
	if got.Events.NMI.Masked != 1 {
		t.Errorf("NMIs after restore: %+v, want masked", got.Events.NMI)
	}
	msrs := map[uint32]uint64{}
	for _, e := range got.MSRs {
		msrs[e.Index] = e.Data
	}
	for idx, v := range want {
		g, ok := msrs[idx]
		switch {
		case !ok:
			t.Errorf("MSR %#x is not in the saved state", idx)
		case idx == kvm.MSRTSC && !offsets:
			t.Logf("this host's KVM gives every guest the host's TSC (docs/hosts.md): its TSC cannot be restored, and is not checked here")
		case idx == kvm.MSRTSC:
			// The TSC runs on from the restored value, by at most the
			// time since (at the guest's TSC rate, with a margin).
			most := uint64(elapsed.Microseconds()+1000) * uint64(max(got.TSCKHz, 1)) / 1000 * 2
			if g < v || g-v > most {
				t.Errorf("TSC after restore %d, want %d plus at most %d (%v at %d kHz)", g, v, most, elapsed, got.TSCKHz)
			}
		case g != v:
			t.Errorf("MSR %#x after restore %#x, want %#x", idx, g, v)
		}
	}
	// The LAPIC's timer current count (0x390) runs; every other
	// register comes back as it was.
	a, b := append(snapshot.Bytes(nil), got.LAPIC...), append(snapshot.Bytes(nil), vs.LAPIC...)
	if len(a) != len(b) {
		t.Fatalf("LAPIC state of %d bytes after restore, %d saved", len(a), len(b))
	}
	copy(a[0x390:0x394], b[0x390:0x394])
	for off := 0; off+4 <= len(a); off += 16 {
		if x, y := binary.LittleEndian.Uint32(a[off:]), binary.LittleEndian.Uint32(b[off:]); x != y {
			t.Errorf("LAPIC register %#x after restore %#x, want %#x", off, x, y)
		}
	}
}

// tscWritable reports whether sys's KVM lets user space set a vCPU's
// TSC (KVM_SET_MSRS of IA32_TSC): real KVM offsets the guest's TSC so;
// this host's paravirtual KVM keeps the host's (docs/hosts.md).
func tscWritable(t *testing.T, sys *kvm.System) bool {
	t.Helper()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	const to = 1 << 40
	if err := cpu.SetMSRs([]kvm.MSREntry{{Index: kvm.MSRTSC, Data: to}}); err != nil {
		t.Fatal(err)
	}
	got, err := cpu.MSRs([]uint32{kvm.MSRTSC})
	if err != nil || len(got) != 1 {
		t.Fatalf("read the TSC back: %v", err)
	}
	// Within a minute of the value written, at any rate up to 10 GHz.
	const minute = 60 * 10_000_000_000
	return got[0].Data >= to && got[0].Data-to < minute
}
