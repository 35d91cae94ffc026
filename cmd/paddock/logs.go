package main

import (
	"bufio"
	"io"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
)

func newLogsCommand() *cobra.Command {
	var o guest.LogOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "logs NAME [-f] [--tail N] [--json]",
		Short: "Print a VM's console output",
		Long: `Print what the VM's guest wrote to its console: the console log, kept
across runs and bounded (console.log rotates to console.log.1 at 4MiB,
or as the spec's console.log_size and log_keep say).
With -f, keep printing live output until the VM stops (the history is
then the last MiB the VMM remembers); a VM that is not running prints its
log and ends. --tail N prints only the last N lines of the history.
--json prints one JSON object per line: {"vm": NAME, "line": TEXT}.

Exit status: 0 ok, 1 error, 2 usage, 3 no such VM.`,
		Example: `  paddock logs web
  paddock logs web -f --tail 20`,
		Args: oneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			return logsAction(cmd, args[0], o, asJSON)
		},
	}
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep printing live output until the VM stops")
	cmd.Flags().IntVarP(&o.Tail, "tail", "n", 0, "print only the last N lines of the history (0: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return managed(cmd)
}

func logsAction(cmd *cobra.Command, name string, o guest.LogOptions, asJSON bool) error {
	if o.Tail < 0 {
		return usageError("--tail %d: want a line count, 0 for all", o.Tail)
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	rc, err := m.Logs(cmd.Context(), name, o)
	if err != nil {
		return managedError(err)
	}
	defer rc.Close()
	out := cmd.OutOrStdout()
	if !asJSON {
		_, err := io.Copy(out, rc)
		return err
	}
	type line struct {
		VM   string `json:"vm"`
		Line string `json:"line"`
	}
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		if n := len(text); n > 0 && text[n-1] == '\r' {
			text = text[:n-1]
		}
		if err := writeJSONLine(out, line{VM: name, Line: text}); err != nil {
			return err
		}
	}
	return sc.Err()
}
