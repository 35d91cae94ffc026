package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/images/cpio"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/internal/testguest"
)

func TestParseMarker(t *testing.T) {
	tests := []struct {
		line, key, value string
		ok               bool
	}{
		{"@@LAB l1.init 1.23", "l1.init", "1.23", true},
		{"@@LAB step.end qemu/pvh 0", "step.end", "qemu/pvh 0", true},
		{"  @@LAB   key   spaced value  ", "key", "spaced value", true},
		{"@@LAB novalue", "novalue", "", true},
		{"@@LAB l2.cmdline console=ttyS0 paddock.script=facts", "l2.cmdline", "console=ttyS0 paddock.script=facts", true},
		{"@@LAB", "", "", false},
		{"@@LAB ", "", "", false},
		{"@@LABkey value", "", "", false},
		{"echo @@LAB key value", "", "", false},
		{"@@LAB bad$key value", "", "", false},
		{"@@LAB " + strings.Repeat("k", 65) + " v", "", "", false},
		{"[    1.234] @@LAB key v", "", "", false},
	}
	for _, tt := range tests {
		key, value, ok := ParseMarker(tt.line)
		if key != tt.key || value != tt.value || ok != tt.ok {
			t.Errorf("ParseMarker(%q) = %q, %q, %v; want %q, %q, %v", tt.line, key, value, ok, tt.key, tt.value, tt.ok)
		}
	}
	long := "@@LAB k " + strings.Repeat("v", 10000)
	if _, v, ok := ParseMarker(long); !ok || len(v) != maxValueLen {
		t.Errorf("long value: ok=%v len=%d, want truncation to %d", ok, len(v), maxValueLen)
	}
}

