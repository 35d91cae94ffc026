package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
)

func newValidateCommand() *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check a VM YAML file without running it",
		Long: `Load a VM YAML file, fill in the defaults and check every field, the files
it names and this host's memory and vCPUs. Every problem is reported in one
run, one per line, as FILE:LINE:COLUMN: FIELD: problem. "-f -" reads
standard input (relative paths in it are then relative to the current
directory); FILE must be a regular file (a FIFO is refused, not waited
on). A valid file whose Linux kernel this host's KVM cannot boot (no
hardware virtualization) gets a warning on standard error.

With --json, standard output gets one JSON object: {"file", "valid",
"config"} with the resolved config (defaults filled, paths absolute, memory
in bytes) when the file is valid, {"file", "valid", "problems"} when not,
and "warnings" (as problems) when there are.

Exit status: 0 the file is valid, 1 it is not or cannot be read, 2 usage.`,
		Example: `  paddock validate -f configs/examples/hello.yaml
  paddock validate -f vm.yaml --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return validateAction(cmd, file, asJSON)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "VM YAML file to check (- for standard input)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object on standard output")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func validateAction(cmd *cobra.Command, file string, asJSON bool) error {
	name := file
	if file == "-" {
		name = "<stdin>"
	}
	host := hostFacts(cmd)
	host.CheckPorts = true // ports: forwards' host ports free
	vm, err := readSpec(cmd, file, "", host)
	var ee *exitError
	if errors.As(err, &ee) {
		return err // a usage error, not a problem of the file
	}
	var warnings []*configs.Error
	if err == nil {
		warnings = bootWarnings(vm, host)
	}
	switch {
	case asJSON:
		if werr := writeValidateJSON(cmd.OutOrStdout(), name, vm, err, warnings); werr != nil {
			return werr
		}
	case err == nil:
		fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", name)
		printWarnings(cmd, warnings)
	default:
		for _, p := range configs.Problems(err) {
			fmt.Fprintln(cmd.ErrOrStderr(), p)
		}
	}
	if err != nil {
		return &exitError{code: 1} // the problems are printed already
	}
	return nil
}

// validateReport is what `paddock validate --json` prints.
type validateReport struct {
	File     string            `json:"file"`
	Valid    bool              `json:"valid"`
	Config   *configs.VM       `json:"config,omitempty"`
	Problems []validateProblem `json:"problems,omitempty"`
	Warnings []validateProblem `json:"warnings,omitempty"`
}

// validateProblem is one problem in a validateReport; zero line and column
// mean unknown.
type validateProblem struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// writeValidateJSON prints the report for a config that vm and problems
// (nil when valid) describe, with warnings about this host.
func writeValidateJSON(w io.Writer, name string, vm *configs.VM, problems error, warnings []*configs.Error) error {
	r := validateReport{File: name, Valid: problems == nil}
	if problems == nil {
		r.Config = vm
	}
	item := func(p *configs.Error) validateProblem {
		return validateProblem{Line: p.Line, Column: p.Column, Field: p.Field, Message: p.Err.Error()}
	}
	for _, p := range configs.Problems(problems) {
		r.Problems = append(r.Problems, item(p))
	}
	for _, p := range warnings {
		r.Warnings = append(r.Warnings, item(p))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("validate: write JSON: %w", err)
	}
	return nil
}
