package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/internal/testguest"
)

// runPaddock executes the paddock command tree with args and stdin, and
// returns its standard output, standard error and exit status as main
// would map it.
func runPaddock(t *testing.T, stdin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	status = 0
	if err != nil {
		status = 1
		var ee *exitError
		if errors.As(err, &ee) {
			status = ee.code
			err = ee.err
		}
		if err != nil { // main prints these
			printError(&errOut, err)
		}
	}
	return out.String(), errOut.String(), status
}

// vmDir makes a directory with a kernel (a small PVH guest, not Linux, so
// that no host refuses it), an initrd and a FIFO, and writes files (name
// -> YAML) into it.
func vmDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	testguest.PVHStub(t, dir, "vmlinuz")
	files["initrd.img"] = "initrd bytes"
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestValidateCommand(t *testing.T) {
	dir := vmDir(t, map[string]string{
		"good.yaml":   "name: good\ncpus: 2\nmemory: 1GiB\nkernel: vmlinuz\ninitrd: initrd.img\n",
		"bad.yaml":    "name: Bad\ncpus: 0\nkernel: vmlinuz\ncolour: red\n",
		"worse.yaml":  "name: worse\ncpus: 0\nmemory: 8MiB\nkernel: nope\nconsole: tty\n",
		"huge.yaml":   "name: huge\nmemory: 1TiB\nkernel: vmlinuz\n",
		"broken.yaml": "name: x\n  cpus: 1\n",
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name           string
		stdin          string
		args           []string
		stdout, stderr string
		status         int
	}{
		{"valid", "", []string{"validate", "-f", p("good.yaml")},
			p("good.yaml") + ": ok\n", "", 0},
		{"long flag", "", []string{"validate", "--file", p("good.yaml")},
			p("good.yaml") + ": ok\n", "", 0},
		{"a decoding problem does not hide the others", "", []string{"validate", "-f", p("bad.yaml")},
			"", p("bad.yaml") + ":1:7: name: must be a DNS label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got \"Bad\"\n" +
				p("bad.yaml") + ":2:7: cpus: must be between 1 and 255, got 0\n" +
				p("bad.yaml") + ":4:1: colour: unknown field; known fields: name, labels, tenant, from, root_size, cpus, memory, kernel, initrd, cmdline, disks, nics, ports, rng, console, on_reboot, restart, backend, libvirt, cloud_init, user, ssh_keys, user_data\n", 1},
		{"every validation problem, one per line", "", []string{"validate", "-f", p("worse.yaml")},
			"", p("worse.yaml") + ":2:7: cpus: must be between 1 and 255, got 0\n" +
				p("worse.yaml") + ":3:9: memory: must be at least 32MiB, got 8MiB\n" +
				p("worse.yaml") + ":4:9: kernel: " + p("nope") + ": no such file or directory\n" +
				p("worse.yaml") + ":5:10: console.mode: must be one of stdio, log, none; got \"tty\"\n", 1},
		{"malformed YAML", "", []string{"validate", "-f", p("broken.yaml")},
			"", p("broken.yaml") + ":2: invalid YAML: mapping values are not allowed in this context\n", 1},
		{"missing file", "", []string{"validate", "-f", p("missing.yaml")},
			"", p("missing.yaml") + ": no such file or directory\n", 1},
		{"standard input", "name: piped\nkernel: " + p("vmlinuz") + "\n", []string{"validate", "-f", "-"},
			"<stdin>: ok\n", "", 0},
		{"standard input with a problem", "name: piped\ncpus: 999\nkernel: " + p("vmlinuz") + "\n", []string{"validate", "-f", "-"},
			"", "<stdin>:2:7: cpus: must be between 1 and 255, got 999\n", 1},
		{"a FIFO, refused without waiting for a writer", "", []string{"validate", "-f", p("fifo")},
			"", p("fifo") + ": a named pipe, not a regular file\n", 1},
		{"a character device", "", []string{"validate", "-f", "/dev/zero"},
			"", "/dev/zero: a character device, not a regular file\n", 1},
		{"a directory", "", []string{"validate", "-f", dir},
			"", dir + ": a directory, not a regular file\n", 1},
		{"no -f", "", []string{"validate"},
			"", "paddock: required flag(s) \"file\" not set (see paddock validate --help)\n", 2},
		{"empty -f", "", []string{"validate", "-f", ""},
			"", "paddock: -f needs a file name (or - for standard input)\n", 2},
		{"stray argument", "", []string{"validate", "-f", p("good.yaml"), "extra"},
			"", "paddock: validate takes no arguments, got \"extra\" (usage: paddock validate -f FILE)\n", 2},
		{"unknown flag", "", []string{"validate", "-f", p("good.yaml"), "--strict"},
			"", "paddock: unknown flag: --strict (see paddock validate --help)\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, status := runPaddock(t, tt.stdin, tt.args...)
			if stdout != tt.stdout || stderr != tt.stderr || status != tt.status {
				t.Errorf("paddock %s:\nstdout %q\nstderr %q\nstatus %d\nwant:\nstdout %q\nstderr %q\nstatus %d",
					strings.Join(tt.args, " "), stdout, stderr, status, tt.stdout, tt.stderr, tt.status)
			}
		})
	}

	// The host's RAM bounds memory: 1TiB is structurally fine, but more
	// than any machine that runs these tests has.
	_, stderr, status := runPaddock(t, "", "validate", "-f", p("huge.yaml"))
	if want := p("huge.yaml") + ":2:9: memory: must be at most the host's RAM ("; !strings.HasPrefix(stderr, want) || status != 1 {
		t.Errorf("huge.yaml: stderr %q, status %d; want %q..., status 1", stderr, status, want)
	}
}

