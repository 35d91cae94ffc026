package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// managedHome points PADDOCK_HOME at an empty state directory and
// creates the VM "idle" there (a small PVH guest, never started), for
// tests of the managed-VM commands that start no VMM. It returns the
// directory of the VM's files.
func managedHome(t *testing.T) string {
	t.Helper()
	t.Setenv(store.EnvHome, t.TempDir())
	dir := t.TempDir()
	testguest.PVHStub(t, dir, "vmlinuz")
	f := filepath.Join(dir, "idle.yaml")
	if err := os.WriteFile(f, []byte("name: idle\nmemory: 64MiB\nkernel: vmlinuz\nconsole: log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, status := runPaddock(t, "", "create", "-f", f); status != 0 {
		t.Fatalf("create: status %d: %s", status, stderr)
	}
	return dir
}

// TestUnknownFlagEveryCommand gives every command of the tree an unknown
// flag: each exits with status 2 and says so, none runs.
func TestUnknownFlagEveryCommand(t *testing.T) {
	managedHome(t)
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(path[:len(path):len(path)], sub.Name()))
		}
	}
	root := newRootCommand()
	walk(root, nil)
	if len(paths) < 25 {
		t.Fatalf("only %d commands in the tree", len(paths))
	}
	for _, path := range paths {
		args := append(path[:len(path):len(path)], "--no-such-flag")
		t.Run(strings.Join(append([]string{"paddock"}, path...), " "), func(t *testing.T) {
			stdout, stderr, status := runPaddock(t, "", args...)
			if status != codeUsage || !strings.Contains(stderr, "unknown flag: --no-such-flag") || stdout != "" {
				t.Errorf("status %d, stdout %q, stderr %q; want status 2 and the unknown flag named", status, stdout, stderr)
			}
		})
	}
}

// TestExitStatus checks the exit status docs/cli.md gives for usage
// errors (2 everywhere) and the documented outcomes of each command,
// with the exact message of the common ones.
func TestExitStatus(t *testing.T) {
	dir := managedHome(t)
	missing := filepath.Join(dir, "missing.yaml")
	tests := []struct {
		args   []string
		status int
		stderr string // the whole of standard error, when not empty
	}{
		// Usage: unknown commands, at any level.
		{[]string{"frobnicate"}, 2, "paddock: unknown command \"frobnicate\" for \"paddock\"; see paddock --help\n"},
		{[]string{"stpo", "idle"}, 2, "paddock: unknown command \"stpo\" for \"paddock\" (did you mean \"stop\"?); see paddock --help\n"},
		{[]string{"image", "bogus"}, 2, "paddock: unknown command \"bogus\" for \"paddock image\"; see paddock image --help\n"},
		{[]string{"image", "convertt", "a", "b"}, 2, "paddock: unknown command \"convertt\" for \"paddock image\" (did you mean \"convert\"?); see paddock image --help\n"},
		{[]string{"completion", "tcsh"}, 2, ""},
		{[]string{"help", "frobnicate"}, 2, "paddock: unknown command \"frobnicate\" for \"paddock\"; see paddock --help\n"},
		{[]string{"help", "image", "bogus"}, 2, ""},
		// Usage: arguments.
		{[]string{"version", "x"}, 2, "paddock: version takes no arguments, got \"x\" (usage: paddock version [--json])\n"},
		{[]string{"doctor", "x"}, 2, ""},
		{[]string{"ls", "x"}, 2, ""},
		{[]string{"start"}, 2, "paddock: start needs at least one VM name (usage: paddock start NAME...)\n"},
		{[]string{"stop"}, 2, ""},
		{[]string{"kill"}, 2, ""},
		{[]string{"pause"}, 2, ""},
		{[]string{"resume"}, 2, ""},
		{[]string{"rm"}, 2, ""},
		{[]string{"console"}, 2, ""},
		{[]string{"console", "a", "b"}, 2, ""},
		{[]string{"logs"}, 2, ""},
		{[]string{"inspect"}, 2, ""},
		{[]string{"inspect", "a", "b"}, 2, "paddock: inspect needs one VM name, got 2 arguments (usage: paddock inspect NAME)\n"},
		{[]string{"vmm"}, 2, ""},
		{[]string{"image", "info"}, 2, ""},
		{[]string{"image", "convert", "a"}, 2, ""},
		// Usage: flags.
		{[]string{"validate"}, 2, "paddock: required flag(s) \"file\" not set (see paddock validate --help)\n"},
		{[]string{"run"}, 2, "paddock: required flag(s) \"file\" not set (see paddock run --help)\n"},
		{[]string{"run", "-f", "-"}, 2, "paddock: run -f -: standard input is the guest's console; give the VM file's path\n"},
		{[]string{"create"}, 2, ""},
		{[]string{"up"}, 2, ""},
		{[]string{"image", "rebase", "a"}, 2, ""},
		{[]string{"create", "-f", missing, "--name", "Bad_Name"}, 2, ""},
		{[]string{"stop", "-t", "soon", "idle"}, 2, "paddock: invalid argument \"soon\" for \"-t, --timeout\" flag: want seconds (10) or a duration (90s, 2m), got \"soon\" (see paddock stop --help)\n"},
		{[]string{"stop", "-t", "-5", "idle"}, 2, "paddock: --timeout -5s: want 0 to 24h0m0s\n"},
		{[]string{"logs", "--tail", "many", "idle"}, 2, ""},
		{[]string{"console", "--tail", "-1", "idle"}, 2, ""},
		{[]string{"ls", "--label", "=x"}, 2, ""},
		{[]string{"doctor", "--json", "--quiet"}, 2, ""},
		// Outcomes.
		{[]string{"version"}, 0, ""},
		{[]string{"--version"}, 0, ""},
		{[]string{"version", "--json"}, 0, ""},
		{[]string{"image"}, 0, ""},
		{[]string{"help"}, 0, ""},
		{[]string{"help", "image", "convert"}, 0, ""},
		{[]string{"ls"}, 0, ""},
		{[]string{"ls", "--json"}, 0, ""},
		{[]string{"inspect", "idle"}, 0, ""},
		{[]string{"logs", "idle"}, 0, ""},
		{[]string{"validate", "-f", missing}, 1, missing + ": no such file or directory\n"},
		{[]string{"run", "-f", missing}, 1, missing + ": no such file or directory\n"},
		{[]string{"create", "-f", filepath.Join(dir, "idle.yaml")}, 4, "paddock: a VM named 'idle' exists already: remove it (paddock rm idle) or pick another name (--name)\n"},
		{[]string{"start", "nosuch"}, 3, "paddock: no VM named 'nosuch' (paddock ls lists them)\n"},
		{[]string{"stop", "-t", "10", "nosuch"}, 3, "paddock: no VM named 'nosuch' (paddock ls lists them)\n"},
		{[]string{"kill", "nosuch"}, 3, ""},
		{[]string{"pause", "nosuch"}, 3, ""},
		{[]string{"resume", "nosuch"}, 3, ""},
		{[]string{"inspect", "nosuch"}, 3, ""},
		{[]string{"logs", "nosuch"}, 3, ""},
		{[]string{"console", "nosuch"}, 3, ""},
		{[]string{"rm", "nosuch"}, 3, ""},
		{[]string{"stop", "idle"}, 4, ""},
		{[]string{"kill", "idle"}, 4, ""},
		{[]string{"pause", "idle"}, 4, ""},
		{[]string{"resume", "idle"}, 4, ""},
		{[]string{"console", "idle"}, 4, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, status := runPaddock(t, "", tt.args...)
			if status != tt.status || tt.stderr != "" && stderr != tt.stderr {
				t.Errorf("status %d, stderr %q; want status %d, stderr %q", status, stderr, tt.status, tt.stderr)
			}
			if status == codeUsage && stderr == "" {
				t.Errorf("usage error without a message")
			}
		})
	}
}

