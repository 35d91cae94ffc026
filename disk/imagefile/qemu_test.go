package imagefile

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// The locks against QEMU's own, in both directions, with the real
// qemu-img, qemu-io and qemu-system-x86_64.

// images makes a raw image, a qcow2 image, and a qcow2 overlay on a qcow2
// base, with qemu-img.
func images(t *testing.T) (raw, q, base, overlay string) {
	t.Helper()
	dir := qemutest.TempDir(t)
	raw, q = filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.qcow2")
	base, overlay = filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "overlay.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "raw", raw, "16M")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", q, "16M")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", base, "16M")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	return raw, q, base, overlay
}

// qemu runs a QEMU tool and returns its combined output and whether it
// succeeded. A tool that gets the image and keeps running (a VM) is
// killed after a while and counts as failed.
func qemu(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	qemutest.NeedTool(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// TestQEMURefusesPaddocksImages: what paddock holds, QEMU's tools refuse
// as they refuse what another QEMU holds.
func TestQEMURefusesPaddocksImages(t *testing.T) {
	raw, q, _, _ := images(t)
	for _, tc := range []struct {
		name   string
		path   string
		access Access
		args   []string // a QEMU tool and its arguments; IMG is the image
		want   string   // "" = it succeeds; else what it must say
	}{
		// A paddock writer: nobody else writes, qcow2 readers need -U.
		{"write/qemu-io write qcow2", q, Write, []string{"qemu-io", "-c", "write 0 4k", "IMG"}, `Failed to get "write" lock`},
		{"write/qemu-io write raw", raw, Write, []string{"qemu-io", "-f", "raw", "-c", "write 0 4k", "IMG"}, `Failed to get "write" lock`},
		{"write/qemu-img info", q, Write, []string{"qemu-img", "info", "IMG"}, `Failed to get shared "write" lock`},
		{"write/qemu-img info -U", q, Write, []string{"qemu-img", "info", "-U", "IMG"}, ""},
		{"write/qemu-io -r -U", q, Write, []string{"qemu-io", "-r", "-U", "-c", "read 0 4k", "IMG"}, ""},
		{"write/qemu-img resize", q, Write, []string{"qemu-img", "resize", "IMG", "+1M"}, `Failed to get "write" lock`},
		{"write/qemu-img snapshot -c", q, Write, []string{"qemu-img", "snapshot", "-c", "x", "IMG"}, `Failed to get "write" lock`},
		{"write/qemu-img check -r all", q, Write, []string{"qemu-img", "check", "-r", "all", "IMG"}, `Failed to get "write" lock`},
		{"write/qemu-system", q, Write, []string{"qemu-system-x86_64", "-machine", "none", "-nodefaults", "-S", "-display", "none", "-drive", "file=IMG,if=none"}, `Failed to get "write" lock`},
		// A paddock reader (a read-only disk, a backing file): readers
		// share it, writers are refused.
		{"read/qemu-io write", q, Read, []string{"qemu-io", "-c", "write 0 4k", "IMG"}, `Failed to get "write" lock`},
		{"read/qemu-img info", q, Read, []string{"qemu-img", "info", "IMG"}, ""},
		{"read/qemu-io -r", q, Read, []string{"qemu-io", "-r", "-c", "read 0 4k", "IMG"}, ""},
		{"read/qemu-img resize raw", raw, Read, []string{"qemu-img", "resize", "-f", "raw", "IMG", "+1M"}, `Failed to get "write" lock`},
		// A paddock -U reader forbids nothing.
		{"read-shared/qemu-io write", q, ReadShared, []string{"qemu-io", "-c", "write 0 4k", "IMG"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.path, tc.access)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			args := append([]string(nil), tc.args[1:]...)
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "IMG", tc.path)
			}
			out, ok := qemu(t, tc.args[0], args...)
			switch {
			case tc.want == "" && !ok:
				t.Errorf("%s failed:\n%s", tc.args[0], out)
			case tc.want != "" && ok:
				t.Errorf("%s succeeded on an image paddock holds:\n%s", tc.args[0], out)
			case tc.want != "" && !strings.Contains(out, tc.want):
				t.Errorf("%s says %q, want %q", tc.args[0], out, tc.want)
			}
		})
	}
}

// TestPaddockRefusesQEMUsImages: what QEMU holds, paddock refuses, naming
// the QEMU process; shared bases stay shared.
func TestPaddockRefusesQEMUsImages(t *testing.T) {
	raw, q, base, overlay := images(t)
	vm := qemutest.HoldVM(t, "file="+q+",format=qcow2", "file="+raw+",format=raw", "file="+overlay+",format=qcow2")
	io := qemutest.HoldIO(t, "-r", "-f", "qcow2", base) // a second reader of the base
	vmName := fmt.Sprintf("qemu-system-x86_64 (pid %d)", vm.PID)
	ioName := fmt.Sprintf("qemu-io (pid %d)", io.PID)
	for _, tc := range []struct {
		name   string
		path   string
		access Access
		want   string // "" = granted
	}{
		{"writable qcow2/write", q, Write, q + " is in use: " + vmName + " writes it"},
		{"writable qcow2/read", q, Read, q + " is in use: " + vmName + " writes it"},
		{"writable qcow2/read -U", q, ReadShared, ""},
		{"writable raw/write", raw, Write, raw + " is in use: " + vmName + " writes it"},
		{"writable raw/read", raw, Read, raw + " is in use: " + vmName + " writes it"},
		{"writable raw/read -U", raw, ReadShared, ""},
		{"overlay/write", overlay, Write, overlay + " is in use: " + vmName + " writes it"},
		// The base: QEMU reads it as the overlay's backing file, and
		// qemu-io -r reads it too. More readers are welcome.
		{"backing/read", base, Read, ""},
		{"backing/read -U", base, ReadShared, ""},
		{"backing/write", base, Write, base + " is in use: " + vmName + " reads it, " + ioName + " reads it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.path, tc.access)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				f.Close()
				return
			}
			if err == nil {
				f.Close()
				t.Fatal("granted")
			}
			// Holders are sorted by pid; the VM started first.
			if err.Error() != tc.want {
				t.Errorf("error %q\nwant  %q", err, tc.want)
			}
			if err := Check(tc.path, tc.access); err == nil || err.Error() != tc.want {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

// TestPaddockRefusesQEMUIOWriter: qemu-io writing a raw image takes the
// write permission without forbidding anything; paddock's readers forbid
// writing, so they are refused unless they share (-U).
func TestPaddockRefusesQEMUIOWriter(t *testing.T) {
	raw, _, _, _ := images(t)
	io := qemutest.HoldIO(t, "-f", "raw", raw)
	_, err := Open(raw, Read)
	if want := fmt.Sprintf("%s is in use: qemu-io (pid %d) writes it", raw, io.PID); err == nil || err.Error() != want {
		t.Errorf("reader under qemu-io: %v\nwant %s", err, want)
	}
	f, err := Open(raw, ReadShared)
	if err != nil {
		t.Fatalf("-U reader under qemu-io: %v", err)
	}
	f.Close()
}
