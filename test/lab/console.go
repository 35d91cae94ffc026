package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// MarkerPrefix starts every structured line the harness parses.
const MarkerPrefix = "@@LAB "

// Limits on what a (guest-controlled) console line may carry.
const (
	maxLineLen   = 16 << 10
	maxKeyLen    = 64
	maxValueLen  = 4 << 10
	maxLines     = 200000 // transcript lines kept; later ones are counted
	maxMarkers   = 100000
	defaultGrace = 30 * time.Second
)

// Source tells where a transcript line came from.
type Source int

const (
	// Console is L1's serial console (which carries L2's console too).
	Console Source = iota
	// QEMUStderr is the L1 QEMU process's standard error.
	QEMUStderr
	// Harness is a note the host harness added (timeouts, kills).
	Harness
	// Heartbeat is L1's heartbeat, on a serial port of its own.
	Heartbeat
)

// Line is one transcript line.
type Line struct {
	At     time.Duration // host time since QEMU's start
	Source Source
	Text   string
}

func (l Line) String() string {
	tag := ""
	switch l.Source {
	case QEMUStderr:
		tag = "qemu: "
	case Harness:
		tag = "lab: "
	case Heartbeat:
		tag = "hb: "
	}
	return fmt.Sprintf("[%8.3f] %s%s", l.At.Seconds(), tag, l.Text)
}

// Marker is one "@@LAB key value" line.
type Marker struct {
	Key   string
	Value string
	// At is the host time since QEMU's start when the line arrived.
	At time.Duration
	// Step is the step running when it arrived ("" outside steps).
	Step string
}

// Fields splits the marker's value on white space.
func (m Marker) Fields() []string { return strings.Fields(m.Value) }

// Float parses the marker's first field as a number (e.g. an uptime).
func (m Marker) Float() (float64, error) {
	f := m.Fields()
	if len(f) == 0 {
		return 0, fmt.Errorf("lab: marker %s has no value", m.Key)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("lab: marker %s value %q: %w", m.Key, m.Value, err)
	}
	return v, nil
}

// CleanLine removes what a serial console adds around text: carriage
// returns, ANSI escape sequences and other control characters.
func CleanLine(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b: // ESC: skip a CSI sequence or a two-byte escape
			if i+1 < len(s) && s[i+1] == '[' {
				i += 2
				for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
					i++
				}
			} else {
				i++
			}
		case c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ParseMarker parses a cleaned console line. A marker starts the line
// (leading spaces allowed): "@@LAB key value...". Keys are
// [A-Za-z0-9._/-]+ of at most 64 bytes; the value is the rest, trimmed.
func ParseMarker(line string) (key, value string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimLeft(line, " "), MarkerPrefix)
	if !found {
		return "", "", false
	}
	key, value, _ = strings.Cut(strings.TrimLeft(rest, " "), " ")
	if key == "" || len(key) > maxKeyLen {
		return "", "", false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return "", "", false
		}
	}
	value = strings.TrimSpace(value)
	if len(value) > maxValueLen {
		value = value[:maxValueLen]
	}
	return key, value, true
}

// readLines reads r line by line and sends each line (without its
// newline; over-long lines are split) to out, stamped with now(). It
// returns at EOF or on a read error.
func readLines(r io.Reader, src Source, now func() time.Duration, out chan<- Line) error {
	br := bufio.NewReaderSize(r, maxLineLen)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			out <- Line{At: now(), Source: src, Text: strings.TrimRight(string(b), "\r\n")}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}

// errStepTimeout and friends are wrapped by Run's errors.
var (
	// ErrTimeout is wrapped when the run, a step or L1's boot took too long.
	ErrTimeout = errors.New("timed out")
	// ErrIncomplete is wrapped when L1 exited without finishing its steps.
	ErrIncomplete = errors.New("L1 exited before finishing its steps")
	// ErrFrozen is wrapped when L1's console fell silent, heartbeat
	// included, for Options.FreezeTimeout: the emulated machine stopped.
	ErrFrozen = errors.New("L1 froze")
)

