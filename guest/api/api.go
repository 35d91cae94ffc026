// Package api is the control API of a paddock VMM: HTTP/1.1 with JSON
// bodies over the unix socket in the VM's directory (ctl.sock). The VMM
// serves it (Server, over a Controller); the CLI is a Client. Every path
// names the VM, /v1/vms/NAME/..., so a client that reached the wrong
// socket gets a clear not_found instead of acting on another VM. Errors
// are JSON objects {"error": "...", "code": "..."} with a matching HTTP
// status. docs/vmm-api.md documents the API for other clients.
package api

import (
	"fmt"
	"net/http"
	"time"
)

// Version is the API version, the first element of every path.
const Version = "v1"

// UpgradeProtocol is the Upgrade header value of a console attachment.
const UpgradeProtocol = "paddock-console"

// Error codes.
const (
	CodeNotFound       = "not_found"   // no such VM (or endpoint) here
	CodeWrongState     = "wrong_state" // not possible in the VM's state
	CodeBadRequest     = "bad_request" // malformed request
	CodeMethod         = "method_not_allowed"
	CodeNotImplemented = "not_implemented" // an endpoint this VMM does not serve
	CodeExists         = "exists"          // a snapshot of that name exists
	CodeInternal       = "internal"        // the VMM failed
)

// Error is an API error: the JSON body of every non-2xx response, and the
// error Client methods return for one.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the HTTP status that suits code.
func Errorf(code, format string, args ...any) *Error {
	status := http.StatusInternalServerError
	switch code {
	case CodeNotFound:
		status = http.StatusNotFound
	case CodeWrongState, CodeExists:
		status = http.StatusConflict
	case CodeBadRequest:
		status = http.StatusBadRequest
	case CodeMethod:
		status = http.StatusMethodNotAllowed
	case CodeNotImplemented:
		status = http.StatusNotImplemented
	}
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Status is what GET /v1/vms/NAME returns, and pause and resume too.
type Status struct {
	Name string `json:"name"`
	// State is starting, running, paused, stopping or restarting.
	State     string    `json:"state"`
	PID       int       `json:"pid"`
	RunID     string    `json:"run_id"`
	StartedAt time.Time `json:"started_at"`         // the VMM's start
	BootedAt  time.Time `json:"booted_at,omitzero"` // the current boot
	Boots     int       `json:"boots"`              // machines booted
	Restarts  int       `json:"restarts"`           // automatic restarts
	CPUs      int       `json:"cpus"`
	Memory    uint64    `json:"memory"`                  // bytes
	Protocol  string    `json:"boot_protocol,omitempty"` // how the kernel booted
	// ConsoleClients counts attached consoles and followed logs.
	ConsoleClients int `json:"console_clients"`
}

// ShutdownRequest is the body of POST .../shutdown.
type ShutdownRequest struct {
	// Timeout is how long the guest has to power off after the ACPI
	// power button, as a Go duration ("30s"); then it is forced off.
	// Empty means DefaultShutdownTimeout.
	Timeout string `json:"timeout,omitempty"`
}

// DefaultShutdownTimeout is a shutdown's timeout when the request gives
// none.
const DefaultShutdownTimeout = 30 * time.Second

// MaxShutdownTimeout bounds a shutdown's timeout.
const MaxShutdownTimeout = 24 * time.Hour

// StopResult is what shutdown and kill return once the guest stopped.
type StopResult struct {
	// How: "acpi" (the guest powered off after the power button),
	// "forced" (it did not within the timeout), "killed" (kill), or
	// "cancelled" (the VM was waiting to restart).
	How     string  `json:"how"`
	Elapsed float64 `json:"elapsed_seconds"`
}

// Stop outcomes (StopResult.How).
const (
	StopACPI      = "acpi"
	StopForced    = "forced"
	StopKilled    = "killed"
	StopCancelled = "cancelled"
)

// SnapshotRequest is the body of POST .../snapshot.
type SnapshotRequest struct {
	// Name names the snapshot (store.ValidSnapshotName); required.
	Name string `json:"name"`
	// Stop ends the VM once the snapshot is taken, instead of letting it
	// run on (or stay paused).
	Stop bool `json:"stop,omitempty"`
}

// SnapshotResult is what POST .../snapshot returns once the snapshot is
// complete on disk.
type SnapshotResult struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// VMState is running or paused: what the VM was doing at the
	// snapshot.
	VMState string `json:"vm_state"`
	// Memory is the guest's RAM and MemoryWritten the bytes of it the
	// memory file holds (the rest are holes), in bytes.
	Memory        uint64 `json:"memory"`
	MemoryWritten int64  `json:"memory_written"`
	// Disks lists the disks with an internal qcow2 snapshot ("disks[0]").
	Disks []string `json:"disks"`
	// Paused is how long the guest was held for the snapshot, in
	// seconds.
	Paused float64 `json:"paused_seconds"`
	// Stopped says the VM was stopped after the snapshot (Stop).
	Stopped bool `json:"stopped,omitempty"`
}

// SnapshotDeleteRequest is the body of POST .../snapshot/delete: the
// running VMM deletes the internal snapshots of that name from the disks
// it holds open.
type SnapshotDeleteRequest struct {
	Name string `json:"name"`
}

// vmPath returns the path of op on VM name ("" for the VM itself).
func vmPath(name, op string) string {
	p := "/" + Version + "/vms/" + name
	if op != "" {
		p += "/" + op
	}
	return p
}
