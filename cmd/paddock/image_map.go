package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

func newImageMapCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "map [flags] FILE",
		Short: "Show where each part of the disk is stored",
		Long: `Describe the disk FILE presents, range by range: which image of the
backing chain holds the data (depth 0 is FILE itself), whether it reads as
zeros, and the offset in that file. The human format lists the ranges
stored uncompressed, like qemu-img map; --json (--output=json) lists every
range. An image a running VM writes needs -U.`,
		Args: cobra.ExactArgs(1),
		RunE: imageMapAction,
	}
	addOutputFlags(cmd)
	addForceShare(cmd)
	cmd.Flags().StringP("format", "f", "", "image format (detected if empty)")
	return cmd
}

type mapJSON struct {
	Start      int64  `json:"start"`
	Length     int64  `json:"length"`
	Depth      int    `json:"depth"`
	Present    bool   `json:"present"`
	Zero       bool   `json:"zero"`
	Data       bool   `json:"data"`
	Compressed bool   `json:"compressed"`
	Offset     *int64 `json:"offset,omitempty"`
	Filename   string `json:"filename,omitempty"`
}

func imageMapAction(cmd *cobra.Command, args []string) error {
	path := args[0]
	asJSON, err := jsonOutput(cmd)
	if err != nil {
		return err
	}
	share := forceShare(cmd)
	format, err := imageFormat(cmd, path)
	if err != nil {
		return err
	}
	var exts []qcow2.Extent
	if format == disk.FormatRaw {
		img, err := disk.Open(path, disk.Options{Format: format, ReadOnly: true, ForceShare: share})
		if err != nil {
			return err
		}
		rexts, err := img.(*disk.Raw).Extents(0, img.Size())
		img.Close()
		if err != nil {
			return err
		}
		for _, e := range rexts {
			exts = append(exts, qcow2.Extent{Offset: e.Offset, Length: e.Length, Data: e.Data, Zero: e.Zero, HostOffset: e.Offset, File: path})
		}
	} else {
		img, err := qcow2.Open(path, qcow2.Options{ReadOnly: true, ForceShare: share, Backing: backingPolicy(cmd, path)})
		if err != nil {
			return err
		}
		exts, err = img.Extents(0, img.Size())
		img.Close()
		if err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	if asJSON {
		js := make([]mapJSON, 0, len(exts))
		for _, e := range exts {
			m := mapJSON{Start: e.Offset, Length: e.Length, Depth: e.Depth, Zero: e.Zero, Data: e.Data,
				Compressed: e.Compressed, Present: e.File != "", Filename: e.File}
			if e.HostOffset >= 0 && e.Data {
				off := e.HostOffset
				m.Offset = &off
			}
			js = append(js, m)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "    ")
		return enc.Encode(js)
	}
	fmt.Fprintf(out, "%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File")
	for _, e := range exts {
		if e.Data && e.HostOffset >= 0 {
			fmt.Fprintf(out, "%-16s%-16s%-16s%s\n", hex0(e.Offset), hex0(e.Length), hex0(e.HostOffset), e.File)
		}
	}
	return nil
}

// hex0 formats like qemu-img map: 0, else 0x-prefixed hex.
func hex0(v int64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%#x", v)
}
