package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

func newImageInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info [flags] FILE",
		Short: "Show an image's format, sizes, backing file and snapshots",
		Long: `Show what qemu-img info shows. The backing chain is not opened (use
--backing-chain to describe every image in it), so a missing backing file
or a corrupt image can still be inspected. --json (--output=json) prints
the same fields as qemu-img info --output=json. An image a running VM
writes needs -U.`,
		Args: cobra.ExactArgs(1),
		RunE: imageInfoAction,
	}
	cmd.Flags().StringP("format", "f", "", "image format (detected if empty)")
	addOutputFlags(cmd)
	addForceShare(cmd)
	cmd.Flags().Bool("backing-chain", false, "describe the whole backing chain")
	return cmd
}

// imageInfoJSON mirrors qemu-img info's JSON.
type imageInfoJSON struct {
	Filename              string              `json:"filename"`
	Format                string              `json:"format"`
	VirtualSize           int64               `json:"virtual-size"`
	ActualSize            int64               `json:"actual-size"`
	ClusterSize           int64               `json:"cluster-size,omitempty"`
	BackingFilename       string              `json:"backing-filename,omitempty"`
	FullBackingFilename   string              `json:"full-backing-filename,omitempty"`
	BackingFilenameFormat string              `json:"backing-filename-format,omitempty"`
	DirtyFlag             bool                `json:"dirty-flag"`
	Snapshots             []snapshotJSON      `json:"snapshots,omitempty"`
	FormatSpecific        *formatSpecificJSON `json:"format-specific,omitempty"`
}

type snapshotJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	VMStateSize int64  `json:"vm-state-size"`
	DateSec     int64  `json:"date-sec"`
	DateNsec    int64  `json:"date-nsec"`
	VMClockSec  int64  `json:"vm-clock-sec"`
	VMClockNsec int64  `json:"vm-clock-nsec"`
}

// formatSpecificJSON: like qemu-img, version 2 images omit the fields
// that only version 3 has.
type formatSpecificJSON struct {
	Type string `json:"type"`
	Data struct {
		Compat          string `json:"compat"`
		CompressionType string `json:"compression-type"`
		LazyRefcounts   *bool  `json:"lazy-refcounts,omitempty"`
		RefcountBits    int    `json:"refcount-bits"`
		Corrupt         *bool  `json:"corrupt,omitempty"`
		ExtendedL2      *bool  `json:"extended-l2,omitempty"`
	} `json:"data"`
}

func imageInfoAction(cmd *cobra.Command, args []string) error {
	asJSON, err := jsonOutput(cmd)
	if err != nil {
		return err
	}
	chain, _ := cmd.Flags().GetBool("backing-chain")
	share := forceShare(cmd)
	path := args[0]
	format, err := imageFormat(cmd, path)
	if err != nil {
		return err
	}
	access := imagefile.AccessFor(true, share)
	policy := backingPolicy(cmd, path)
	f, err := imagefile.Open(path, access)
	if err != nil {
		// Worded as the other commands word it, which open the image
		// through its format's package.
		if format == disk.FormatQcow2 {
			return fmt.Errorf("qcow2: %w", err)
		}
		return fmt.Errorf("disk: %w", err)
	}
	var infos []imageInfoJSON
	for depth := 0; ; depth++ {
		in, err := describeImage(f, path, format, share)
		if err != nil {
			return err
		}
		infos = append(infos, in)
		if !chain || in.FullBackingFilename == "" {
			break
		}
		if depth > 256 {
			return fmt.Errorf("%s: backing chain deeper than 256 images", args[0])
		}
		// Judged and opened in one step: what is described, and where
		// the walk goes on, is the file the policy allowed.
		if f, format, err = qcow2.OpenBackingFile(policy, path, in.BackingFilename, in.BackingFilenameFormat, access); err != nil {
			return err
		}
		path = in.FullBackingFilename
	}
	out := cmd.OutOrStdout()
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "    ")
		if chain {
			return enc.Encode(infos)
		}
		return enc.Encode(infos[0])
	}
	for i, in := range infos {
		if i > 0 {
			fmt.Fprintln(out)
		}
		printInfo(out, in)
	}
	return nil
}

