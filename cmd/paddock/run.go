package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// Exit statuses of `paddock run` (documented in docs/cli.md).
const (
	exitPoweredOff = 0
	exitFailed     = 1
	exitCrashed    = 2
	exitRebooted   = 3
	exitInterrupt  = 130 // Ctrl-A X or SIGINT
	exitTerminated = 143 // SIGTERM
)

func newRunCommand() *cobra.Command {
	var file string
	var allow bool
	cmd := &cobra.Command{
		Use:   "run -f FILE",
		Short: "Boot a VM from a YAML file in the foreground, with its console on the terminal",
		Long: `Boot the VM a YAML file describes and attach its serial console to this
terminal. Ctrl-A X quits (stopping the VM), Ctrl-A H lists the escapes.
On a host whose KVM has no hardware virtualization a Linux kernel cannot
boot, and is refused unless --allow-emulated (paddock doctor tells).

Exit status: 0 the guest powered off, 1 paddock could not start the VM,
2 the guest crashed (or a usage error, before anything ran), 3 the guest
rebooted (on_reboot: exit), 130 quit with Ctrl-A X or SIGINT, 143 SIGTERM.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAction(cmd, file, allow)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "VM description (YAML)")
	_ = cmd.MarkFlagRequired("file")
	allowEmulatedFlag(cmd, &allow)
	return cmd
}

func runAction(cmd *cobra.Command, file string, allow bool) error {
	if file == "-" {
		return usageError("run -f -: standard input is the guest's console; give the VM file's path")
	}
	host := hostFacts(cmd)
	host.CheckPorts = true // ports: forwards' host ports free
	vm, err := readSpec(cmd, file, "", host)
	if err != nil {
		return err
	}
	if err := checkBootable(cmd, vm, host, allowEmulated(allow)); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()

	// Signals stop the VM cleanly; the status says which.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var status atomic.Int32
	status.Store(exitInterrupt)
	go func() {
		select {
		case s := <-sigs:
			if s == syscall.SIGTERM {
				status.Store(exitTerminated)
			}
			cancel()
		case <-ctx.Done():
		}
	}()

	// SIGUSR1 dumps the devices' state, for a guest that seems stuck.
	debug := make(chan os.Signal, 1)
	signal.Notify(debug, syscall.SIGUSR1)
	defer signal.Stop(debug)

	stderr := cmd.ErrOrStderr()
	opts := guest.RunOptions{Console: cmd.OutOrStdout(), Debug: debug, DebugOutput: stderr}
	if vm.Console.Mode == configs.ConsoleStdio {
		restore, tty, err := rawTerminal(int(os.Stdin.Fd()))
		if err != nil {
			return err
		}
		defer restore()
		var in io.Reader = cmd.InOrStdin()
		if tty {
			fmt.Fprintf(stderr, "paddock: console of %s (Ctrl-A X quits, Ctrl-A H help)\r\n", vm.Name)
			in = &escapeReader{r: in, w: stderr, quit: cancel}
		}
		opts.Input = in
	}
	res, err := guest.Run(ctx, vm, opts)
	if err != nil {
		return err
	}
	switch res.Reason {
	case exit.PowerOff:
		return nil
	case exit.Reboot:
		msg := fmt.Sprintf("VM %s rebooted (on_reboot: exit)", vm.Name)
		if res.Detail != "" {
			msg += ": " + res.Detail // a triple fault, with the registers
		}
		return &exitError{code: exitRebooted, err: errors.New(msg)}
	case exit.Crash:
		return &exitError{code: exitCrashed, err: fmt.Errorf("VM %s crashed: %s", vm.Name, res.Detail)}
	default:
		fmt.Fprintf(stderr, "\r\npaddock: VM %s stopped\r\n", vm.Name)
		return &exitError{code: int(status.Load())}
	}
}
