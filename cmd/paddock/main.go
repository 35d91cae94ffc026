// Command paddock is a lightweight VM manager: one YAML file describes a VM,
// and paddock boots its Linux kernel directly on KVM.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/paddock-vm/paddock/configs"
)

func main() {
	err := newRootCommand().Execute()
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code, err = ee.code, ee.err
	}
	if err != nil {
		printError(os.Stderr, err)
	}
	os.Exit(code)
}

// printError prints err for the user: configuration problems one per line
// (each names its file:line:column and field), anything else as one
// "paddock: ..." line.
func printError(w io.Writer, err error) {
	var ce *configs.Error
	if errors.As(err, &ce) {
		for _, p := range configs.Problems(err) {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintf(w, "paddock: %v\n", err)
}

// exitError carries a specific process exit status out of a command.
// A nil err exits silently with code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }
