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
internal snapshots with -l) into a new image DST, raw unless -O says
otherwise (as qemu-img). Zero and unallocated ranges are not copied, so
DST is sparse. -c writes compressed clusters (qcow2; zlib, or zstd with
-o compression_type=zstd). A file already at DST is replaced, as qemu-img
does, unless a VM or another process uses it. SRC must not be written
meanwhile; -U copies it anyway (the copy may then be inconsistent). A
progress bar is shown on a terminal (-p also reports progress, in plain
lines, when standard error is not one).`,
		Example: `  paddock image convert -O qcow2 -c disk.raw disk.qcow2
  paddock image convert -O raw disk.qcow2 disk.raw
  paddock image convert -l before-upgrade -O qcow2 disk.qcow2 old.qcow2`,
		Args: cobra.ExactArgs(2),
		RunE: imageConvertAction,
	}
	f := cmd.Flags()
	f.StringP("format", "f", "", "source format (detected if empty)")
	f.StringP("output-format", "O", "raw", "destination format: raw or qcow2")
	f.BoolP("compress", "c", false, "write compressed clusters")
	f.StringP("options", "o", "", "qemu-img style options for the destination: key=value,...")
	f.StringP("snapshot", "l", "", "convert this internal snapshot of SRC")
	f.BoolP("progress", "p", false, "show progress, also when standard error is not a terminal")
	f.BoolP("quiet", "q", false, "no progress")
	f.StringP("cache", "t", "writeback", "writeback: DST is durable when convert returns; unsafe: no flushes (faster)")
	addForceShare(cmd)
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
	o.ForceShare = forceShare(cmd)
	if o.Compress && o.DstFormat != disk.FormatQcow2 {
		return fmt.Errorf("convert %s: -c (compression) needs a qcow2 destination: add -O qcow2", dst)
	}
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
