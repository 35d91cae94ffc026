package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
)

func newImageCommitCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "commit [flags] FILE",
		Short: "Write a qcow2 overlay's changes into its backing file",
		Long: `Copy everything FILE stores into its backing file, then empty FILE (unless
-d), so the chain reads the same as before. Other images that use the
same backing file see the change too.`,
		Args: cobra.ExactArgs(1),
		RunE: imageCommitAction,
	}
	f := cmd.Flags()
	f.BoolP("keep", "d", false, "keep the data in FILE instead of emptying it")
	f.BoolP("progress", "p", false, "show progress, also when standard error is not a terminal")
	f.BoolP("quiet", "q", false, "print nothing")
	return cmd
}

func imageCommitAction(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	keep, _ := f.GetBool("keep")
	force, _ := f.GetBool("progress")
	quiet, _ := f.GetBool("quiet")
	progress, finish := newProgress(cmd.ErrOrStderr(), "committing", force, quiet)
	err := disk.Commit(cmd.Context(), args[0], disk.CommitOptions{KeepTop: keep, Progress: progress, Backing: backingPolicy(cmd, args[0])})
	finish()
	if err == nil && !quiet {
		fmt.Fprintln(cmd.OutOrStdout(), "Image committed.")
	}
	return err
}
