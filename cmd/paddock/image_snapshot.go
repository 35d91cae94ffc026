package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk/qcow2"
)

func newImageSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot (-l | -c NAME | -a NAME | -d NAME) FILE",
		Short: "List, create, apply or delete internal snapshots of a qcow2 image",
		Long: `Manage internal snapshots like qemu-img snapshot. -a and -d take a snapshot
ID or name. Applying a snapshot reverts the disk to it; the snapshot stays.
Creating, applying and deleting snapshots are refused while a VM or
another process uses the image; listing needs -U while one writes it.`,
		Example: `  paddock image snapshot -c before-upgrade disk.qcow2
  paddock image snapshot -l disk.qcow2
  paddock image snapshot -a before-upgrade disk.qcow2`,
		Args: cobra.ExactArgs(1),
		RunE: imageSnapshotAction,
	}
	f := cmd.Flags()
	f.BoolP("list", "l", false, "list snapshots")
	f.StringP("create", "c", "", "create a snapshot with this name")
	f.StringP("apply", "a", "", "revert the disk to this snapshot")
	f.StringP("delete", "d", "", "delete this snapshot")
	f.BoolP("quiet", "q", false, "print nothing")
	addForceShare(cmd)
	return cmd
}

func imageSnapshotAction(cmd *cobra.Command, args []string) error {
	path := args[0]
	f := cmd.Flags()
	list, _ := f.GetBool("list")
	create, _ := f.GetString("create")
	apply, _ := f.GetString("apply")
	del, _ := f.GetString("delete")
	n := 0
	for _, set := range []bool{list, create != "", apply != "", del != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("snapshot: give exactly one of -l, -c, -a, -d")
	}
	if forceShare(cmd) && !list {
		return fmt.Errorf("snapshot %s: -U (--force-share) only goes with -l; -c, -a and -d write the image", path)
	}
	if list {
		img, err := openQcow2ReadOnly(path, forceShare(cmd))
		if err != nil {
			return err
		}
		defer img.Close()
		if snaps := img.Snapshots(); len(snaps) > 0 {
			fmt.Fprintln(cmd.OutOrStdout(), "Snapshot list:")
			printSnapshots(cmd.OutOrStdout(), snaps)
		}
		return nil
	}
	img, err := qcow2.Open(path, qcow2.Options{NoBacking: true})
	if err != nil {
		return err
	}
	switch {
	case create != "":
		_, err = img.CreateSnapshot(create, qcow2.SnapshotOptions{})
	case apply != "":
		err = img.ApplySnapshot(apply)
	default:
		err = img.DeleteSnapshot(del)
	}
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	return err
}

// printSnapshots prints a snapshot table like qemu-img.
func printSnapshots(w io.Writer, snaps []qcow2.SnapshotInfo) {
	fmt.Fprintf(w, "%-10s%-17s%8s%20s%13s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK")
	for _, s := range snaps {
		clock := s.VMClock
		h := int64(clock / time.Hour)
		m := int64(clock/time.Minute) % 60
		sec := int64(clock/time.Second) % 60
		ms := int64(clock/time.Millisecond) % 1000
		fmt.Fprintf(w, "%-9s %-16s %8s %19s %02d:%02d:%02d.%03d\n",
			s.ID, s.Name, humanSize(s.VMStateSize), s.Date.Local().Format("2006-01-02 15:04:05"), h, m, sec, ms)
	}
}

func unixTime(sec, nsec int64) time.Time { return time.Unix(sec, nsec) }

func durationOf(sec, nsec int64) time.Duration {
	return time.Duration(sec)*time.Second + time.Duration(nsec)
}
