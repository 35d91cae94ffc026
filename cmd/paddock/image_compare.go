package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
)

func newImageCompareCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compare [flags] FILE1 FILE2",
		Short: "Check whether two images present the same disk",
		Long: `Read the disks FILE1 and FILE2 present (through their backing chains) and
say whether they are the same, like qemu-img compare. Images of different
sizes are the same if the larger one reads as zeros past the smaller's end,
unless -s (strict). Images a running VM writes need -U.

Exit status (as qemu-img): 0 the same, 1 different, 2 an error.`,
		Args: cobra.ExactArgs(2),
		RunE: imageCompareAction,
	}
	f := cmd.Flags()
	f.StringP("format", "f", "", "format of FILE1 (detected if empty)")
	f.StringP("format2", "F", "", "format of FILE2 (detected if empty)")
	f.BoolP("strict", "s", false, "images of different sizes differ")
	f.BoolP("progress", "p", false, "show progress, also when standard error is not a terminal")
	f.BoolP("quiet", "q", false, "print nothing, only set the exit status")
	addForceShare(cmd)
	return cmd
}

func imageCompareAction(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	var o disk.CompareOptions
	o.FormatA, _ = f.GetString("format")
	o.FormatB, _ = f.GetString("format2")
	o.Strict, _ = f.GetBool("strict")
	o.ForceShare = forceShare(cmd)
	o.BackingA, o.BackingB = backingPolicy(cmd, args[0]), backingPolicy(cmd, args[1])
	force, _ := f.GetBool("progress")
	quiet, _ := f.GetBool("quiet")
	progress, finish := newProgress(cmd.ErrOrStderr(), "comparing", force, quiet)
	o.Progress = progress
	res, err := disk.Compare(cmd.Context(), args[0], args[1], o)
	finish()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	out := cmd.OutOrStdout()
	switch {
	case res.Same:
		if !quiet {
			fmt.Fprintln(out, "Images are identical.")
		}
		return nil
	case res.SizeMismatch:
		if !quiet {
			fmt.Fprintln(out, "Strict mode: Image size mismatch!")
		}
	default:
		if !quiet {
			fmt.Fprintf(out, "Content mismatch at offset %d!\n", res.Offset)
		}
	}
	return &exitError{code: 1}
}
