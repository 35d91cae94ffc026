package main

import (
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest"
)

// TestSnapshotExitStatus checks the snapshot commands' usage errors and
// refusals on a VM that never ran, with their exit statuses.
func TestSnapshotExitStatus(t *testing.T) {
	managedHome(t)
	tests := []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"snapshot"}, 0, ""},
		{[]string{"snapshot", "bogus"}, 2, ""},
		{[]string{"snapshot", "create"}, 2, "paddock: snapshot create needs a VM name and, optionally, a snapshot name (usage: paddock snapshot create [--stop] VM [SNAPSHOT])\n"},
		{[]string{"snapshot", "create", "a", "b", "c"}, 2, ""},
		{[]string{"snapshot", "create", "idle", "../x"}, 2, "paddock: \"../x\" cannot name a snapshot: use 1 to 63 letters, digits, '.', '_' and '-', starting with a letter or digit\n"},
		{[]string{"snapshot", "ls"}, 2, ""},
		{[]string{"snapshot", "restore", "idle"}, 2, ""},
		{[]string{"snapshot", "rm", "idle"}, 2, ""},
		{[]string{"snapshot", "create", "nosuch"}, 3, "paddock: no VM named 'nosuch' (paddock ls lists them)\n"},
		{[]string{"snapshot", "create", "idle", "s1"}, 4, "paddock: cannot snapshot VM 'idle': it is created; a snapshot saves a running or paused VM: start it first (paddock image snapshot takes a disk alone)\n"},
		{[]string{"snapshot", "ls", "idle"}, 0, ""},
		{[]string{"snapshot", "ls", "nosuch"}, 3, ""},
		{[]string{"snapshot", "restore", "idle", "nope"}, 3, "paddock: VM 'idle' has no snapshot called 'nope' (paddock snapshot ls idle lists them)\n"},
		{[]string{"snapshot", "rm", "idle", "nope"}, 3, "paddock: VM 'idle' has no snapshot called 'nope' (paddock snapshot ls idle lists them)\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, status := runPaddock(t, "", tt.args...)
			if status != tt.status || tt.stderr != "" && stderr != tt.stderr {
				t.Errorf("status %d, stderr %q; want status %d, stderr %q", status, stderr, tt.status, tt.stderr)
			}
		})
	}
	if stdout, _, _ := runPaddock(t, "", "snapshot", "ls", "--json", "idle"); stdout != "[]\n" {
		t.Errorf("snapshot ls --json of a VM without snapshots: %q", stdout)
	}
}

func TestSnapshotRows(t *testing.T) {
	created := time.Date(2026, 12, 6, 10, 30, 0, 0, time.Local)
	rows := snapshotRows([]*guest.SnapshotInfo{
		{Name: "before-upgrade", Created: created, VMState: "running", Disks: []string{"disks[0]", "disks[2]"}, Memory: 4 << 30, MemoryOnDisk: 200 << 20},
		{Name: "idle", Created: created.Add(time.Hour), VMState: "paused", Disks: []string{}, Memory: 1 << 30, MemoryOnDisk: 3 << 20 / 2},
	})
	var b strings.Builder
	writeTable(&b, rows, 0)
	want := "" +
		"NAME            CREATED              VM-STATE  DISK               MEMORY\n" +
		"before-upgrade  2026-12-06 10:30:00  running   disks[0],disks[2]  200MiB of 4GiB\n" +
		"idle            2026-12-06 11:30:00  paused    -                  1.5MiB of 1GiB\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}
