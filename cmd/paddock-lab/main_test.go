package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/bzimage"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// execute runs the command tree with args and returns stdout and stderr.
func execute(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestGuestCommand(t *testing.T) {
	testenv.RequireTool(t, "apt-get", "apt")
	testenv.RequireTool(t, "dpkg-deb", "dpkg")
	testenv.RequireTool(t, "xz", "xz-utils")
	dir := filepath.Join(t.TempDir(), "guest")
	out, errOut, err := execute(t, "guest", "--out", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd.img")}, "\n") + "\n"
	if out != want {
		t.Errorf("stdout %q, want the three paths %q", out, want)
	}
	if errOut != "" {
		t.Errorf("progress printed although stderr is not a terminal: %q", errOut)
	}
	f, err := os.Open(filepath.Join(dir, "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := bzimage.PVHEntry(f); err != nil {
		t.Error(err)
	}
}

func TestRunCommandErrors(t *testing.T) {
	if _, _, err := execute(t, "run"); err == nil {
		t.Error("run without a script succeeded")
	}
	if _, _, err := execute(t, "run", "/nonexistent/script.sh"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run with a missing script: %v", err)
	}
	script := filepath.Join(t.TempDir(), "s.sh")
	os.WriteFile(script, []byte("true\n"), 0o644)
	if _, _, err := execute(t, "run", "--file", "nocolon", script); err == nil || !strings.Contains(err.Error(), "HOST:/ABSOLUTE/L1/PATH") {
		t.Errorf("bad --file: %v", err)
	}
	if _, _, err := execute(t, "run", "--l1-cpus", "0", script); err == nil || !strings.Contains(err.Error(), "--l1-cpus") {
		t.Errorf("bad --l1-cpus: %v", err)
	}
}

func TestParseFileFlags(t *testing.T) {
	files, err := parseFileFlags([]string{"/host/a:/guest/a", "rel/b:/opt/../opt/b"})
	if err != nil {
		t.Fatal(err)
	}
	if files["/guest/a"].Source != "/host/a" || files["/opt/b"].Source != "rel/b" || len(files) != 2 {
		t.Errorf("files %+v", files)
	}
	for _, bad := range []string{"", ":/x", "a:relative", "a"} {
		if _, err := parseFileFlags([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExitError(t *testing.T) {
	e := &exitError{code: 3}
	if e.Error() != "exit status 3" || e.Unwrap() != nil {
		t.Errorf("%v %v", e, e.Unwrap())
	}
	inner := errors.New("boom")
	if e := (&exitError{code: 1, err: inner}); !errors.Is(e, inner) || e.Error() != "boom" {
		t.Errorf("%v", e)
	}
}
