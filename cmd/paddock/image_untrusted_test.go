package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/internal/testenv"
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

// TestImageUntrustedBackingNames: under --untrusted, commit (the base it
// would write into), rebase and rebase -u (the new backing file) and info
// --backing-chain (each image of the chain) refuse every hostile backing
// name, an absolute path outside the directory, a "../" escape, a
// symbolic link leading out, a FIFO, a character and a block device, in
// one line naming the image and the backing file, and leave the images as
// they were.
func TestImageUntrustedBackingNames(t *testing.T) {
	root := qemutest.TempDir(t)
	dir := filepath.Join(root, "images")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(root, "secret.raw")
	if err := os.WriteFile(secret, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.qcow2")
	mustRun(t, "image", "create", "-q", plain, "1M")

	cases := []struct {
		name, backing, says string
		device              uint32 // a device node to make as dir/backing
	}{
		{"absolute path", secret, "is outside the allowed directories", 0},
		{"dot-dot escape", "../secret.raw", "is outside the allowed directories", 0},
		{"symbolic link escape", "link", "leads to " + secret, 0},
		{"FIFO", "fifo", "is a named pipe (FIFO), not a disk image", 0},
		{"character device", "chr", "is a character device, not a disk image", syscall.S_IFCHR},
		{"block device", "blk", "is a block device (allow devices explicitly)", syscall.S_IFBLK},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			if c.device != 0 {
				testenv.RequireRoot(t, "this test makes device nodes")
				node := filepath.Join(dir, c.backing)
				if err := syscall.Mknod(node, c.device|0o600, int(unix.Mkdev(7, 0))); err != nil {
					testenv.Unavailable(t, "cannot make a device node here: %v", err)
				}
				defer os.Remove(node)
			}
			// hostile's header names the backing file (set without a
			// policy, which only records the name when -F is given).
			hostile := filepath.Join(dir, "hostile.qcow2")
			os.Remove(hostile)
			mustRun(t, "image", "create", "-q", hostile, "1M")
			mustRun(t, "image", "rebase", "-q", "-u", "-b", c.backing, "-F", "raw", hostile)
			before := map[string][]byte{hostile: readFile(t, hostile), plain: readFile(t, plain)}
			for _, tc := range []struct {
				image string
				args  []string
			}{
				{hostile, []string{"image", "commit", "-q", "--untrusted", hostile}},
				{hostile, []string{"image", "info", "--untrusted", "--backing-chain", hostile}},
				{plain, []string{"image", "rebase", "-q", "--untrusted", "-b", c.backing, "-F", "raw", plain}},
				{plain, []string{"image", "rebase", "-q", "-u", "--untrusted", "-b", c.backing, "-F", "raw", plain}},
			} {
				_, errOut, status := runPaddock(t, "", tc.args...)
				if status != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.image+":") || !strings.Contains(errOut, c.backing) || !strings.Contains(errOut, c.says) {
					t.Errorf("paddock %s: status %d, stderr %q; want one line naming %s and %s that says %q", strings.Join(tc.args, " "), status, errOut, tc.image, c.backing, c.says)
				}
			}
			for p, b := range before {
				if !bytes.Equal(readFile(t, p), b) {
					t.Errorf("a refused command changed %s", p)
				}
			}
		})
	}
}

// TestImageInfoChainJudged: info --backing-chain describes the backing
// file it judged, and follows that file's own backing file, even when the
// name is swapped for another file right after the judgement (a walk
// that judged, then opened by name, would describe the other file).
func TestImageInfoChainJudged(t *testing.T) {
	dir := qemutest.TempDir(t)
	mid, judged, decoy := filepath.Join(dir, "mid.qcow2"), filepath.Join(dir, "judged.qcow2"), filepath.Join(dir, "decoy.qcow2")
	mustRun(t, "image", "create", "-q", filepath.Join(dir, "base.qcow2"), "1M")
	mustRun(t, "image", "create", "-q", "-b", "base.qcow2", "-F", "qcow2", mid, "2M")
	mustRun(t, "image", "create", "-q", decoy, "3M")
	top := filepath.Join(dir, "top.qcow2")
	mustRun(t, "image", "create", "-q", "-b", "mid.qcow2", "-F", "qcow2", top, "2M")

	imagefile.OnReopen(t, qemutest.SwapOnce(t, mid, judged, decoy))
	out := mustRun(t, "image", "info", "--untrusted", "--backing-chain", "--json", top)
	var infos []imageInfoJSON
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(infos) != 3 || infos[1].Filename != mid || infos[1].VirtualSize != 2<<20 || infos[1].BackingFilename != "base.qcow2" || infos[2].VirtualSize != 1<<20 {
		t.Errorf("the chain as described:\n%s\nwant top (2 MiB), mid.qcow2 as judged (2 MiB, over base.qcow2), base.qcow2 (1 MiB)", out)
	}
}

// readFile returns the contents of the file at path.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