// TestSeveralNames checks the rule for commands given several VM names:
// every name is tried in order, each failure is printed as it happens,
// and the status is that of the first failure.
func TestSeveralNames(t *testing.T) {
	managedHome(t)
	notRunning := func(op string) string { return "paddock: cannot " + op + " VM 'idle': it is created\n" }
	noVM := "paddock: no VM named 'nosuch' (paddock ls lists them)\n"
	for _, tt := range []struct {
		args           []string
		stdout, stderr string
		status         int
	}{
		{[]string{"stop", "idle", "nosuch"}, "", notRunning("stop") + noVM, codeWrongState},
		{[]string{"stop", "nosuch", "idle"}, "", noVM + notRunning("stop"), codeNoVM},
		{[]string{"pause", "nosuch", "idle", "nosuch"}, "", noVM + notRunning("pause") + noVM, codeNoVM},
		{[]string{"rm", "idle", "nosuch"}, "idle: removed\n", noVM, codeNoVM},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, status := runPaddock(t, "", tt.args...)
			if stdout != tt.stdout || stderr != tt.stderr || status != tt.status {
				t.Errorf("stdout %q, stderr %q, status %d\nwant stdout %q, stderr %q, status %d", stdout, stderr, status, tt.stdout, tt.stderr, tt.status)
			}
		})
	}
}

// TestDoctorStatus checks doctor's status against the probe of this host:
// 0 with hardware virtualization, 3 emulated, 1 unusable, with or without
// --json.
func TestDoctorStatus(t *testing.T) {
	r := guest.HostReport()
	want := doctorReady
	switch {
	case !r.Usable:
		want = doctorUnusable
	case r.Acceleration != machine.AccelHardware:
		want = doctorEmulated
	}
	for _, args := range [][]string{{"doctor"}, {"doctor", "--quiet"}, {"doctor", "--json"}} {
		stdout, _, status := runPaddock(t, "", args...)
		if status != want {
			t.Errorf("%v: status %d, want %d", args, status, want)
		}
		if args[len(args)-1] == "--quiet" && stdout != "" {
			t.Errorf("doctor --quiet printed %q", stdout)
		}
	}
}
