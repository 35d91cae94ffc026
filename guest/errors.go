package guest

import (
	"fmt"

	"github.com/paddock-vm/paddock/guest/store"
)

// KindTemplate is the Kind of NotFoundError and ExistsError about a
// template; the empty Kind is about a VM.
const KindTemplate = "template"

// NotFoundError: there is no VM (or, with Kind KindTemplate, template)
// of that name.
type NotFoundError struct {
	Name string
	// Suggestion is the closest existing name, if one is close.
	Suggestion string
	Kind       string
}

func (e *NotFoundError) Error() string {
	what, list := "VM", "paddock ls lists them"
	if e.Kind == KindTemplate {
		what, list = "template", "paddock template ls lists them; paddock template build debian-12 makes one"
	}
	if e.Suggestion != "" {
		return fmt.Sprintf("no %s named '%s'; did you mean '%s'?", what, e.Name, e.Suggestion)
	}
	return fmt.Sprintf("no %s named '%s' (%s)", what, e.Name, list)
}

// ExistsError: a VM (or, with Kind KindTemplate, template) of that name
// exists already.
type ExistsError struct {
	Name string
	Kind string
}

func (e *ExistsError) Error() string {
	what, rm := "VM", "paddock rm"
	if e.Kind == KindTemplate {
		what, rm = "template", "paddock template rm"
	}
	return fmt.Sprintf("a %s named '%s' exists already: remove it (%s %s) or pick another name (--name)", what, e.Name, rm, e.Name)
}

// StateError: the VM's state does not allow the operation.
type StateError struct {
	Name  string
	Op    string      // what was asked: "start", "pause", ...
	State store.State // the VM's state, if known
	// Message, if set, is the whole message (from the VMM).
	Message string
	// Hint says what to do instead.
	Hint string
}

func (e *StateError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("cannot %s VM '%s': it is %s", e.Op, e.Name, e.State)
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// BusyError: another paddock command holds the VM's lock.
type BusyError struct{ Name string }

func (e *BusyError) Error() string {
	return fmt.Sprintf("VM '%s' is busy: another paddock command is changing it; try again when it is done", e.Name)
}

// StartError: the VMM could not start the guest. The VM keeps the state
// it had.
type StartError struct {
	Name string
	Err  error
	// Log is the end of the VMM's own log, when it died without saying
	// why.
	Log []string
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("start VM '%s': %v", e.Name, e.Err)
	for _, l := range e.Log {
		msg += "\n  " + l
	}
	return msg
}

func (e *StartError) Unwrap() error { return e.Err }
