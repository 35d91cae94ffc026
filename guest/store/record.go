package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

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
func (v *VM) ReadRecord() (Record, error) {
	data, err := os.ReadFile(v.Path(RecordFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Record{Version: RecordVersion, Phase: PhaseCreated}, nil
		}
		return Record{}, fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	return ParseRecord(data, v.Path(RecordFile))
}

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
