package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
)

func newImageConvertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "convert [flags] SRC DST",
		Short: "Copy a disk image into a new one, converting its format",
		Long: `Copy the disk SRC presents (through its whole backing chain, or one of its
internal snapshots with -l) into a new image DST. Zero and unallocated
ranges are not copied, so DST is sparse. -c writes compressed clusters
(qcow2; zlib, or zstd with -o compression_type=zstd). A progress bar is
shown on a terminal (or always with -p).`,
		Example: `  paddock image convert -O qcow2 -c disk.raw disk.qcow2
  paddock image convert -O raw disk.qcow2 disk.raw
  paddock image convert -l before-upgrade -O qcow2 disk.qcow2 old.qcow2`,
		Args: cobra.ExactArgs(2),
		RunE: imageConvertAction,
	}
	f := cmd.Flags()
	f.StringP("format", "f", "", "source format (detected if empty)")
	f.StringP("output-format", "O", "qcow2", "destination format: qcow2 or raw")
	f.BoolP("compress", "c", false, "write compressed clusters")
	f.StringP("options", "o", "", "qemu-img style options for the destination: key=value,...")
	f.StringP("snapshot", "l", "", "convert this internal snapshot of SRC")
	f.BoolP("progress", "p", false, "show progress even when not on a terminal")
	f.BoolP("quiet", "q", false, "no progress")
	f.StringP("cache", "t", "writeback", "writeback: DST is durable when convert returns; unsafe: no flushes (faster)")
	return cmd
}

func imageConvertAction(cmd *cobra.Command, args []string) error {
	src, dst := args[0], args[1]
	f := cmd.Flags()
	var o disk.ConvertOptions
	o.SrcFormat, _ = f.GetString("format")
	o.DstFormat, _ = f.GetString("output-format")
	o.Compress, _ = f.GetBool("compress")
	o.Snapshot, _ = f.GetString("snapshot")
	opts, _ := f.GetString("options")
	if err := parseCreateOptions(opts, &o.Qcow2); err != nil {
		return fmt.Errorf("convert %s: %w", dst, err)
	}
	switch cache, _ := f.GetString("cache"); cache {
	case "writeback":
	case "unsafe":
		o.NoSync = true
	default:
		return fmt.Errorf("convert %s: -t must be writeback or unsafe, not %q", dst, cache)
	}
	force, _ := f.GetBool("progress")
	quiet, _ := f.GetBool("quiet")
	progress, finish := newProgress(cmd.ErrOrStderr(), "converting", force, quiet)
	o.Progress = progress
	o.Backing = backingPolicy(cmd, src)
	err := disk.Convert(cmd.Context(), src, dst, o)
	finish()
	return err
}
