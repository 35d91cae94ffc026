package machine

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// valueLog records the 32-bit values a guest writes to a device's port
// or MMIO registers, by address. onWrite, if set, is called (on the vCPU
// thread) after each value with its address and how many that address
// has had.
type valueLog struct {
	mu      sync.Mutex
	cond    *sync.Cond
	vals    map[uint64][]uint32
	onWrite func(addr uint64, n int)
}

func newValueLog() *valueLog {
	l := &valueLog{vals: map[uint64][]uint32{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// newPortLog is a valueLog on ports [base, base+n).
func newPortLog(t *testing.T, m *Machine, base uint16, n int) *valueLog {
	t.Helper()
	l := newValueLog()
	if err := m.ports.register(base, n, l); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *valueLog) ReadPort(port uint16, data []byte)  {}
func (l *valueLog) WritePort(port uint16, data []byte) { l.write(uint64(port), data) }
func (l *valueLog) ReadMMIO(addr uint64, data []byte)  {}
func (l *valueLog) WriteMMIO(addr uint64, data []byte) { l.write(addr, data) }

func (l *valueLog) write(addr uint64, data []byte) {
	if len(data) != 4 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.vals[addr] = append(l.vals[addr], binary.LittleEndian.Uint32(data))
	if l.onWrite != nil {
		l.onWrite(addr, len(l.vals[addr]))
	}
	l.cond.Broadcast()
}

// waitEach blocks until every address of addrs has at least n values
// and returns a copy of the log.
func (l *valueLog) waitEach(t fataler, run *running, n int, addrs ...uint64) map[uint64][]uint32 {
	t.Helper()
	go func() {
		<-run.done
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		ok := true
		for _, a := range addrs {
			ok = ok && len(l.vals[a]) >= n
		}
		if ok {
			break
		}
		select {
		case <-run.done:
			t.Fatalf("the machine ended (%+v) before every register of %#x had %d values: %v", run.exit, addrs, n, l.vals)
		default:
		}
		l.cond.Wait()
	}
	out := map[uint64][]uint32{}
	for a, v := range l.vals {
		out[a] = append([]uint32(nil), v...)
	}
	return out
}

// pauseSave pauses m, saves it with its memory into dir and stops it.
func pauseSave(t fataler, m *Machine, run *running, dir string) *State {
	t.Helper()
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := m.Save(SaveOptions{Memory: f})
	if err != nil {
		t.Fatal(err)
	}
	run.stop()
	return res.State
}

// TestSaveRestoreSMP saves a guest whose 2 or 4 vCPUs all count (the
// boot CPU in protected mode, the others in real mode, each in its own
// register) and restores it: every vCPU's sequence continues exactly.
func TestSaveRestoreSMP(t *testing.T) {
	requireKVM(t)
	for _, cpus := range []int{2, 4} {
		t.Run(fmt.Sprintf("cpus=%d", cpus), func(t *testing.T) {
			const port = 0x530
			var ports []uint64
			for i := 0; i < cpus; i++ {
				ports = append(ports, port+uint64(4*i))
			}
			cfg := Config{KVM: testKVM(t), CPUs: cpus, Memory: 64 << 20}
			m, err := New(cfg, BootConfig{Kernel: guestKernel(t, "smpcount", nil)})
			if err != nil {
				t.Fatal(err)
			}
			log := newPortLog(t, m, port, 4*cpus)
			run := runMachine(t, m)
			log.waitEach(t, run, 2, ports...)
			dir := t.TempDir()
			st := pauseSave(t, m, run, dir)
			before := log.waitEach(t, run, 0, ports...)

			m2 := restoreFrom(t, cfg, st, dir)
			log2 := newPortLog(t, m2, port, 4*cpus)
			after := log2.waitEach(t, runMachine(t, m2), 2, ports...)
			for i, p := range ports {
				b, a := before[p], after[p]
				for j, v := range a[:2] {
					if want := b[len(b)-1] + uint32(4096*(j+1)); v != want {
						t.Errorf("vCPU %d: report %d after the restore is %d, want %d (the last before the save was %d)", i, j, v, want, b[len(b)-1])
					}
				}
			}
		})
	}
}

// TestSaveRestoreTimers saves a halted guest that runs on its LAPIC
// timer and the PIT and restores it: both timers keep firing, and the
// tick counts in guest memory continue from the saved ones.
func TestSaveRestoreTimers(t *testing.T) {
	requireKVM(t)
	const lapic, pit = 0x540, 0x544
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}
	m, err := New(cfg, BootConfig{Kernel: guestKernel(t, "timers", nil)})
	if err != nil {
		t.Fatal(err)
	}
	log := newPortLog(t, m, lapic, 8)
	run := runMachine(t, m)
	log.waitEach(t, run, 3, lapic, pit)
	dir := t.TempDir()
	st := pauseSave(t, m, run, dir)
	before := log.waitEach(t, run, 0, lapic, pit)

	m2 := restoreFrom(t, cfg, st, dir)
	log2 := newPortLog(t, m2, lapic, 8)
	after := log2.waitEach(t, runMachine(t, m2), 3, lapic, pit)
	for _, c := range []struct {
		name string
		port uint64
	}{{"LAPIC timer", lapic}, {"PIT", pit}} {
		b, a := before[c.port], after[c.port]
		last := b[len(b)-1]
		for j, v := range a[:3] {
			if v != last+uint32(j+1) {
				t.Errorf("%s: tick %d after the restore counted %d, want %d (%d ticks before the save)", c.name, j, v, last+uint32(j+1), last)
			}
		}
	}
}

// TestSaveRestoreSerialInterrupts saves the irq guest while it waits
// for COM1 receive interrupts (UART, IOAPIC redirection, LAPIC and IDT
// programmed, the vCPU halted) and restores it with a new console: the
// bytes typed then reach the restored guest through its interrupt
// handler, which echoes them and powers off on 'q'.
func TestSaveRestoreSerialInterrupts(t *testing.T) {
	requireKVM(t)
	kernel := guestKernel(t, "irq", nil)
	con := newConsole()
	cfg := Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20, Console: con}
	m, err := New(cfg, BootConfig{Kernel: kernel})
	if err != nil {
		t.Fatal(err)
	}
	run := runMachine(t, m)
	if !con.waitFor("ready\n", run.done) {
		t.Fatalf("guest never got ready; console %q", con.String())
	}
	dir := t.TempDir()
	st := pauseSave(t, m, run, dir)

	in, feed := io.Pipe()
	defer feed.Close()
	con2 := newConsole()
	cfg.Console, cfg.ConsoleInput = con2, in
	m2 := restoreFrom(t, cfg, st, dir)
	run2 := runMachine(t, m2)
	if _, err := feed.Write([]byte("abq")); err != nil {
		t.Fatal(err)
	}
	<-run2.done
	if run2.exit.Reason != exit.PowerOff {
		t.Fatalf("restored guest ended with %v (%s), want poweroff; console %q", run2.exit.Reason, run2.exit.Detail, con2.String())
	}
	if got := con2.String(); got != "abq" {
		t.Fatalf("restored guest's console %q, want the echo %q", got, "abq")
	}
}
