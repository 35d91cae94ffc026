package lab

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// Scenario is what one boot of the L1 VM runs: its steps, in order, each a
// shell script run by L1's /init with a watchdog. Several tests can share
// one L1 boot by putting their steps in one Scenario.
type Scenario struct {
	// Script is shorthand for a single step named "main".
	Script string
	// Steps run in order after Script's step (if any).
	Steps []Step
	// Files are added to L1's file system, keyed by absolute L1 path.
	Files map[string]File
	// WithQEMU adds QEMU (binary, libraries, firmware) to L1, as the peer
	// VMM: `qemu-system-x86_64` is on PATH there.
	WithQEMU bool
	// WithPaddock adds the static paddock binary built from this module
	// as /usr/local/bin/paddock.
	WithPaddock bool
	// WithVmlinux adds the guest kernel's ELF vmlinux as /guest/vmlinux
	// (PVH boot); the bzImage and the hello initrd are always there.
	WithVmlinux bool
	// Timeout bounds the whole L1 run; zero means the boot timeout plus
	// every step's timeout plus a minute.
	Timeout time.Duration
	// MemoryMiB, if set, is L1's RAM in MiB for this scenario instead of
	// the lab's (Machine.MemoryMiB).
	MemoryMiB int
	// Attempts, if set, is how many times Run boots L1 for this scenario
	// instead of the lab's (Options.Attempts): for a long scenario whose
	// L1 the emulator fails more often than a short one's.
	Attempts int
	// Quiet stops L1's /init from printing its own markers (l1.*, step.*)
	// (for the interactive demo); the host then cannot track steps.
	Quiet bool
	// heartbeat is the L1 device its /init writes the heartbeat to; ""
	// is the console. Run gives it a serial port of its own (see
	// heartbeatPort).
	heartbeat string
}

// Step is one shell script run in L1.
type Step struct {
	// Name identifies the step in markers and results: [A-Za-z0-9._/-]+.
	Name string
	// Script is the sh source, run as `sh SCRIPT` in a new session with
	// stdin from /dev/null (unless Interactive).
	Script string
	// Timeout is enforced in L1 (the step's process group is killed and
	// the run goes on) and, with some grace, by the host (the whole L1 VM
	// is killed). Zero means DefaultStepTimeout.
	Timeout time.Duration
	// Interactive runs the step on the console as its controlling terminal
	// (stdin included), without an L1 watchdog.
	Interactive bool
	// RetryFaults puts a triple fault of a guest in L1 during this step
	// (StepResult.L2Shutdowns), and the step's timing out, down to the
	// emulated AMD-V, which makes healthy guests triple-fault, or stall
	// inside L1's KVM, now and then (docs/lab.md): Run then boots L1
	// again for the whole scenario, within its attempts, and says why
	// (Result.Froze). For a step none of whose guests may triple-fault or
	// hang, and that does not start its guests again itself.
	RetryFaults bool
}

// DefaultStepTimeout is a step's timeout when it sets none.
const DefaultStepTimeout = 5 * time.Minute

// File is a file to put in L1: Data, the host file Source, or a symlink
// to Link.
type File struct {
	Data   []byte
	Source string
	Link   string
	// Mode defaults to 0644 (0755 for scripts ending in .sh).
	Mode fs.FileMode
}

var stepName = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)

// steps returns the scenario's steps with defaults applied, validated.
func (s *Scenario) steps() ([]Step, error) {
	var steps []Step
	if s.Script != "" {
		steps = append(steps, Step{Name: "main", Script: s.Script})
	}
	steps = append(steps, s.Steps...)
	if len(steps) == 0 {
		return nil, fmt.Errorf("lab: scenario has no steps (set Script or Steps)")
	}
	seen := map[string]bool{}
	for i := range steps {
		st := &steps[i]
		if !stepName.MatchString(st.Name) {
			return nil, fmt.Errorf("lab: step %d: name %q: want [A-Za-z0-9._/-]+", i, st.Name)
		}
		if seen[st.Name] {
			return nil, fmt.Errorf("lab: step name %q used twice", st.Name)
		}
		seen[st.Name] = true
		if st.Timeout == 0 {
			st.Timeout = DefaultStepTimeout
		}
		if st.Timeout < time.Second {
			return nil, fmt.Errorf("lab: step %s: timeout %v is below the 1s resolution of L1's watchdog", st.Name, st.Timeout)
		}
	}
	for p := range s.Files {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return nil, fmt.Errorf("lab: file %q: want a clean absolute L1 path", p)
		}
		if p == "/init" || strings.HasPrefix(p, "/lab/") {
			return nil, fmt.Errorf("lab: file %q: /init and /lab/ belong to the harness", p)
		}
	}
	return steps, nil
}