func TestCleanLine(t *testing.T) {
	tests := map[string]string{
		"@@LAB a b\r":                     "@@LAB a b",
		"\x1bc\x1b[?7l\x1b[2J@@LAB a b":   "@@LAB a b",
		"\x1b[0;32mgreen\x1b[0m text\r\r": "green text",
		"tab\there\x00\x07":               "tab here",
		"\x1b":                            "",
		"\x1b[":                           "",
	}
	for in, want := range tests {
		if got := CleanLine(in); got != want {
			t.Errorf("CleanLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadLines(t *testing.T) {
	input := "one\r\ntwo\n" + strings.Repeat("x", maxLineLen+10) + "\nlast without newline"
	out := make(chan Line, 100)
	at := time.Duration(0)
	now := func() time.Duration { at += time.Millisecond; return at }
	if err := readLines(strings.NewReader(input), QEMUStderr, now, out); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []Line
	for l := range out {
		got = append(got, l)
	}
	if len(got) != 5 {
		t.Fatalf("%d lines, want 5 (the long one split in two)", len(got))
	}
	if got[0].Text != "one" || got[1].Text != "two" || len(got[2].Text) != maxLineLen || got[3].Text != "xxxxxxxxxx" || got[4].Text != "last without newline" {
		t.Errorf("lines %q", []string{got[0].Text, got[1].Text, got[3].Text, got[4].Text})
	}
	if got[0].Source != QEMUStderr || got[0].At != time.Millisecond || got[4].At != 5*time.Millisecond {
		t.Errorf("stamps: %+v %+v", got[0], got[4])
	}
}

// feed drives a monitor with console lines one second apart.
func feed(m *monitor, lines ...string) {
	for i, l := range lines {
		m.line(Line{At: time.Duration(i+1) * time.Second, Source: Console, Text: l})
	}
}

func TestMonitorSteps(t *testing.T) {
	steps := []Step{{Name: "a", Timeout: 10 * time.Second}, {Name: "qemu/pvh", Timeout: time.Minute}}
	m := newMonitor(steps, time.Minute, nil)
	if why, exp := m.expired(61 * time.Second); !exp || !strings.Contains(why, "l1.ready") {
		t.Errorf("boot deadline: %q %v", why, exp)
	}
	feed(m,
		"@@LAB l1.init 0.5",
		"@@LAB l1.ready 1.0",
		"noise @@LAB not.a.marker",
		"@@LAB step.begin a",
		"@@LAB a.value 42",
		"@@LAB step.end nosuch 3", // a guest can print anything: ignored
		"@@LAB step.l2-shutdowns nosuch 5",
		"@@LAB step.l2-shutdowns a 2",
		"@@LAB step.end a 0",
		"@@LAB step.begin qemu/pvh",
		"@@LAB vmm.exec qemu pvh 1.1",
		"\x1b[?7l@@LAB l2.init 0.9\r",
		"@@LAB step.timeout qemu/pvh 60",
		"@@LAB step.end qemu/pvh 137",
		"@@LAB l1.done 9.9",
	)
	if err := m.finish(16*time.Second, true); err != nil {
		t.Fatal(err)
	}
	r := m.res
	if !r.ExitOK || len(r.Markers) != 14 || len(r.Lines) != 15 {
		t.Fatalf("ExitOK=%v markers=%d lines=%d", r.ExitOK, len(r.Markers), len(r.Lines))
	}
	a, _ := r.Step("a")
	if !a.Done || a.RC != 0 || a.Begin != 4*time.Second || a.End != 9*time.Second || a.L2Shutdowns != 2 || len(a.Markers) != 1 || a.Markers[0].Value != "42" || a.Markers[0].Step != "a" {
		t.Errorf("step a: %+v", a)
	}
	p, _ := r.Step("qemu/pvh")
	if !p.Done || p.RC != 137 || !p.TimedOut || p.L2Shutdowns != -1 {
		t.Errorf("step qemu/pvh: %+v", p)
	}
	if d, err := p.Between("vmm.exec", "l2.init"); err != nil || d != time.Second {
		t.Errorf("Between = %v, %v; want 1s", d, err)
	}
	if _, err := p.Between("vmm.exec", "nosuch"); err == nil {
		t.Error("Between with a missing marker succeeded")
	}
	if mk, ok := r.Marker("l2.init"); !ok || mk.Step != "qemu/pvh" {
		t.Errorf("l2.init marker %+v", mk)
	} else if f, err := mk.Float(); err != nil || f != 0.9 {
		t.Errorf("Float = %v, %v", f, err)
	}
	if !strings.Contains(r.Transcript(), "[  12.000] \x1b[?7l@@LAB l2.init 0.9") {
		t.Errorf("transcript keeps raw lines with timestamps:\n%s", r.Transcript())
	}
	if tail := r.Tail(2); strings.Count(tail, "\n") != 2 || !strings.Contains(tail, "l1.done") {
		t.Errorf("Tail(2) = %q", tail)
	}
}

func TestResultPanic(t *testing.T) {
	r := &Result{}
	for _, text := range []string{"booting", "sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash", "CPU: 0 PID: 1", "Call Trace:"} {
		r.Lines = append(r.Lines, Line{Source: Console, Text: text})
	}
	p := r.Panic()
	if strings.Count(p, "\n") != 3 || !strings.Contains(p, "Trigger a crash") || !strings.Contains(p, "not syncing") || strings.Contains(p, "Call Trace") {
		t.Errorf("Panic() = %q", p)
	}
	if p := (&Result{Lines: r.Lines[:2]}).Panic(); p != "" {
		t.Errorf("Panic() without a panic = %q", p)
	}
}

// TestEmulatorFailure: which failed runs Run boots L1 again for. A freeze
// and a death without a panic are the emulator's; so is the stack
// overflow at error_entry it causes in the thread of an L2 vCPU (the
// lines of a CI run that died so). Any other panic, a failed step and a
// timeout are not.
func TestEmulatorFailure(t *testing.T) {
	withPanic := func(lines ...string) error {
		r := &Result{}
		for _, text := range lines {
			r.Lines = append(r.Lines, Line{Source: Console, Text: text})
		}
		return &RunError{Err: fmt.Errorf("%w in step warm", ErrIncomplete), Panic: r.Panic()}
	}
	guard := withPanic("@@LAB l1.hb 23.72",
		"[   26.434893] BUG: TASK stack guard page was hit at 00000000c2346bd4 (stack is 000000003406bc65..0000000097f88ba0)",
		"[   26.434893] stack guard page: 0000 [#1] PREEMPT SMP NOPTI",
		"[   26.451008] Kernel panic - not syncing: corrupted stack end detected inside scheduler")
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"frozen", &RunError{Err: fmt.Errorf("%w: no heartbeat", ErrFrozen)}, true},
		{"vanished", withPanic("@@LAB l1.hb 10"), true},
		{"stack guard", guard, true},
		{"sysrq crash", withPanic("sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash"), false},
		{"oops", withPanic("BUG: kernel NULL pointer dereference, address: 0000000000000000"), false},
		{"timeout", &RunError{Err: fmt.Errorf("%w: step warm", ErrTimeout)}, false},
		{"other", errors.New("qemu: cannot open the image"), false},
	} {
		if got := emulatorFailure(tt.err); got != tt.want {
			t.Errorf("%s: emulatorFailure = %v, want %v (%v)", tt.name, got, tt.want, tt.err)
		}
	}
}

// TestFaulted: a step with RetryFaults that timed out (by L1's watchdog,
// or by the host's deadline while it ran), or in which a guest
// triple-faulted, makes the run one to boot again, named with the step;
// the same in a step without RetryFaults, a step not counted (-1) or not
// in the result, or a host timeout in a step not begun or done, does not.
func TestFaulted(t *testing.T) {
	sc := Scenario{Steps: []Step{{Name: "a", RetryFaults: true}, {Name: "b", RetryFaults: true}, {Name: "c"}}}
	hostTimeout := &RunError{Err: fmt.Errorf("%w after 300s waiting for step b", ErrTimeout)}
	for _, tt := range []struct {
		name  string
		steps []StepResult
		err   error
		want  string
	}{
		{"clean", []StepResult{{Name: "a", Done: true}, {Name: "b", Done: true}, {Name: "c", Done: true}}, nil, ""},
		{"timed out", []StepResult{{Name: "a", TimedOut: true}, {Name: "b"}}, nil, "step a timed out"},
		{"triple faults", []StepResult{{Name: "a"}, {Name: "b", L2Shutdowns: 2}}, nil, "step b: 2 triple fault(s) of a guest in L1"},
		{"both", []StepResult{{Name: "a", L2Shutdowns: 1, TimedOut: true}, {Name: "b", TimedOut: true}}, nil,
			"step a: 1 triple fault(s) of a guest in L1; step a timed out; step b timed out"},
		{"the host's deadline", []StepResult{{Name: "a", Done: true, Begin: time.Second}, {Name: "b", Begin: 2 * time.Second, L2Shutdowns: -1}}, hostTimeout,
			"step b timed out, and the host ended L1"},
		{"the host's deadline before the step", []StepResult{{Name: "a", Done: true, Begin: time.Second}, {Name: "b", L2Shutdowns: -1}}, hostTimeout, ""},
		{"no deadline, a step cut short", []StepResult{{Name: "b", Begin: time.Second, L2Shutdowns: -1}}, nil, ""},
		{"not counted", []StepResult{{Name: "a", L2Shutdowns: -1}}, nil, ""},
		{"a step without RetryFaults", []StepResult{{Name: "c", TimedOut: true, L2Shutdowns: 3, Begin: time.Second}}, hostTimeout, ""},
		{"a step of another scenario", []StepResult{{Name: "d", TimedOut: true}}, nil, ""},
	} {
		if got := faulted(sc, &Result{Steps: tt.steps}, tt.err); got != tt.want {
			t.Errorf("%s: faulted = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMonitorDeadlines(t *testing.T) {
	m := newMonitor([]Step{{Name: "s", Timeout: 10 * time.Second}}, time.Minute, nil)
	m.grace = 5 * time.Second
	feed(m, "@@LAB l1.ready 1", "@@LAB step.begin s")
	if _, exp := m.expired(16 * time.Second); exp {
		t.Error("step deadline expired before timeout+grace")
	}
	if why, exp := m.expired(17 * time.Second); !exp || why != "step s" {
		t.Errorf("expired = %q %v, want step s", why, exp)
	}
	feed(m, "x", "y", "@@LAB step.end s 1")
	if _, exp := m.expired(time.Hour); exp {
		t.Error("deadline after the last step ended")
	}
}

func TestMonitorIncomplete(t *testing.T) {
	tests := []struct {
		lines []string
		want  string
	}{
		{nil, "during boot"},
		{[]string{"@@LAB l1.ready 1", "@@LAB step.begin s"}, "in step s"},
		{[]string{"@@LAB l1.ready 1", "@@LAB step.begin s", "@@LAB step.end s 0"}, "(between steps)"},
	}
	for _, tt := range tests {
		m := newMonitor([]Step{{Name: "s", Timeout: time.Minute}}, time.Minute, nil)
		feed(m, tt.lines...)
		err := m.finish(time.Minute, true)
		if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), tt.want) || m.res.ExitOK {
			t.Errorf("after %q: %v (ExitOK %v), want ErrIncomplete %s", tt.lines, err, m.res.ExitOK, tt.want)
		}
	}
}

func TestScenarioValidation(t *testing.T) {
	tests := []struct {
		sc   Scenario
		want string
	}{
		{Scenario{}, "no steps"},
		{Scenario{Steps: []Step{{Name: "a b"}}}, "name"},
		{Scenario{Steps: []Step{{Name: "a"}, {Name: "a"}}}, "used twice"},
		{Scenario{Steps: []Step{{Name: "a", Timeout: time.Millisecond}}}, "resolution"},
		{Scenario{Script: "x", Files: map[string]File{"rel/path": {}}}, "absolute"},
		{Scenario{Script: "x", Files: map[string]File{"/lab/config": {}}}, "harness"},
		{Scenario{Script: "x", Files: map[string]File{"/a/../b": {}}}, "clean"},
	}
	for _, tt := range tests {
		if _, err := tt.sc.steps(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.sc, err, tt.want)
		}
	}
	sc := Scenario{Script: "echo", Steps: []Step{{Name: "b", Timeout: time.Minute}}}
	steps, err := sc.steps()
	if err != nil || len(steps) != 2 || steps[0].Name != "main" || steps[0].Timeout != DefaultStepTimeout {
		t.Fatalf("steps = %+v, %v", steps, err)
	}
	if got, want := sc.timeout(time.Minute, steps), time.Minute+time.Minute+DefaultStepTimeout+time.Minute; got != want {
		t.Errorf("timeout = %v, want %v", got, want)
	}
}

// TestL1MemoryLimit: a scenario or lab asking for L1 RAM above 4 GiB's
// split is refused before anything is built or booted, naming the size;
// the largest allowed size and the default pass the check.
func TestL1MemoryLimit(t *testing.T) {
	l := NewLab(Options{})
	sc := Scenario{Script: "true", MemoryMiB: 4096}
	if _, err := l.Run(context.Background(), sc); err == nil || !strings.Contains(err.Error(), "L1 memory 4096 MiB") {
		t.Errorf("Run with 4096 MiB: %v, want the L1 memory refused", err)
	}
	if err := l.Attach(context.Background(), sc, AttachOptions{}); err == nil || !strings.Contains(err.Error(), "L1 memory 4096 MiB") {
		t.Errorf("Attach with 4096 MiB: %v, want the L1 memory refused", err)
	}
	for _, mib := range []int{0, MaxL1MemoryMiB} {
		sc.MemoryMiB = mib
		if err := sc.machine(l.opts.Machine).check(); err != nil {
			t.Errorf("%d MiB: %v", mib, err)
		}
	}
}

// TestNoteQEMULog: a failed run's transcript gets QEMU's log without
// its register dumps: a triple fault and a guest error, not the dumps of
// the boot's vCPU resets.
func TestNoteQEMULog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qemu.log")
	log := "CPU Reset (CPU 0)\nEAX=00000000 EBX=00000000\nES =0000 00000000\nXMM00=0 0\nFPR0=0 0\n" +
		"CPU Reset (CPU 1)\nR8 =0000000000000000\nCR0=00000000\n" +
		"invalid write to 0x1234\nTriple fault\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newMonitor(nil, time.Minute, nil)
	noteQEMULog(m, time.Second, path)
	got := m.res.Transcript()
	for _, want := range []string{"QEMU log: invalid write to 0x1234", "QEMU log: Triple fault"} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript %q lacks %q", got, want)
		}
	}
	for _, not := range []string{"EAX=", "R8 =", "CPU Reset", "XMM00", "CR0="} {
		if strings.Contains(got, not) {
			t.Errorf("transcript %q has the register dump's %q", got, not)
		}
	}
	noteQEMULog(m, time.Second, filepath.Join(t.TempDir(), "none")) // no log: nothing, no panic
}

// TestScenarioSegment checks the per-run cpio L1's /init reads.
func TestScenarioSegment(t *testing.T) {
	sc := Scenario{
		Steps: []Step{{Name: "first", Script: "echo 1", Timeout: 1500 * time.Millisecond}, {Name: "demo", Script: "sh", Interactive: true}},
		Files: map[string]File{"/guest/x.sh": {Data: []byte("#!/bin/sh")}, "/build/guest/vmlinuz": {Link: GuestVmlinuz}},
		Quiet: true,
	}
	steps, err := sc.steps()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := initramfs.Write(context.Background(), &buf, scenarioSpec(&sc, steps)); err != nil {
		t.Fatal(err)
	}
	entries, err := cpio.ReadAll(&buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*cpio.Header{}
	data := map[string]string{}
	for _, e := range entries {
		got[e.Name], data[e.Name] = &e.Header, string(e.Data)
	}
	if data["lab/steps.list"] != "001 first 2 0\n002 demo 300 1\n" {
		t.Errorf("steps.list = %q", data["lab/steps.list"])
	}
	if data["lab/config"] != "LAB_QUIET=1\nLAB_HEARTBEAT=\n" || data["lab/steps/001.sh"] != "echo 1" {
		t.Errorf("config %q, step 1 %q", data["lab/config"], data["lab/steps/001.sh"])
	}
	if h := got["guest/x.sh"]; h == nil || h.Mode != 0o755 {
		t.Errorf("guest/x.sh: %+v", h)
	}
	if h := got["build/guest/vmlinuz"]; h == nil || h.Linkname != GuestVmlinuz {
		t.Errorf("build/guest/vmlinuz: %+v", h)
	}
	if _, ok := got["init"]; ok {
		t.Error("the scenario segment must not replace /init")
	}
}

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n" +
		"\tlibmissing.so => not found\n"
	got := strings.Join(parseLdd(out), " ")
	if want := "/lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libz.so.1 /lib64/ld-linux-x86-64.so.2"; got != want {
		t.Errorf("parseLdd = %s, want %s", got, want)
	}
}

