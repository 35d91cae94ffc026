// Command paddock-lab is the developer tool for paddock's guest images and
// nested KVM lab:
//
//	paddock-lab guest --out build/guest   build the demo guest (kernel, vmlinux, initrd)
//	paddock-lab run SCRIPT.sh             boot the lab's L1 VM, run the script, stream the console
//	paddock-lab demo                      boot L1 and run `paddock run -f /guest/hello.yaml` on your terminal
//
// It prints progress when stderr is a terminal and stays quiet otherwise.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// A signal cancels the context: the lab then kills QEMU and removes
	// its temporary files before paddock-lab exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "paddock-lab: %v\n", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintf(os.Stderr, "paddock-lab: %v\n", err)
	os.Exit(1)
}

// exitError carries a specific exit status out of a command; a nil err
// exits silently with code.
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