// timeout returns the run's overall timeout.
func (s *Scenario) timeout(boot time.Duration, steps []Step) time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	t := boot + time.Minute
	for _, st := range steps {
		t += st.Timeout
	}
	return t
}

// Result is what one L1 run produced.
type Result struct {
	// Markers are all "@@LAB key value" lines, in order of arrival.
	Markers []Marker
	// Lines is the whole transcript: the serial console and QEMU's stderr.
	Lines []Line
	// Steps are the scenario's steps as L1 reported them.
	Steps []StepResult
	// ExitOK is true when L1 ran every step, printed l1.done and QEMU
	// exited with status 0.
	ExitOK bool
	// Elapsed is the run's host wall time, from QEMU's start to its exit.
	Elapsed time.Duration
	// QEMUPid is the L1 QEMU's process id (gone when Run returns).
	QEMUPid int
	// Froze lists earlier attempts of this scenario whose L1 froze or
	// reset silently, or in which a step with RetryFaults faulted, and
	// which were booted again (see Options.Attempts).
	Froze []string
}

// StepResult is one step of a run.
type StepResult struct {
	Name string
	// Done is true when L1 reported the step's end; RC is then the
	// script's exit status (137 when its watchdog killed it).
	Done     bool
	RC       int
	TimedOut bool
	// L2Shutdowns counts the shutdowns (triple faults) of guests of VMMs
	// in L1 during the step; -1 when L1 could not count them, or the
	// step did not end (killed by the host, or L1 died). The
	// emulated AMD-V makes healthy guests triple-fault now and then
	// (docs/lab.md): a failed test with one to account for says so.
	L2Shutdowns int
	// Begin and End are host times since QEMU's start.
	Begin, End time.Duration
	// Markers are the markers printed while the step ran (by the step's
	// script or by a nested L2 guest), excluding step.begin/step.end.
	Markers []Marker
}

// Marker returns the first marker with the given key.
func (r *Result) Marker(key string) (Marker, bool) { return firstMarker(r.Markers, key) }

// MarkersWithKey returns every marker with the given key, in order.
func (r *Result) MarkersWithKey(key string) []Marker { return allMarkers(r.Markers, key) }

// Step returns the named step's result.
func (r *Result) Step(name string) (*StepResult, bool) {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i], true
		}
	}
	return nil, false
}

// Marker returns the step's first marker with the given key.
func (s *StepResult) Marker(key string) (Marker, bool) { return firstMarker(s.Markers, key) }

// Between returns the host time from the step's first marker `from` to
// its first marker `to` (e.g. "vmm.exec" to "l2.init": a boot to /init).
func (s *StepResult) Between(from, to string) (time.Duration, error) {
	a, ok := s.Marker(from)
	if !ok {
		return 0, fmt.Errorf("lab: step %s has no %s marker", s.Name, from)
	}
	b, ok := s.Marker(to)
	if !ok {
		return 0, fmt.Errorf("lab: step %s has no %s marker", s.Name, to)
	}
	return b.At - a.At, nil
}

func firstMarker(ms []Marker, key string) (Marker, bool) {
	for _, m := range ms {
		if m.Key == key {
			return m, true
		}
	}
	return Marker{}, false
}

func allMarkers(ms []Marker, key string) []Marker {
	var out []Marker
	for _, m := range ms {
		if m.Key == key {
			out = append(out, m)
		}
	}
	return out
}

// Transcript returns the run's transcript, one "[seconds] text" line per
// console line (QEMU's stderr lines are tagged "qemu:").
func (r *Result) Transcript() string {
	var b strings.Builder
	for _, l := range r.Lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Tail returns the last n transcript lines.
func (r *Result) Tail(n int) string {
	lines := r.Lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// panicMarks are the kernel messages that begin a panic or oops report.
var panicMarks = []string{"Kernel panic - not syncing", "BUG: ", "Oops: ", "general protection fault"}

// Panic returns the first kernel panic or oops message in the transcript with
// the two lines before it (they usually say what triggered it), or "" if
// there is none.
func (r *Result) Panic() string {
	for i, l := range r.Lines {
		for _, mark := range panicMarks {
			if !strings.Contains(l.Text, mark) {
				continue
			}
			var b strings.Builder
			for _, p := range r.Lines[max(0, i-2) : i+1] {
				b.WriteString(p.String())
				b.WriteByte('\n')
			}
			return b.String()
		}
	}
	return ""
}

// WriteTranscript writes the transcript to path.
func (r *Result) WriteTranscript(path string) error {
	if err := os.WriteFile(path, []byte(r.Transcript()), 0o644); err != nil {
		return fmt.Errorf("lab: write transcript: %w", err)
	}
	return nil
}

// machine is the L1 machine m with the scenario's own RAM size, if it
// sets one.
func (s *Scenario) machine(m Machine) Machine {
	if s.MemoryMiB != 0 {
		m.MemoryMiB = s.MemoryMiB
	}
	return m
}