func TestValidateCommandJSON(t *testing.T) {
	dir := vmDir(t, map[string]string{
		"good.yaml": "name: good\nmemory: 1.5GiB\nkernel: vmlinuz\nconsole: {mode: log, log: c.log}\n",
		"bad.yaml":  "name: bad\ncpus: 0\nkernel: vmlinuz\nmemory: lots\n",
	})
	type report struct {
		File   string
		Valid  bool
		Config *struct {
			Name    string
			Tenant  string
			CPUs    int
			Memory  uint64
			Kernel  string
			Initrd  *string
			Cmdline string
			Console struct {
				Mode, Log string
				LogSize   uint64 `json:"log_size"`
				LogKeep   int    `json:"log_keep"`
			}
			OnReboot string `json:"on_reboot"`
			Restart  string
			Backend  string
		}
		Problems []struct {
			Line, Column   int
			Field, Message string
		}
		Warnings []struct {
			Line, Column   int
			Field, Message string
		}
	}
	decode := func(t *testing.T, stdout string) report {
		t.Helper()
		var r report
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decode %q: %v", stdout, err)
		}
		return r
	}

	good := filepath.Join(dir, "good.yaml")
	stdout, stderr, status := runPaddock(t, "", "validate", "-f", good, "--json")
	if status != 0 || stderr != "" {
		t.Fatalf("valid: status %d, stderr %q", status, stderr)
	}
	r := decode(t, stdout)
	c := r.Config
	if r.File != good || !r.Valid || r.Problems != nil || c == nil {
		t.Fatalf("valid report: %s", stdout)
	}
	if c.Name != "good" || c.CPUs != 1 || c.Memory != 1536<<20 || c.Kernel != filepath.Join(dir, "vmlinuz") ||
		c.Initrd != nil || c.Cmdline != "console=ttyS0" || c.Console.Mode != "log" ||
		c.Console.Log != filepath.Join(dir, "c.log") || c.Console.LogSize != 4<<20 || c.Console.LogKeep != 1 ||
		c.OnReboot != "exit" || c.Restart != "no" || c.Backend != "native" || c.Tenant != "default" {
		t.Errorf("resolved config: %s", stdout)
	}

	bad := filepath.Join(dir, "bad.yaml")
	stdout, stderr, status = runPaddock(t, "", "validate", "-f", bad, "--json")
	if status != 1 || stderr != "" {
		t.Fatalf("invalid: status %d, stderr %q", status, stderr)
	}
	r = decode(t, stdout)
	if r.File != bad || r.Valid || r.Config != nil || len(r.Problems) != 2 {
		t.Fatalf("invalid report: %s", stdout)
	}
	// The bad size does not hide the bad cpus.
	if pr := r.Problems[0]; pr.Line != 2 || pr.Column != 7 || pr.Field != "cpus" || pr.Message != "must be between 1 and 255, got 0" {
		t.Errorf("problem 1: %+v", pr)
	}
	if pr := r.Problems[1]; pr.Line != 4 || pr.Column != 9 || pr.Field != "memory" ||
		pr.Message != `"lots" is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB` {
		t.Errorf("problem 2: %+v", pr)
	}
}