// describeImage collects the info of the image in f, opened and locked
// for reading, which it closes; path names the image and share is -U.
func describeImage(f *os.File, path, format string, share bool) (imageInfoJSON, error) {
	in := imageInfoJSON{Filename: path, Format: format}
	if fi, err := f.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			in.ActualSize = st.Blocks * 512
		}
	}
	if format == disk.FormatRaw {
		defer imagefile.Close(f)
		size, err := f.Seek(0, io.SeekEnd) // also right for block devices
		if err != nil {
			return in, err
		}
		in.VirtualSize = size
		return in, nil
	}
	img, err := qcow2.OpenFile(f, qcow2.Options{ReadOnly: true, ForceShare: share, NoBacking: true})
	if err != nil {
		return in, err
	}
	defer img.Close()
	qi := img.Info()
	in.VirtualSize = qi.Size
	in.ClusterSize = qi.ClusterSize
	in.DirtyFlag = qi.Dirty
	in.BackingFilename = qi.BackingFile
	in.BackingFilenameFormat = qi.BackingFormat
	if qi.BackingFile != "" {
		if abs, err := filepath.Abs(qi.BackingPath); err == nil {
			in.FullBackingFilename = abs
		} else {
			in.FullBackingFilename = qi.BackingPath
		}
	}
	for _, s := range qi.Snapshots {
		in.Snapshots = append(in.Snapshots, snapshotJSON{
			ID: s.ID, Name: s.Name, VMStateSize: s.VMStateSize,
			DateSec: s.Date.Unix(), DateNsec: int64(s.Date.Nanosecond()),
			VMClockSec: int64(s.VMClock.Seconds()), VMClockNsec: int64(s.VMClock) % 1e9,
		})
	}
	fs := &formatSpecificJSON{Type: "qcow2"}
	fs.Data.Compat = "1.1"
	if qi.Version == 2 {
		fs.Data.Compat = "0.10"
	}
	fs.Data.CompressionType = qi.Compression
	fs.Data.RefcountBits = qi.RefcountBits
	if qi.Version >= 3 {
		fs.Data.LazyRefcounts = &qi.LazyRefcounts
		fs.Data.Corrupt = &qi.Corrupt
		fs.Data.ExtendedL2 = &qi.ExtendedL2
	}
	in.FormatSpecific = fs
	return in, nil
}

// printInfo prints one image like qemu-img info.
func printInfo(w io.Writer, in imageInfoJSON) {
	fmt.Fprintf(w, "image: %s\n", in.Filename)
	fmt.Fprintf(w, "file format: %s\n", in.Format)
	fmt.Fprintf(w, "virtual size: %s (%d bytes)\n", humanSize(in.VirtualSize), in.VirtualSize)
	fmt.Fprintf(w, "disk size: %s\n", humanSize(in.ActualSize))
	if in.ClusterSize != 0 {
		fmt.Fprintf(w, "cluster_size: %d\n", in.ClusterSize)
	}
	if in.BackingFilename != "" {
		fmt.Fprintf(w, "backing file: %s", in.BackingFilename)
		if in.FullBackingFilename != in.BackingFilename {
			fmt.Fprintf(w, " (actual path: %s)", in.FullBackingFilename)
		}
		fmt.Fprintln(w)
		if in.BackingFilenameFormat != "" {
			fmt.Fprintf(w, "backing file format: %s\n", in.BackingFilenameFormat)
		}
	}
	if len(in.Snapshots) > 0 {
		fmt.Fprintln(w, "Snapshot list:")
		printSnapshots(w, snapshotsFromJSON(in.Snapshots))
	}
	if fs := in.FormatSpecific; fs != nil {
		fmt.Fprintln(w, "Format specific information:")
		fmt.Fprintf(w, "    compat: %s\n", fs.Data.Compat)
		fmt.Fprintf(w, "    compression type: %s\n", fs.Data.CompressionType)
		if fs.Data.LazyRefcounts != nil {
			fmt.Fprintf(w, "    lazy refcounts: %t\n", *fs.Data.LazyRefcounts)
		}
		fmt.Fprintf(w, "    refcount bits: %d\n", fs.Data.RefcountBits)
		if fs.Data.Corrupt != nil {
			fmt.Fprintf(w, "    corrupt: %t\n", *fs.Data.Corrupt)
			fmt.Fprintf(w, "    extended l2: %t\n", *fs.Data.ExtendedL2)
		}
	}
	if in.DirtyFlag {
		fmt.Fprintln(w, "dirty flag: true (refcounts will be repaired when opened for writing)")
	}
}

func snapshotsFromJSON(js []snapshotJSON) []qcow2.SnapshotInfo {
	out := make([]qcow2.SnapshotInfo, len(js))
	for i, s := range js {
		out[i] = qcow2.SnapshotInfo{ID: s.ID, Name: s.Name, VMStateSize: s.VMStateSize}
		out[i].Date = unixTime(s.DateSec, s.DateNsec)
		out[i].VMClock = durationOf(s.VMClockSec, s.VMClockNsec)
	}
	return out
}
