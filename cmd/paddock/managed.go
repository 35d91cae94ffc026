package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
)

// Exit statuses of the managed-VM commands (create, start, ls, console,
// logs, pause, resume, stop, kill, inspect, rm, up), documented in
// docs/cli.md. 1 is any other error.
const (
	codeUsage      = 2 // bad flags or arguments
	codeNoVM       = 3 // no VM of that name
	codeWrongState = 4 // the VM's state does not allow it (or it exists already)
	codeBusy       = 5 // another paddock command is changing the VM
)

// openManager opens the state directory ($PADDOCK_HOME or the default).
func openManager() (*guest.Manager, error) {
	return guest.Open(guest.Options{})
}

// managedError gives an error from the guest package its exit status.
func managedError(err error) error {
	if err == nil {
		return nil
	}
	var (
		nf *guest.NotFoundError
		ns *guest.NoSnapshotError
		se *guest.StateError
		ex *guest.ExistsError
		sx *guest.SnapshotExistsError
		be *guest.BusyError
	)
	switch {
	case errors.As(err, &nf), errors.As(err, &ns):
		return &exitError{code: codeNoVM, err: err}
	case errors.As(err, &se), errors.As(err, &ex), errors.As(err, &sx):
		return &exitError{code: codeWrongState, err: err}
	case errors.As(err, &be):
		return &exitError{code: codeBusy, err: err}
	}
	return tenantError(err)
}

// usageError is a mistake in the command line: exit status 2.
func usageError(format string, args ...any) error {
	return &exitError{code: codeUsage, err: fmt.Errorf(format, args...)}
}

// managed sets up a managed-VM command: VM name arguments complete
// (those in one of the given states, or all if none are given).
func managed(cmd *cobra.Command, states ...store.State) *cobra.Command {
	if cmd.ValidArgsFunction == nil && cmd.Args != nil {
		cmd.ValidArgsFunction = completeVMs(states...)
	}
	return cmd
}

// oneVM accepts exactly one VM name.
func oneVM(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError("%s needs one VM name, got %d arguments (usage: paddock %s)", cmd.Name(), len(args), cmd.Use)
	}
	return nil
}

// someVMs accepts one or more VM names.
func someVMs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageError("%s needs at least one VM name (usage: paddock %s)", cmd.Name(), cmd.Use)
	}
	return nil
}

// noArgs accepts no arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%s takes no arguments, got %q (usage: paddock %s)", cmd.Name(), strings.Join(args, " "), cmd.Use)
	}
	return nil
}

// completeVMs completes VM names, those in one of states (all if none).
func completeVMs(states ...store.State) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		m, err := openManager()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		infos, err := m.List()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, in := range infos {
			if !strings.HasPrefix(in.Name, prefix) || slices.Contains(args, in.Name) {
				continue
			}
			if len(states) > 0 && !slices.Contains(states, in.State) {
				continue
			}
			out = append(out, cobra.CompletionWithDesc(in.Name, string(in.State)))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// forEachVM runs f on each name in order, going on after failures: every
// name is tried, each failure is printed as it happens, and the status is
// that of the first failure (docs/cli.md). A name given twice is done
// twice.
func forEachVM(cmd *cobra.Command, names []string, f func(name string) error) error {
	first := 0
	for _, n := range names {
		err := managedError(f(n))
		if err == nil {
			continue
		}
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code, err = ee.code, ee.err
		}
		if err != nil {
			printError(cmd.ErrOrStderr(), err)
		}
		if first == 0 {
			first = code
		}
	}
	if first != 0 {
		return &exitError{code: first} // printed already
	}
	return nil
}
