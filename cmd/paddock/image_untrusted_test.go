package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// TestImageUntrusted: --untrusted keeps the backing chain inside the
// image's directory (and --backing-dir): a legitimate chain works, a
// header naming a host file is refused with one line naming the image and
// the file, and nothing is left behind; without the flag paddock follows
// the name as qemu-img does.
func TestImageUntrusted(t *testing.T) {
	dir := qemutest.TempDir(t)
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	hostile := filepath.Join(dir, "hostile.qcow2")
	mustRun(t, "image", "create", "-q", base, "1M")
	mustRun(t, "image", "create", "-q", "-b", "base.qcow2", "-F", "qcow2", top)
	mustRun(t, "image", "create", "-q", hostile, "1M")
	mustRun(t, "image", "rebase", "-u", "-b", "/etc/passwd", "-F", "raw", hostile)

	mustRun(t, "image", "convert", "--untrusted", "-O", "raw", top, filepath.Join(dir, "top.raw"))
	mustRun(t, "image", "info", "--untrusted", "--backing-chain", top)

	out := filepath.Join(dir, "out.raw")
	for _, args := range [][]string{
		{"image", "convert", "--untrusted", "-O", "raw", hostile, out},
		{"image", "map", "--untrusted", hostile},
		{"image", "info", "--untrusted", "--backing-chain", hostile},
		{"image", "commit", "--untrusted", hostile},
		{"image", "rebase", "--untrusted", "-b", "", hostile},
		{"image", "convert", "--backing-dir", filepath.Join(dir, "elsewhere"), "-O", "raw", hostile, out},
		{"image", "create", "--untrusted", "-b", "/etc/passwd", "-F", "raw", filepath.Join(dir, "new.qcow2")},
	} {
		_, errOut, status := runPaddock(t, "", args...)
		named := hostile
		if args[1] == "create" {
			named = filepath.Join(dir, "new.qcow2")
		}
		if status == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, named) || !strings.Contains(errOut, "/etc/passwd") {
			t.Errorf("paddock %s: status %d, stderr %q; want one line naming %s and /etc/passwd", strings.Join(args, " "), status, errOut, named)
		}
	}
	for _, left := range []string{out, filepath.Join(dir, "new.qcow2")} {
		if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused command left %s behind", left)
		}
	}
	// Allowed explicitly, or without --untrusted, the name is followed.
	mustRun(t, "image", "map", "--backing-dir", "/etc", hostile)
	mustRun(t, "image", "map", hostile)
}