// monitor turns console lines into a Result and decides when the run has
// taken too long. It is driven by one goroutine (Run's loop).
type monitor struct {
	res      *Result
	steps    map[string]time.Duration // step name -> timeout
	boot     time.Duration            // deadline for l1.ready, from the start
	grace    time.Duration            // host slack on top of a step timeout
	current  *StepResult
	ready    bool
	done     bool
	dropped  int
	deadline time.Duration // host time by which the next event must come
	why      string        // what the deadline is for
	echo     func(Line)
}

func newMonitor(steps []Step, boot time.Duration, echo func(Line)) *monitor {
	m := &monitor{res: &Result{}, steps: map[string]time.Duration{}, boot: boot, grace: defaultGrace, echo: echo}
	for _, s := range steps {
		m.steps[s.Name] = s.Timeout
		m.res.Steps = append(m.res.Steps, StepResult{Name: s.Name, L2Shutdowns: -1})
	}
	m.deadline, m.why = boot, "L1 to boot and load kvm-amd (l1.ready)"
	return m
}

// note adds a harness line to the transcript.
func (m *monitor) note(at time.Duration, format string, args ...any) {
	m.line(Line{At: at, Source: Harness, Text: fmt.Sprintf(format, args...)})
}

// line records one transcript line and acts on a marker.
func (m *monitor) line(l Line) {
	if m.echo != nil {
		m.echo(l)
	}
	if len(m.res.Lines) < maxLines {
		m.res.Lines = append(m.res.Lines, l)
	} else {
		m.dropped++
	}
	if l.Source != Console {
		return
	}
	key, value, ok := ParseMarker(CleanLine(l.Text))
	if !ok {
		return
	}
	mk := Marker{Key: key, Value: value, At: l.At}
	if m.current != nil {
		mk.Step = m.current.Name
	}
	if len(m.res.Markers) < maxMarkers {
		m.res.Markers = append(m.res.Markers, mk)
	}
	m.marker(mk)
}

// marker updates step state and the deadline. Step names come from the
// console (the guest can print anything): unknown names are ignored.
func (m *monitor) marker(mk Marker) {
	f := mk.Fields()
	switch mk.Key {
	case "l1.ready":
		m.ready = true
		m.deadline, m.why = 0, ""
	case "step.begin":
		if len(f) < 1 {
			return
		}
		if st, ok := m.res.Step(f[0]); ok && m.current == nil {
			m.current = st
			st.Begin = mk.At
			m.deadline = mk.At + m.steps[st.Name] + m.grace
			m.why = "step " + st.Name
		}
	case "step.timeout":
		if m.current != nil && len(f) >= 1 && f[0] == m.current.Name {
			m.current.TimedOut = true
		}
	case "step.l2-shutdowns":
		if m.current != nil && len(f) >= 2 && f[0] == m.current.Name {
			if n, err := strconv.Atoi(f[1]); err == nil && n >= 0 {
				m.current.L2Shutdowns = n
			}
		}
	case "step.end":
		if m.current == nil || len(f) < 2 || f[0] != m.current.Name {
			return
		}
		rc, err := strconv.Atoi(f[1])
		if err != nil {
			rc = -1
		}
		m.current.Done, m.current.RC, m.current.End = true, rc, mk.At
		m.current = nil
		m.deadline, m.why = 0, ""
	case "l1.done":
		m.done = true
	default:
		if m.current != nil {
			m.current.Markers = append(m.current.Markers, mk)
		}
	}
}

// expired reports whether the current deadline has passed at now, and
// describes it.
func (m *monitor) expired(now time.Duration) (string, bool) {
	if m.deadline == 0 || now < m.deadline {
		return "", false
	}
	return m.why, true
}

// finish completes the result after QEMU exited (exitOK: status 0) and
// returns the run's error, if any.
func (m *monitor) finish(elapsed time.Duration, exitOK bool) error {
	m.res.Elapsed = elapsed
	if m.dropped > 0 {
		m.note(elapsed, "%d transcript lines beyond the first %d were dropped", m.dropped, maxLines)
	}
	allDone := true
	for _, s := range m.res.Steps {
		allDone = allDone && s.Done
	}
	m.res.ExitOK = exitOK && m.done && allDone
	if !m.done || !allDone {
		where := "during boot"
		if m.current != nil {
			where = "in step " + m.current.Name
		} else if m.ready {
			where = "between steps"
		}
		return fmt.Errorf("lab: %w (%s)", ErrIncomplete, where)
	}
	return nil
}
