package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// detachKey detaches a console, as in telnet and virsh: Ctrl-].
const detachKey = 0x1d

func newConsoleCommand() *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:   "console NAME [--tail N]",
		Short: "Attach this terminal to a running VM's console (Ctrl-] detaches)",
		Long: `Attach to the serial console of a running VM: its output is printed and
your keystrokes go to the guest. The terminal is in raw mode, so every key
(Ctrl-C included) reaches the guest; Ctrl-] detaches and leaves the VM
running. Several consoles may attach at once: all see the output, and the
input of all of them is merged.

When standard input is not a terminal, it is passed to the guest
unchanged (Ctrl-] included) and its end does not detach: the console
stays until the VM stops or this command gets SIGINT, SIGTERM or SIGHUP,
which detach it. --tail N first replays the last N lines of output.

Exit status: 0 detached or the VM stopped, 1 error, 2 usage, 3 no such
VM, 4 the VM is not running.`,
		Args: oneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			return consoleAction(cmd, args[0], tail)
		},
	}
	cmd.Flags().IntVarP(&tail, "tail", "n", 0, "replay the last N lines of output first")
	return managed(cmd, store.StateRunning, store.StatePaused)
}

func consoleAction(cmd *cobra.Command, name string, tail int) error {
	if tail < 0 {
		return usageError("--tail %d: want a line count", tail)
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	conn, err := m.Attach(cmd.Context(), name, tail)
	if err != nil {
		return managedError(err)
	}
	defer conn.Close()

	stdin, stdout, stderr := cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	tty := false
	if f, ok := stdin.(*os.File); ok {
		restore, isTTY, err := rawTerminal(int(f.Fd()))
		if err != nil {
			return err
		}
		defer restore()
		tty = isTTY
	}
	if tty {
		fmt.Fprintf(stderr, "paddock: attached to the console of %s; Ctrl-] detaches\r\n", name)
	}

	outputDone := make(chan struct{})
	go func() {
		defer close(outputDone)
		_, _ = io.Copy(stdout, conn)
	}()
	detach := make(chan string, 1)
	go func() {
		if err := copyInput(conn, stdin, tty); err == nil {
			detach <- "Ctrl-]"
		}
		// Input ended: without a terminal the console stays attached.
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	select {
	case <-outputDone:
		fmt.Fprintf(stderr, "\r\npaddock: %s\r\n", vmEnded(name))
	case how := <-detach:
		conn.Close()
		<-outputDone
		fmt.Fprintf(stderr, "\r\npaddock: detached from %s (%s); it keeps running\r\n", name, how)
	case sig := <-sigs:
		conn.Close()
		<-outputDone
		fmt.Fprintf(stderr, "\r\npaddock: detached from %s (%v); it keeps running\r\n", name, sig)
	}
	return nil
}

// errInputEnded: standard input ended without a detach key.
var errInputEnded = io.EOF

// copyInput sends stdin to the console. On a terminal it stops at the
// detach key (returning nil) after sending what came before it; otherwise
// every byte passes. It returns errInputEnded (or the error) when input
// ends.
func copyInput(conn io.Writer, stdin io.Reader, tty bool) error {
	buf := make([]byte, 4096)
	for {
		n, err := stdin.Read(buf)
		p := buf[:n]
		if tty {
			if i := bytes.IndexByte(p, detachKey); i >= 0 {
				if i > 0 {
					_, _ = conn.Write(p[:i])
				}
				return nil
			}
		}
		if len(p) > 0 {
			if _, werr := conn.Write(p); werr != nil {
				return werr
			}
		}
		if err != nil {
			if err == io.EOF {
				return errInputEnded
			}
			return err
		}
	}
}

// vmEnded says how a VM whose console closed ended.
func vmEnded(name string) string {
	m, err := openManager()
	if err != nil {
		return "the console closed"
	}
	info, err := m.Inspect(name)
	if err != nil || info.State.Active() || info.LastExit == nil {
		return "the console of " + name + " closed"
	}
	return fmt.Sprintf("VM %s: %s", name, vmm.DescribeExit(info.LastExit))
}

// writeJSONLine prints v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