func TestShellJoin(t *testing.T) {
	got := ShellJoin([]string{"qemu", "-append", "console=ttyS0 quiet", "it's", ""})
	if want := `qemu -append 'console=ttyS0 quiet' 'it'\''s' ''`; got != want {
		t.Errorf("ShellJoin = %s, want %s", got, want)
	}
}

// TestPaddockYAML checks the VM description the harness writes for
// paddock against the configs package's own parser and validation.
func TestPaddockYAML(t *testing.T) {
	dir := t.TempDir()
	kernel := testguest.BzImage(t, dir, "vmlinux")
	initrd := filepath.Join(dir, "initrd.img")
	os.WriteFile(initrd, []byte("i"), 0o644)
	g := L2{Name: "pvh", Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 quiet paddock.script=boot", CPUs: 2}
	files := Paddock{}.Files(g)
	f, ok := files["/guest/pvh.yaml"]
	if !ok {
		t.Fatalf("files %v", files)
	}
	vm, err := configs.Parse(f.Data, "/guest/pvh.yaml")
	if err != nil {
		t.Fatalf("paddock rejects the harness's YAML:\n%s\n%v", f.Data, err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{}); err != nil {
		t.Fatalf("validate:\n%s\n%v", f.Data, err)
	}
	if vm.Name != "pvh" || vm.CPUs != 2 || uint64(vm.Memory) != 512<<20 || vm.Kernel != kernel || vm.Initrd != initrd || vm.Cmdline != g.Cmdline {
		t.Errorf("parsed %+v", vm)
	}
}

func TestBootScenario(t *testing.T) {
	sc, err := BootScenario([]VMM{QEMU{}, Paddock{}}, []L2{HelloL2(false, "boot"), HelloL2(true, "boot")}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sc.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "qemu/bzimage qemu/pvh paddock/bzimage paddock/pvh" {
		t.Errorf("steps %s", got)
	}
	if !sc.WithQEMU || !sc.WithPaddock || !sc.WithVmlinux {
		t.Errorf("needs not set: %+v", sc)
	}
	if _, ok := sc.Files["/guest/pvh.yaml"]; !ok {
		t.Error("paddock's YAML missing")
	}
	q := sc.Steps[1].Script
	for _, want := range []string{`@@LAB vmm.exec qemu pvh`, "exec qemu-system-x86_64", "-kernel /guest/vmlinux", "-initrd /guest/initrd.img", "-append 'console=ttyS0 quiet paddock.script=boot'", "-enable-kvm"} {
		if !strings.Contains(q, want) {
			t.Errorf("qemu step lacks %q:\n%s", want, q)
		}
	}
	if _, err := BootScenario([]VMM{QEMU{}}, []L2{{Name: "Bad Name"}}, time.Minute); err == nil {
		t.Error("bad guest name accepted")
	}
}

func FuzzParseMarker(f *testing.F) {
	f.Add("@@LAB step.end qemu/pvh 0")
	f.Add("\x1b[2J@@LAB l2.init 1.5\r")
	f.Fuzz(func(t *testing.T, line string) {
		key, value, ok := ParseMarker(CleanLine(line))
		if ok && (key == "" || len(key) > maxKeyLen || len(value) > maxValueLen) {
			t.Fatalf("accepted key %q value of %d bytes", key, len(value))
		}
	})
}

// FuzzMonitor feeds arbitrary console lines (what a guest controls) to the
// monitor: it must never panic, and finish must report.
func FuzzMonitor(f *testing.F) {
	f.Add("@@LAB l1.ready 1\n@@LAB step.begin s\n@@LAB step.end s 0\n@@LAB l1.done 2")
	f.Add("@@LAB step.end s x\n@@LAB step.begin\n@@LAB step.timeout")
	f.Fuzz(func(t *testing.T, text string) {
		m := newMonitor([]Step{{Name: "s", Timeout: time.Minute}}, time.Minute, nil)
		feed(m, strings.Split(text, "\n")...)
		m.expired(time.Hour)
		m.finish(time.Hour, true)
	})
}

func TestWatchWriterAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	seen := 0
	w := &watchWriter{w: &out, want: []byte("@@LAB l2.init"), seen: func() { seen++ }}
	for _, chunk := range []string{"boot noise @@L", "AB l2", ".in", "it 1.2\r\n", "@@LAB l2.init again"} {
		if seen != 0 && chunk == ".in" {
			t.Fatal("seen before the marker was complete")
		}
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if seen != 1 {
		t.Errorf("seen called %d times, want 1", seen)
	}
	if out.String() != "boot noise @@LAB l2.init 1.2\r\n@@LAB l2.init again" {
		t.Errorf("output altered: %q", out.String())
	}
}

func TestGatedInput(t *testing.T) {
	r, w := io.Pipe()
	g := &gatedInput{src: strings.NewReader("uname -a\n"), dst: w, open: make(chan struct{})}
	go g.copy()
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	select {
	case s := <-got:
		t.Fatalf("input %q delivered before release", s)
	default:
	}
	g.release()
	g.release() // idempotent
	if s := <-got; s != "uname -a\n" {
		t.Errorf("delivered %q", s)
	}
}

func TestFindFirmware(t *testing.T) {
	qemu, seabios := t.TempDir(), t.TempDir()
	write := func(dir, name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(qemu, "pvh.bin")
	write(seabios, "bios-microvm.bin")
	write(seabios, "pvh.bin") // shadowed by the earlier directory
	// QEMU 7.2's layout: a link from QEMU's directory into SeaBIOS's.
	if err := os.Symlink(filepath.Join(seabios, "bios-microvm.bin"), filepath.Join(qemu, "qboot.rom")); err != nil {
		t.Fatal(err)
	}
	got, err := findFirmware([]string{qemu, seabios}, []string{"bios-microvm.bin", "pvh.bin", "qboot.rom"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"bios-microvm.bin": filepath.Join(seabios, "bios-microvm.bin"),
		"pvh.bin":          filepath.Join(qemu, "pvh.bin"),
		"qboot.rom":        filepath.Join(seabios, "bios-microvm.bin"),
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("findFirmware[%s] = %q, want %q", name, got[name], w)
		}
	}
	_, err = findFirmware([]string{qemu, seabios}, []string{"pvh.bin", "kvmvapic.bin", "linuxboot_dma.bin"})
	if err == nil || !strings.Contains(err.Error(), "kvmvapic.bin, linuxboot_dma.bin not found in "+qemu+":"+seabios) {
		t.Errorf("missing firmware: err = %v", err)
	}
}
