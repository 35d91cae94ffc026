package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// newRootCommand builds the command tree; each subcommand lives in its own
// file as newXxxCommand() + xxxAction().
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "paddock-lab",
		Short:         "Build paddock's guest images and run the nested KVM lab",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolP("verbose", "v", false, "print progress even when stderr is not a terminal")
	root.AddCommand(
		newGuestCommand(),
		newRunCommand(),
		newDemoCommand(),
	)
	return root
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress returns a logger that prints timestamped progress lines to
// stderr when it is a terminal (or --verbose is set), and nil otherwise.
func progress(cmd *cobra.Command) func(format string, args ...any) {
	verbose, _ := cmd.Flags().GetBool("verbose")
	if !verbose && !isTerminal(os.Stderr) {
		return nil
	}
	return newProgress(cmd.ErrOrStderr())
}

func newProgress(w io.Writer) func(format string, args ...any) {
	start := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(w, "paddock-lab [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
}
