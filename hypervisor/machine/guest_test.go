package machine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/acpipm"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// Host /dev/kvm tests: tiny guest programs, assembled from
// testdata/guests at test time with GNU as and ld, booted through the
// same PVH path as a Linux vmlinux.

// guestTimeout bounds one tiny-guest run; CPL0 code is emulated on the
// test hosts (docs/hosts.md), so it is generous, but a hang still fails.
const guestTimeout = 2 * time.Minute

// buildGuest assembles testdata/guests/NAME.S into an ELF and returns its
// path. defs become --defsym symbols in addition to the ACPI ports.
func buildGuest(t testing.TB, name string, defs map[string]int) string {
	t.Helper()
	testenv.Declare(t, testenv.HostKVM)
	testenv.RequireTool(t, "as", "binutils")
	testenv.RequireTool(t, "ld", "binutils")
	src, err := filepath.Abs(filepath.Join("testdata", "guests"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	obj := filepath.Join(dir, name+".o")
	elf := filepath.Join(dir, name+".elf")
	args := []string{"--64", "-I", src,
		"--defsym", fmt.Sprintf("PM1A_CNT=%d", acpipm.DefaultControlPort),
		"--defsym", fmt.Sprintf("S5_TYP=%d", acpipm.DefaultSleepTypeS5),
		"--defsym", fmt.Sprintf("PM1A_EVT=%d", acpipm.DefaultEventPort),
	}
	for k, v := range defs {
		args = append(args, "--defsym", fmt.Sprintf("%s=%d", k, v))
	}
	args = append(args, "-o", obj, filepath.Join(src, name+".S"))
	if out, err := exec.Command("as", args...).CombinedOutput(); err != nil {
		t.Fatalf("assemble %s: %v\n%s", name, err, out)
	}
	ld := exec.Command("ld", "-m", "elf_x86_64", "--no-warn-rwx-segments", "-T", filepath.Join(src, "guest.ld"), "-o", elf, obj)
	if out, err := ld.CombinedOutput(); err != nil {
		t.Fatalf("link %s: %v\n%s", name, err, out)
	}
	return elf
}

// requireKVM is testenv.RequireKVM.
func requireKVM(t testing.TB) {
	t.Helper()
	testenv.RequireKVM(t)
}

// console collects a guest's serial output and lets a test wait for text.
type console struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
}

func newConsole() *console {
	c := &console{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// waitFor blocks until the output contains s or done is closed; it reports
// whether s appeared.
func (c *console) waitFor(s string, done <-chan struct{}) bool {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-done:
		case <-stop:
		}
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !strings.Contains(c.buf.String(), s) {
		select {
		case <-done:
			return false
		default:
		}
		c.cond.Wait()
	}
	return true
}

// run is a started machine whose Run result arrives on exit.
type run struct {
	m      *Machine
	con    *console
	exit   chan Exit
	cancel context.CancelFunc
	done   chan struct{}
}

// start builds a machine with cfg, boots it with b and starts Run in a
// goroutine.
func start(t *testing.T, cfg Config, b BootConfig) *run {
	t.Helper()
	requireKVM(t)
	con := newConsole()
	if cfg.Console == nil {
		cfg.Console = con
	}
	if cfg.Memory == 0 {
		cfg.Memory = 64 << 20
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.KVM == nil {
		cfg.KVM = testKVM(t)
	}
	m, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	r := &run{m: m, con: con, exit: make(chan Exit, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		e, err := m.Run(ctx)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.exit <- e
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		m.Close()
	})
	return r
}

// wait returns the machine's exit, failing the test on the timeout.
func (r *run) wait(t *testing.T) Exit {
	t.Helper()
	e := <-r.exit
	if e.Reason == exit.Stop {
		t.Fatalf("guest did not finish within %v; console:\n%s", guestTimeout, r.con.String())
	}
	return e
}

func TestSerialGuest(t *testing.T) {
	r := start(t, Config{}, BootConfig{Kernel: guestKernel(t, "serial", nil)})
	e := r.wait(t)
	if e.Reason != exit.PowerOff {
		t.Fatalf("exit = %v (%s), want poweroff", e.Reason, e.Detail)
	}
	if got, want := r.con.String(), "hello from the serial guest\n"; got != want {
		t.Fatalf("console = %q, want %q", got, want)
	}
}

// recorder is an MMIO test device that logs writes and answers reads.
type recorder struct {
	mu     sync.Mutex
	writes []string
	reads  []uint64
}

func (d *recorder) ReadMMIO(addr uint64, data []byte) {
	d.mu.Lock()
	d.reads = append(d.reads, addr)
	d.mu.Unlock()
	for i := range data {
		data[i] = byte(uint32(0x12345678) >> (8 * i))
	}
}

func (d *recorder) WriteMMIO(addr uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes = append(d.writes, fmt.Sprintf("%#x:%x", addr, data))
}

func TestMMIOGuest(t *testing.T) {
	requireKVM(t)
	dev := &recorder{}
	m, err := New(Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: guestKernel(t, "mmio", nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.mmio.register(0xd000_0000, 0x1000, dev); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	e, err := m.Run(ctx)
	if err != nil || e.Reason != exit.PowerOff {
		t.Fatalf("Run = %v (%s), %v; want poweroff", e.Reason, e.Detail, err)
	}
	want := []string{"0xd0000000:efbeadde", "0xd0000004:5a", "0xd0000010:78563412"}
	if fmt.Sprint(dev.writes) != fmt.Sprint(want) {
		t.Errorf("writes = %v, want %v", dev.writes, want)
	}
	if len(dev.reads) != 1 || dev.reads[0] != 0xd000_0008 {
		t.Errorf("reads = %#x, want one at 0xd0000008", dev.reads)
	}
	// Four accesses to the device's page, one ACPI power-off write.
	st := m.Stats()
	if st.MMIO[0xd000_0000] != 4 || st.Reasons[kvm.ExitMMIO.String()] != 4 || st.Ports[acpipm.DefaultControlPort] != 1 {
		t.Errorf("stats = %+v, want 4 MMIO exits on page 0xd0000000 and 1 on the PM1a control port", st)
	}
}

func TestInterruptGuest(t *testing.T) {
	in, feed := io.Pipe()
	r := start(t, Config{ConsoleInput: in}, BootConfig{Kernel: guestKernel(t, "irq", nil)})
	if !r.con.waitFor("ready\n", r.done) {
		t.Fatalf("guest never got ready; console %q", r.con.String())
	}
	// Each byte reaches the guest only through a COM1 receive interrupt
	// routed IOAPIC -> LAPIC -> IDT vector 0x24; the handler echoes it.
	if _, err := feed.Write([]byte("abq")); err != nil {
		t.Fatal(err)
	}
	e := r.wait(t)
	if e.Reason != exit.PowerOff {
		t.Fatalf("exit = %v (%s), want poweroff", e.Reason, e.Detail)
	}
	if got, want := r.con.String(), "ready\nabq"; got != want {
		t.Fatalf("console = %q, want %q", got, want)
	}
}

func TestSMPGuest(t *testing.T) {
	for _, cpus := range []int{2, 4} {
		t.Run(fmt.Sprintf("cpus=%d", cpus), func(t *testing.T) {
			aps := (1<<cpus - 1) &^ 1 // every APIC ID but the BSP's
			r := start(t, Config{CPUs: cpus}, BootConfig{Kernel: guestKernel(t, "smp", map[string]int{"APS": aps})})
			e := r.wait(t)
			if e.Reason != exit.PowerOff {
				t.Fatalf("exit = %v (%s), want poweroff; console %q", e.Reason, e.Detail, r.con.String())
			}
			if got, want := r.con.String(), fmt.Sprintf("aps %08x\n", aps); got != want {
				t.Fatalf("console = %q, want %q", got, want)
			}
		})
	}
}

func TestPauseResume(t *testing.T) {
	r := start(t, Config{}, BootConfig{Kernel: guestKernel(t, "counter", nil)})
	if !r.con.waitFor("counting\n", r.done) {
		t.Fatalf("guest never started counting; console %q", r.con.String())
	}
	counter := func() uint32 {
		b, err := r.m.Memory().Slice(0x90000, 4)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
	waitAbove := func(v uint32) uint32 {
		deadline := time.Now().Add(guestTimeout)
		for time.Now().Before(deadline) {
			if c := counter(); c > v {
				return c
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("counter stuck at %d", v)
		return 0
	}
	waitAbove(0)
	for i := 0; i < 3; i++ {
		if err := r.m.Pause(); err != nil {
			t.Fatal(err)
		}
		if !r.m.Paused() {
			t.Fatal("Paused() = false after Pause")
		}
		// Pause returns only once every vCPU has left KVM_RUN and
		// parked before its next one, so the counter stands still.
		frozen := counter()
		waitParked(t, r.m, 1)
		if c := counter(); c != frozen {
			t.Fatalf("counter moved from %d to %d while paused", frozen, c)
		}
		if err := r.m.Resume(); err != nil {
			t.Fatal(err)
		}
		waitAbove(frozen)
	}
	r.cancel()
	if e := <-r.exit; e.Reason != exit.Stop {
		t.Fatalf("exit after cancel = %v, want stopped", e.Reason)
	}
	if err := r.m.Pause(); err == nil {
		t.Fatal("Pause of a stopped machine succeeded")
	}
}

func TestPowerButton(t *testing.T) {
	r := start(t, Config{}, BootConfig{Kernel: guestKernel(t, "pwrbtn", nil)})
	if !r.con.waitFor("armed\n", r.done) {
		t.Fatalf("guest never armed its power button handler; console %q", r.con.String())
	}
	if err := r.m.PowerButton(); err != nil {
		t.Fatal(err)
	}
	e := r.wait(t)
	if e.Reason != exit.PowerOff {
		t.Fatalf("exit = %v (%s), want poweroff", e.Reason, e.Detail)
	}
	if got, want := r.con.String(), "armed\nbutton\n"; got != want {
		t.Fatalf("console = %q, want %q", got, want)
	}
	if err := r.m.PowerButton(); err == nil {
		t.Fatal("PowerButton on a stopped machine succeeded")
	}
}
