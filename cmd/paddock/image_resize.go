package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
)

func newImageResizeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resize [flags] FILE [+|-]SIZE",
		Short: "Change the virtual size of an image",
		Long: `Set the size of FILE to SIZE, or grow (+SIZE) or shrink (-SIZE) it by that
much. Shrinking discards the data past the new end and needs --shrink.
The partitions and file systems inside are not touched.`,
		Example: `  paddock image resize disk.qcow2 +10G
  paddock image resize --shrink disk.qcow2 20G`,
		Args: cobra.ExactArgs(2),
		RunE: imageResizeAction,
	}
	cmd.Flags().Bool("shrink", false, "allow shrinking (discards data)")
	cmd.Flags().StringP("format", "f", "", "image format (detected if empty)")
	cmd.Flags().BoolP("quiet", "q", false, "print nothing")
	// "-1G" must reach the action as an argument, not a flag.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func imageResizeAction(cmd *cobra.Command, args []string) error {
	path, spec := args[0], args[1]
	format, err := imageFormat(cmd, path)
	if err != nil {
		return err
	}
	shrink, _ := cmd.Flags().GetBool("shrink")
	quiet, _ := cmd.Flags().GetBool("quiet")
	img, err := disk.Open(path, disk.Options{Format: format, ReadOnly: true, Backing: backingPolicy(cmd, path)})
	if err != nil {
		return err
	}
	cur := img.Size()
	img.Close()
	rel := 0
	switch {
	case strings.HasPrefix(spec, "+"):
		rel, spec = 1, spec[1:]
	case strings.HasPrefix(spec, "-"):
		rel, spec = -1, spec[1:]
	}
	n, err := parseSize(spec)
	if err != nil {
		return fmt.Errorf("resize %s: %w", path, err)
	}
	size := n
	if rel != 0 {
		size = cur + int64(rel)*n
	}
	if size < 0 {
		return fmt.Errorf("resize %s: the size would be negative", path)
	}
	if err := disk.Resize(path, format, size, shrink); err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintln(cmd.OutOrStdout(), "Image resized.")
	}
	return nil
}
