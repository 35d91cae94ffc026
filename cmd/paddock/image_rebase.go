package main

import (
	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
)

func newImageRebaseCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebase [flags] -b BACKING FILE",
		Short: "Change the backing file of a qcow2 image",
		Long: `Make BACKING the backing file of FILE. By default the disk FILE presents is
kept: wherever FILE does not store data itself and the old and new backing
files differ, the old data is copied into FILE. -b "" removes the backing
file (FILE becomes standalone). With -u (unsafe) only the name changes:
for a backing file that was moved or renamed.`,
		Example: `  paddock image rebase -b new-base.qcow2 clone.qcow2
  paddock image rebase -u -b /images/base.qcow2 clone.qcow2`,
		Args: cobra.ExactArgs(1),
		RunE: imageRebaseAction,
	}
	f := cmd.Flags()
	f.StringP("backing", "b", "", "new backing file (empty: none)")
	f.StringP("backing-format", "F", "", "format of the new backing file (detected if empty)")
	f.BoolP("unsafe", "u", false, "only change the name, do not compare data")
	f.BoolP("progress", "p", false, "show progress, also when standard error is not a terminal")
	f.BoolP("quiet", "q", false, "no progress")
	_ = cmd.MarkFlagRequired("backing")
	return cmd
}

func imageRebaseAction(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	backing, _ := f.GetString("backing")
	format, _ := f.GetString("backing-format")
	unsafe, _ := f.GetBool("unsafe")
	force, _ := f.GetBool("progress")
	quiet, _ := f.GetBool("quiet")
	progress, finish := newProgress(cmd.ErrOrStderr(), "rebasing", force, quiet)
	err := disk.Rebase(cmd.Context(), args[0], backing, format, disk.RebaseOptions{Unsafe: unsafe, Progress: progress, Backing: backingPolicy(cmd, args[0])})
	finish()
	return err
}
