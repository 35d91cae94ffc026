package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// RecordVersion is the version of state.json this code writes. A newer
// file is refused with a clear message rather than misread.
const RecordVersion = 1

// Phase is where a VMM's run is, as the VMM records it.
type Phase string

// Phases.
const (
	// PhaseCreated: no VMM has run the VM yet.
	PhaseCreated Phase = "created"
	// PhaseStarting: the VMM is building the machine.
	PhaseStarting Phase = "starting"
	// PhaseRunning: the guest runs.
	PhaseRunning Phase = "running"
	// PhasePaused: the guest's vCPUs are stopped (paddock pause).
	PhasePaused Phase = "paused"
	// PhaseStopping: paddock stop or kill is ending the VM.
	PhaseStopping Phase = "stopping"
	// PhaseRestarting: the guest ended and the VMM waits to boot it again
	// (restart policy).
	PhaseRestarting Phase = "restarting"
	// PhaseExited: the VMM's run ended; Exit says how.
	PhaseExited Phase = "exited"
)

// Exit is how a VMM's run ended.
type Exit struct {
	Reason exit.Reason `json:"reason"`
	// How, for exit.Stop: "acpi" (the guest shut down after the power
	// button) or "forced" (it did not within the timeout).
	How string `json:"how,omitempty"`
	// Detail explains a crash: KVM's report, or why the VMM died.
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
	// ConsoleTail and VMMLogTail are the last lines of the console and of
	// the VMM's own log, kept for crashes.
	ConsoleTail []string `json:"console_tail,omitempty"`
	VMMLogTail  []string `json:"vmm_log_tail,omitempty"`
}

// Record is state.json: what the VMM reported about its run. It is
// trusted only together with the run lock (Derive).
type Record struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Source is the YAML file the VM was created from, if any.
	Source string `json:"source,omitempty"`

	// RunID identifies the VMM run the fields below describe; empty when
	// the VM never started.
	RunID     string    `json:"run_id,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Phase     Phase     `json:"phase"`
	StartedAt time.Time `json:"started_at,omitzero"` // the VMM's start
	BootedAt  time.Time `json:"booted_at,omitzero"`  // the latest machine boot
	Boots     int       `json:"boots,omitempty"`     // machines booted in this run
	Restarts  int       `json:"restarts,omitempty"`  // automatic restarts in this run
	// Exit is how the latest run that booted ended (kept across failed
	// starts); nil if none ended yet.
	Exit *Exit `json:"exit,omitempty"`
	// StartError is why the latest start failed before the guest booted,
	// if it did; cleared by the next successful start.
	StartError string `json:"start_error,omitempty"`
}

// ErrRecordVersion: state.json was written by a newer paddock.
var ErrRecordVersion = errors.New("written by a newer paddock")

func (r Record) marshal() ([]byte, error) {
	r.Version = RecordVersion
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encode record: %w", err)
	}
	return append(data, '\n'), nil
}

// ReadRecord reads the VM's state.json. A missing file reads as a record
// of a created VM.
//
// A jailed VMM owns state.json: it is opened following no link, must be
// a regular file, and is read up to maxRecord bytes; one that is not so
// is a damaged record (*RecordError), which the next VMM replaces.
func (v *VM) ReadRecord() (Record, error) {
	path := v.Path(RecordFile)
	f, err := openRegularAt(unix.AT_FDCWD, path, path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{Version: RecordVersion, Phase: PhaseCreated}, nil
	}
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return Record{}, fmt.Errorf("store: VM %s: %w", v.Name, pe)
	case err != nil: // a link, a FIFO
		return Record{}, &RecordError{Path: path, Err: errors.New("not a regular file; paddock does not read it")}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return Record{}, fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	if len(data) > maxRecord {
		return Record{}, &RecordError{Path: path, Err: fmt.Errorf("larger than %d bytes", maxRecord)}
	}
	return ParseRecord(data, path)
}

// maxRecord caps what ReadRecord reads of state.json.
const maxRecord = 16 << 20

// RecordError is a state.json that cannot be used: damaged, or written
// by a newer paddock (then it wraps ErrRecordVersion).
type RecordError struct {
	Path string
	Err  error
}

func (e *RecordError) Error() string { return "store: " + e.Path + ": " + e.Err.Error() }
func (e *RecordError) Unwrap() error { return e.Err }

// ParseRecord decodes state.json content; path names it in errors, which
// are *RecordError.
func ParseRecord(data []byte, path string) (Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, &RecordError{Path: path, Err: err}
	}
	if r.Version > RecordVersion {
		return Record{}, &RecordError{Path: path, Err: fmt.Errorf("version %d %w (this one reads version %d)", r.Version, ErrRecordVersion, RecordVersion)}
	}
	switch r.Phase {
	case PhaseCreated, PhaseStarting, PhaseRunning, PhasePaused, PhaseStopping, PhaseRestarting, PhaseExited:
	case "":
		r.Phase = PhaseCreated
	default:
		return Record{}, &RecordError{Path: path, Err: fmt.Errorf("unknown phase %q", r.Phase)}
	}
	return r, nil
}

// WriteRecord replaces the VM's state.json atomically.
func (v *VM) WriteRecord(r Record) error {
	data, err := r.marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(v.Path(RecordFile), data, 0o600)
}
