package main

import (
	"errors"
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
The partitions and file systems inside are not touched. As with qemu-img,
the size is the last argument and flags may come anywhere before it. An
image a VM or another process uses is refused.`,
		Example: `  paddock image resize disk.qcow2 +10G
  paddock image resize disk.qcow2 --shrink 20G
  paddock image resize --shrink disk.qcow2 -1G`,
		// "-1G" is a size, not flags: the action takes the last argument
		// as the size before it parses the flags (qemu-img does the same).
		DisableFlagParsing: true,
		RunE:               imageResizeAction,
	}
	cmd.Flags().Bool("shrink", false, "allow shrinking (discards data)")
	cmd.Flags().StringP("format", "f", "", "image format (detected if empty)")
	cmd.Flags().BoolP("quiet", "q", false, "print nothing")
	return cmd
}

// resizeArgs splits resize's raw arguments: the size is the last one
// (which may start with "-"), and the others are parsed as flags and FILE.
// Mistakes are usage errors (status 2), as for every other command.
func resizeArgs(cmd *cobra.Command, raw []string) (path, spec string, err error) {
	if n := len(raw); n > 0 && raw[n-1] != "--" && !strings.HasPrefix(raw[n-1], "--") {
		spec, raw = raw[n-1], raw[:n-1]
	}
	if err := cmd.Flags().Parse(raw); err != nil {
		return "", "", usageError("%w (see %s --help)", err, cmd.CommandPath())
	}
	rest := cmd.Flags().Args()
	if spec == "" || len(rest) != 1 {
		return "", "", usageError("resize: give FILE and a SIZE (usage: %s)", cmd.UseLine())
	}
	return rest[0], spec, nil
}

func imageResizeAction(cmd *cobra.Command, raw []string) error {
	for _, a := range raw {
		if a == "-h" || a == "--help" {
			return cmd.Help()
		}
	}
	path, spec, err := resizeArgs(cmd, raw)
	if err != nil {
		return err
	}
	format, err := imageFormat(cmd, path)
	if err != nil {
		return err
	}
	shrink, _ := cmd.Flags().GetBool("shrink")
	quiet, _ := cmd.Flags().GetBool("quiet")
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
	img, err := disk.Open(path, disk.Options{Format: format, Backing: backingPolicy(cmd, path)})
	if err != nil {
		return err
	}
	defer img.Close()
	cur := img.Size()
	size := n
	if rel != 0 {
		size = cur + int64(rel)*n
	}
	if size < 0 {
		return fmt.Errorf("resize %s: the size would be negative", path)
	}
	err = disk.Resize(img, size, shrink)
	if errors.Is(err, disk.ErrShrink) {
		return fmt.Errorf("resize %s: shrinking from %s to %s discards the data past the new end; pass --shrink to allow it", path, humanSize(cur), humanSize(size))
	}
	if err != nil {
		return err
	}
	if err := img.Close(); err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintln(cmd.OutOrStdout(), "Image resized.")
	}
	return nil
}
