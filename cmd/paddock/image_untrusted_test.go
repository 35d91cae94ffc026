package main

import (
	"errors"
	"fmt"
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
	// A refused create over an existing image leaves it as it was.
	before, err := os.ReadFile(top)
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, status := runPaddock(t, "", "image", "create", "-q", "--untrusted", "-b", "/etc/passwd", "-F", "raw", top); status == 0 || !strings.Contains(errOut, "/etc/passwd") {
		t.Errorf("create --untrusted over an image: status %d, %q", status, errOut)
	}
	if after, _ := os.ReadFile(top); string(after) != string(before) {
		t.Errorf("a refused create changed %s", top)
	}
	// Allowed explicitly, or without --untrusted, the name is followed.
	mustRun(t, "image", "map", "--backing-dir", "/etc", hostile)
	mustRun(t, "image", "map", hostile)
}

// TestImageUntrustedLive: --untrusted goes with -U. An overlay a QEMU VM
// writes (its backing file inside the directory) is read by every reading
// command given both flags, in either order; without -U each is refused
// as in use; an overlay can be made on it under the policy; and a live
// image whose backing file lies outside the directory is still refused
// with -U, in one line naming the image and the file.
func TestImageUntrustedLive(t *testing.T) {
	dir := liveImages(t)
	ov, other := filepath.Join(dir, "ov.qcow2"), filepath.Join(dir, "other.qcow2")
	outside := filepath.Join(qemutest.TempDir(t), "secret.raw")
	if err := os.WriteFile(outside, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	hostile := filepath.Join(dir, "hostile.qcow2")
	mustRun(t, "image", "create", "-q", hostile, "1M")
	mustRun(t, "image", "rebase", "-q", "-u", "-b", outside, "-F", "raw", hostile)
	vm := qemutest.HoldVM(t, "file="+ov+",format=qcow2", "file="+hostile+",format=qcow2")
	holder := fmt.Sprintf("qemu-system-x86_64 (pid %d)", vm.PID)

	out := filepath.Join(dir, "out.raw")
	for _, tc := range []struct {
		name   string
		args   []string // the command and its arguments, before the files
		files  []string
		status int // refused without -U
	}{
		{"info", []string{"info", "--backing-chain"}, []string{ov}, 1},
		{"map", []string{"map"}, []string{ov}, 1},
		{"convert", []string{"convert", "-q"}, []string{ov, out}, 1},
		{"compare", []string{"compare", "-q"}, []string{ov, other}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, flags := range [][]string{{"-U", "--untrusted"}, {"--untrusted", "-U"}, {"-U", "--backing-dir", dir}} {
				args := append(append(append([]string{"image"}, tc.args...), flags...), tc.files...)
				stdout, errOut, status := runPaddock(t, "", args...)
				if status != 0 && !(tc.name == "compare" && status == 1) {
					t.Errorf("paddock %s: status %d\n%s%s", strings.Join(args, " "), status, stdout, errOut)
				}
			}
			args := append(append(append([]string{"image"}, tc.args...), "--untrusted"), tc.files...)
			_, errOut, status := runPaddock(t, "", args...)
			want := "paddock: image " + ov + " is in use: " + holder + " writes it; pass -U (--force-share) to read it anyway\n"
			if status != tc.status || errOut != want {
				t.Errorf("paddock %s: status %d, stderr %q\nwant %d, %q", strings.Join(args, " "), status, errOut, tc.status, want)
			}
			// The policy still holds under -U.
			files := append([]string{hostile}, tc.files[1:]...)
			args = append(append(append([]string{"image"}, tc.args...), "-U", "--untrusted"), files...)
			_, errOut, status = runPaddock(t, "", args...)
			if status == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, hostile+":") || !strings.Contains(errOut, outside) || !strings.Contains(errOut, "refused for an image opened as untrusted") {
				t.Errorf("paddock %s: status %d, stderr %q; want one line naming %s and %s", strings.Join(args, " "), status, errOut, hostile, outside)
			}
		})
	}
	// An external snapshot of the live disk, confined to its directory.
	snap := filepath.Join(dir, "snap.qcow2")
	mustRun(t, "image", "create", "-q", "--untrusted", "-b", "ov.qcow2", "-F", "qcow2", snap)
	mustRun(t, "image", "info", "--untrusted", "-U", "--backing-chain", snap)
}
