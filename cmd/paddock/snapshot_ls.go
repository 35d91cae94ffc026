package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
)

func newSnapshotLsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [--json] VM",
		Aliases: []string{"list"},
		Short:   "List a VM's snapshots",
		Long: `List the VM's snapshots, oldest first: NAME, CREATED, VM-STATE (what the
VM was doing when it was taken), DISK (the disks whose contents it holds
as internal qcow2 snapshots) and MEMORY (what its memory file takes on
disk, of the guest's RAM). --json prints a JSON array.

Exit status: 0 ok, 1 error, 2 usage, 3 no such VM.`,
		Args: oneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			return snapshotLsAction(cmd, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return managed(cmd)
}

func snapshotLsAction(cmd *cobra.Command, name string, asJSON bool) error {
	m, err := openManager()
	if err != nil {
		return err
	}
	snaps, err := m.Snapshots(name)
	if err != nil {
		return managedError(err)
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return writeJSON(out, snaps)
	}
	writeTable(out, snapshotRows(snaps), terminalWidth(out))
	return nil
}

// snapshotRows is the table: a header, then one row per snapshot.
func snapshotRows(snaps []*guest.SnapshotInfo) [][]string {
	rows := [][]string{{"NAME", "CREATED", "VM-STATE", "DISK", "MEMORY"}}
	for _, s := range snaps {
		disks := "-"
		if len(s.Disks) > 0 {
			disks = strings.Join(s.Disks, ",")
		}
		mem := fmt.Sprintf("%s of %s", formatBytes(s.MemoryOnDisk), configs.ByteSize(s.Memory))
		if s.Backend == string(configs.BackendLibvirt) {
			mem = configs.ByteSize(s.Memory).String() + " in the disk"
		}
		rows = append(rows, []string{s.Name, s.Created.Local().Format("2006-01-02 15:04:05"), s.VMState, disks, mem})
	}
	return rows
}

// formatBytes prints a size in binary units, as configs.ByteSize does,
// rounded to one decimal below 10 of a unit.
func formatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v := float64(n)
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 || v >= 10 {
		return fmt.Sprintf("%.0f%s", v, units[u])
	}
	return fmt.Sprintf("%.1f%s", v, units[u])
}
