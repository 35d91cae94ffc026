package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

func newImageCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create [flags] FILE [SIZE]",
		Short: "Create a disk image",
		Long: `Create a qcow2 (default) or raw image of SIZE bytes (suffixes k, M, G, T
are binary). With -b the image is an overlay on a backing file: SIZE then
defaults to the backing file's size, and a relative backing name is
relative to the new image's directory. A file already at FILE is
replaced, as qemu-img does, unless a VM or another process uses it.

qcow2 layout options come as flags or as qemu-img style -o key=value:
cluster_size, compat (0.10 or 1.1), refcount_bits, extended_l2 (on/off),
compression_type (zlib/zstd), preallocation (off/metadata).`,
		Example: `  paddock image create disk.qcow2 20G
  paddock image create -b base.qcow2 -F qcow2 clone.qcow2
  paddock image create --cluster-size 2M --extended-l2 big.qcow2 1T
  paddock image create -f raw scratch.img 1G`,
		Args: cobra.RangeArgs(1, 2),
		RunE: imageCreateAction,
	}
	f := cmd.Flags()
	f.StringP("format", "f", "qcow2", "image format: qcow2 or raw")
	f.StringP("options", "o", "", "qemu-img style options: key=value,...")
	f.StringP("backing", "b", "", "backing file (qcow2 only)")
	f.StringP("backing-format", "F", "", "format of the backing file (detected if empty)")
	f.String("cluster-size", "", "cluster size, 512 to 2M (default 64k)")
	f.Bool("extended-l2", false, "use extended L2 entries (subclusters)")
	f.String("compression", "", "compression type for compressed clusters: zlib or zstd")
	f.String("preallocation", "", "off or metadata")
	f.BoolP("quiet", "q", false, "print nothing")
	return cmd
}

func imageCreateAction(cmd *cobra.Command, args []string) error {
	path := args[0]
	f := cmd.Flags()
	format, _ := f.GetString("format")
	var o qcow2.CreateOptions
	opts, _ := f.GetString("options")
	if err := parseCreateOptions(opts, &o); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if len(args) == 2 {
		size, err := parseSize(args[1])
		if err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		o.Size = size
	}
	if b, _ := f.GetString("backing"); b != "" {
		o.BackingFile = b
	}
	o.Backing = backingPolicy(cmd, path)
	if bf, _ := f.GetString("backing-format"); bf != "" {
		o.BackingFormat = bf
	}
	if cs, _ := f.GetString("cluster-size"); cs != "" {
		v, err := parseSize(cs)
		if err != nil {
			return fmt.Errorf("create %s: --cluster-size: %w", path, err)
		}
		o.ClusterSize = v
	}
	if f.Changed("extended-l2") {
		o.ExtendedL2, _ = f.GetBool("extended-l2")
	}
	if c, _ := f.GetString("compression"); c != "" {
		o.Compression = c
	}
	if p, _ := f.GetString("preallocation"); p != "" {
		o.Preallocation = p
	}
	quiet, _ := f.GetBool("quiet")
	switch format {
	case disk.FormatRaw:
		if o.BackingFile != "" {
			return fmt.Errorf("create %s: raw images cannot have a backing file", path)
		}
		if len(args) < 2 {
			return fmt.Errorf("create %s: a raw image needs a SIZE", path)
		}
	case disk.FormatQcow2:
		if len(args) < 2 && o.BackingFile == "" && o.Size == 0 {
			return fmt.Errorf("create %s: a SIZE is needed without a backing file", path)
		}
	default:
		return fmt.Errorf("create %s: unknown format %q (qcow2 or raw)", path, format)
	}
	img, err := disk.Create(path, disk.CreateOptions{Format: format, Size: o.Size, Qcow2: o})
	if err != nil {
		return err
	}
	defer img.Close()
	if quiet {
		return img.Close()
	}
	q := disk.Qcow2(img)
	if q == nil {
		fmt.Fprintf(cmd.OutOrStdout(), "Formatting '%s', fmt=raw size=%d\n", path, img.Size())
		return img.Close()
	}
	in := q.Info()
	compat := "1.1"
	if in.Version == 2 {
		compat = "0.10"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Formatting '%s', fmt=qcow2 cluster_size=%d extended_l2=%s compression_type=%s size=%d",
		path, in.ClusterSize, onOff(in.ExtendedL2), in.Compression, in.Size)
	if in.BackingFile != "" {
		fmt.Fprintf(cmd.OutOrStdout(), " backing_file=%s backing_fmt=%s", in.BackingFile, in.BackingFormat)
	}
	fmt.Fprintf(cmd.OutOrStdout(), " compat=%s refcount_bits=%d\n", compat, in.RefcountBits)
	return img.Close()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
