package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

func newImageCheckCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [flags] FILE",
		Short: "Check a qcow2 image's metadata, optionally repairing it",
		Long: `Check that every cluster's refcount matches the references to it, like
qemu-img check. Leaked clusters (refcount too high) only waste space and
are what a crash can leave; -r leaks frees them. Corruptions (refcount too
low, bad table entries) can destroy data; -r all rebuilds the refcounts.

Exit status (as qemu-img): 0 clean, 1 the check failed, 2 corruptions
found, 3 only leaks found.

Checking an image a running VM writes needs -U (and its result may be
wrong, as the VM changes the image meanwhile); repairing one is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: imageCheckAction,
	}
	cmd.Flags().StringP("repair", "r", "", "repair: leaks or all")
	addOutputFlags(cmd)
	addForceShare(cmd)
	cmd.Flags().StringP("format", "f", "", "image format (detected if empty)")
	cmd.Flags().BoolP("quiet", "q", false, "print nothing on success")
	return cmd
}

type checkJSON struct {
	Filename           string `json:"filename"`
	Format             string `json:"format"`
	CheckErrors        int    `json:"check-errors"`
	Corruptions        int    `json:"corruptions,omitempty"`
	Leaks              int    `json:"leaks,omitempty"`
	CorruptionsFixed   int    `json:"corruptions-fixed,omitempty"`
	LeaksFixed         int    `json:"leaks-fixed,omitempty"`
	ImageEndOffset     int64  `json:"image-end-offset"`
	TotalClusters      int64  `json:"total-clusters"`
	AllocatedClusters  int64  `json:"allocated-clusters"`
	FragmentedClusters int64  `json:"fragmented-clusters"`
	CompressedClusters int64  `json:"compressed-clusters"`
}

func imageCheckAction(cmd *cobra.Command, args []string) error {
	path := args[0]
	repair, _ := cmd.Flags().GetString("repair")
	quiet, _ := cmd.Flags().GetBool("quiet")
	asJSON, err := jsonOutput(cmd)
	if err != nil {
		return err
	}
	share := forceShare(cmd)
	if share && repair != "" {
		return fmt.Errorf("check %s: -U (--force-share) reads only; it cannot go with -r, which writes the image", path)
	}
	format, err := imageFormat(cmd, path)
	if err != nil {
		return err
	}
	if format != disk.FormatQcow2 {
		return fmt.Errorf("check %s: %s images have no metadata to check", path, format)
	}
	mode := qcow2.RepairNone
	switch repair {
	case "":
	case "leaks":
		mode = qcow2.RepairLeaks
	case "all":
		mode = qcow2.RepairAll
	default:
		return fmt.Errorf("check %s: -r must be leaks or all, not %q", path, repair)
	}
	img, err := qcow2.Open(path, qcow2.Options{NoBacking: true, ReadOnly: mode == qcow2.RepairNone, ForceShare: share, Repair: mode == qcow2.RepairAll})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	res, err := img.Check(mode)
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	out := cmd.OutOrStdout()
	remaining := res.Corruptions - res.CorruptionsFixed
	leaks := res.Leaks - res.LeaksFixed
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "    ")
		if err := enc.Encode(checkJSON{
			Filename: path, Format: "qcow2", CheckErrors: res.CheckErrors,
			Corruptions: remaining, Leaks: leaks,
			CorruptionsFixed: res.CorruptionsFixed, LeaksFixed: res.LeaksFixed,
			ImageEndOffset: res.ImageEndOffset, TotalClusters: res.TotalClusters,
			AllocatedClusters: res.AllocatedClusters, FragmentedClusters: res.FragmentedClusters,
			CompressedClusters: res.CompressedClusters,
		}); err != nil {
			return err
		}
	} else if !quiet || remaining+leaks+res.CheckErrors > 0 {
		printCheck(out, res, mode != qcow2.RepairNone)
	}
	switch {
	case res.CheckErrors > 0:
		return &exitError{code: 1}
	case remaining > 0:
		return &exitError{code: 2}
	case leaks > 0:
		return &exitError{code: 3}
	}
	return nil
}

// printCheck prints a result in qemu-img check's words.
func printCheck(w io.Writer, res *qcow2.CheckResult, repaired bool) {
	for _, m := range res.Messages {
		fmt.Fprintln(w, m)
	}
	if len(res.Messages) > 0 {
		fmt.Fprintln(w)
	}
	if repaired && res.CorruptionsFixed+res.LeaksFixed > 0 {
		fmt.Fprintf(w, "The following inconsistencies were found and repaired:\n\n")
		fmt.Fprintf(w, "    %d leaked clusters\n    %d corruptions\n\n", res.LeaksFixed, res.CorruptionsFixed)
	}
	remaining := res.Corruptions - res.CorruptionsFixed
	leaks := res.Leaks - res.LeaksFixed
	switch {
	case remaining > 0:
		fmt.Fprintf(w, "%d errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n", remaining)
		if leaks > 0 {
			fmt.Fprintf(w, "\n%d leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", leaks)
		}
	case leaks > 0:
		fmt.Fprintf(w, "%d leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", leaks)
	case res.CheckErrors == 0:
		fmt.Fprintln(w, "No errors were found on the image.")
	}
	if res.CheckErrors > 0 {
		fmt.Fprintf(w, "%d internal errors have occurred during the check.\n", res.CheckErrors)
	}
	if res.TotalClusters > 0 {
		pct := func(n int64) float64 { return 100 * float64(n) / float64(res.TotalClusters) }
		fmt.Fprintf(w, "%d/%d = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
			res.AllocatedClusters, res.TotalClusters, pct(res.AllocatedClusters), pct(res.FragmentedClusters), pct(res.CompressedClusters))
	}
	fmt.Fprintf(w, "Image end offset: %d\n", res.ImageEndOffset)
}
