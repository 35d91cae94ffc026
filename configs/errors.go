package configs

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxQuoted is how much of a user's value a message quotes.
const maxQuoted = 60

// quote returns s quoted for a message, cut after maxQuoted bytes: a
// message repeats a bad value, but not a megabyte of it.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// Error is one problem with a VM config, located in its file. It prints as
// `FILE:LINE:COL: FIELD: problem`; parts that are unknown are left out
// (YAML syntax errors have a line but no column and no field; a VM built in
// Go has no file).
type Error struct {
	File   string // the config file as the user named it; "" if none
	Line   int    // 1-based; 0 if unknown
	Column int    // 1-based; 0 if unknown
	Field  string // field path such as "console.mode"; "" for syntax errors
	Err    error  // the problem
}

// Error formats the problem as `FILE:LINE:COL: FIELD: problem`.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem, so errors.Is(err, fs.ErrNotExist)
// works for a missing kernel.
func (e *Error) Unwrap() error { return e.Err }

// Problems flattens an error from Load, Parse or Validate into its
// individual problems, in order. Errors that are not *Error (there should be
// none) become an *Error with only Err set.
func Problems(err error) []*Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		return []*Error{e}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, sub := range j.Unwrap() {
			out = append(out, Problems(sub)...)
		}
		return out
	}
	return []*Error{{Err: err}}
}

// pos is a 1-based line and column in the YAML file.
type pos struct{ line, col int }

// source records where a VM's fields were written, and what decoding
// found wrong with them.
type source struct {
	file   string         // name for messages
	root   pos            // the top-level mapping, for fields that were not written
	fields map[string]pos // field path -> position of its value
	// problems are decoding's; Validate reports them with its own.
	problems []*Error
	// failed are the field paths decoding reported (and the known field
	// an unknown one was likely meant to be): Validate says nothing more
	// about them or the fields inside them.
	failed map[string]bool
}

// hasFailed reports whether decoding reported field or a field that
// contains it ("disks[0]" contains "disks[0].path").
func (s *source) hasFailed(field string) bool {
	if s == nil || len(s.failed) == 0 {
		return false
	}
	for f := field; f != ""; {
		if s.failed[f] {
			return true
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return false
}

// written reports whether the YAML file set the field (to a non-null value).
func (vm *VM) written(field string) bool {
	if vm.src == nil {
		return false
	}
	_, ok := vm.src.fields[field]
	return ok
}

// Position returns the line and column (1-based) of the value of field, a
// path such as "kernel" or "console.mode", in the VM's YAML file; 0, 0 if
// the file did not set it (it was defaulted) or the VM was not loaded from
// YAML.
func (vm *VM) Position(field string) (line, col int) {
	if vm.src == nil {
		return 0, 0
	}
	p := vm.src.fields[field]
	return p.line, p.col
}

// Errorf builds an *Error about field, formatted `FILE:LINE:COL: field:
// msg` exactly as Validate's, for problems found after validation (say, the
// kernel file is not a kernel). fmt's %w wraps. When the file did not set
// field, the position is that of the nearest enclosing field that was set,
// else of the top-level mapping.
func (vm *VM) Errorf(field, format string, args ...any) error {
	e := &Error{Field: field, Err: fmt.Errorf(format, args...)}
	if vm.src != nil {
		e.File = vm.src.file
		p := vm.src.locate(field)
		e.Line, e.Column = p.line, p.col
	}
	return e
}

// locate returns the position of field, or of its nearest written ancestor
// ("console.log" -> "console"; "disks[1].path" -> "disks[1]" -> "disks"),
// or of the top-level mapping.
func (s *source) locate(field string) pos {
	for f := field; f != ""; {
		if p, ok := s.fields[f]; ok {
			return p
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return s.root
}
