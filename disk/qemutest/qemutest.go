// Package qemutest holds test helpers shared by the disk packages: QEMU's
// tools as oracles, scratch directories, data patterns.
package qemutest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// TempDir returns a fresh directory for test images: on tmpfs when the
// machine has one (the tests check formats, not the disk: fdatasync on a
// real disk only makes them slow), else t.TempDir.
func TempDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "paddock-qcow2-test-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// NeedTool declares t an oracle test and ends it when QEMU's tool name
// (qemu-img and qemu-io from qemu-utils, qemu-system-x86_64 from
// qemu-system-x86) is not installed: a skip outside CI, a failure in CI
// (internal/testenv).
func NeedTool(t testing.TB, name string) {
	t.Helper()
	pkg := "qemu-utils"
	if strings.HasPrefix(name, "qemu-system-") {
		pkg = "qemu-system-x86"
	}
	testenv.RequireTool(t, name, pkg)
}

// Run runs a command and fails the test if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// QemuImg runs qemu-img.
func QemuImg(t testing.TB, args ...string) string {
	t.Helper()
	NeedTool(t, "qemu-img")
	return Run(t, "qemu-img", args...)
}

// QemuIO runs qemu-io commands on a qcow2 image.
func QemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	NeedTool(t, "qemu-io")
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := Run(t, "qemu-io", append(args, path)...)
	if strings.Contains(out, "error") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io %s: %s", path, out)
	}
}

// Check runs `qemu-img check` (with extra options, such as -U for an
// image paddock holds open) and fails on corruptions or errors; leaks are
// returned for the caller to judge.
func Check(t testing.TB, path string, extra ...string) (leaks int) {
	t.Helper()
	NeedTool(t, "qemu-img")
	args := append(append([]string{"check", "--output=json"}, extra...), path)
	out, err := exec.Command("qemu-img", args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(out) == 0 {
		err = fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	var r struct {
		Corruptions int `json:"corruptions"`
		Leaks       int `json:"leaks"`
		CheckErrors int `json:"check-errors"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		human, _ := exec.Command("qemu-img", append(append([]string{"check"}, extra...), path)...).CombinedOutput()
		t.Fatalf("qemu-img check %s: %v (%v)\n%s\n%s", path, err, jerr, out, human)
	}
	if r.Corruptions != 0 || r.CheckErrors != 0 {
		human, _ := exec.Command("qemu-img", append(append([]string{"check"}, extra...), path)...).CombinedOutput()
		t.Fatalf("qemu-img check %s: %d corruptions, %d check errors\n%s", path, r.Corruptions, r.CheckErrors, human)
	}
	return r.Leaks
}

// Raw returns QEMU's view of an image's contents (convert to raw).
func Raw(t testing.TB, path string, extra ...string) []byte {
	t.Helper()
	out := filepath.Join(TempDir(t), "qemu.raw")
	QemuImg(t, append(append([]string{"convert"}, extra...), "-O", "raw", path, out)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ReadAll reads a whole image through paddock.
func ReadAll(t testing.TB, r io.ReaderAt, size int64) []byte {
	t.Helper()
	buf := make([]byte, size)
	// Odd-sized chunks exercise unaligned reads.
	for off := int64(0); off < size; {
		n := min(size-off, 1<<20+4096+512)
		if _, err := r.ReadAt(buf[off:off+n], off); err != nil && err != io.EOF {
			t.Fatalf("ReadAt %#x+%d: %v", off, n, err)
		}
		off += n
	}
	return buf
}

// SameBytes fails with the first difference.
func SameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	if bytes.Equal(got, want) {
		return
	}
	for i := range got {
		if got[i] != want[i] {
			end := min(i+16, len(got))
			t.Fatalf("%s: first difference at %#x: got % x, want % x", what, i, got[i:end], want[i:end])
		}
	}
}

// FillPattern fills p with bytes derived from seed and position, so that
// any misplaced block shows up.
func FillPattern(p []byte, seed int64) {
	r := rand.New(rand.NewSource(seed))
	r.Read(p)
}

// WriteRawImage writes a raw file of the given size with a mix of zero
// runs, random data and compressible text, and returns its contents.
func WriteRawImage(t testing.TB, path string, size int64, seed int64) []byte {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	buf := make([]byte, size)
	for off := int64(0); off < size; {
		n := min(size-off, int64(r.Intn(256<<10)+512))
		switch r.Intn(4) {
		case 0: // zeros
		case 1:
			r.Read(buf[off : off+n])
		default:
			s := fmt.Sprintf("paddock block at %#x seed %d; ", off, seed)
			for i := int64(0); i < n; i++ {
				buf[off+i] = s[i%int64(len(s))]
			}
		}
		off += n
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return buf
}

// WantLocks asks qemu-io what the locks others hold on the image at path
// (in format) let it do, reading the first sector each time so that
// nothing is written: writable says whether qemu-io may open it for
// writing, readable whether qemu-io -r may open it (a writer's lock
// forbids both; a reader's lock forbids writing). A difference fails the
// test.
func WantLocks(t testing.TB, format, path string, writable, readable bool) {
	t.Helper()
	NeedTool(t, "qemu-io")
	for _, try := range []struct {
		flags []string
		want  bool
		what  string
	}{
		{nil, writable, "for writing"},
		{[]string{"-r"}, readable, "read-only"},
	} {
		args := append(append(try.flags, "-f", format, "-c", "read 0 512"), path)
		out, err := exec.Command("qemu-io", args...).CombinedOutput()
		refused := err != nil && strings.Contains(string(out), "lock")
		if err != nil && !refused {
			t.Fatalf("qemu-io %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !refused != try.want {
			t.Errorf("qemu-io can open %s %s: %t, want %t\n%s", path, try.what, !refused, try.want, out)
		}
	}
}

// SwapOnce returns a hook for imagefile.OnReopen that, the first time it
// is called with path (the moment between the judgement of a backing
// file and its open), moves the file at path to judged and puts a
// symbolic link to decoy in its place: what an attacker who swaps the
// name at the worst moment does. A caller that judged the file and then
// opened it by name would open decoy. The test fails if no open reached
// path.
func SwapOnce(t testing.TB, path, judged, decoy string) func(string) {
	t.Helper()
	var swapped atomic.Bool
	t.Cleanup(func() {
		if !swapped.Load() {
			t.Errorf("nothing reopened %s", path)
		}
	})
	return func(p string) {
		if p != path || swapped.Swap(true) {
			return
		}
		if err := os.Rename(path, judged); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(decoy, path); err != nil {
			t.Error(err)
		}
	}
}

// SameFile fails the test unless the open file f is the file at path.
func SameFile(t testing.TB, f *os.File, path string) {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, want) {
		t.Errorf("%s is open on another file than %s", f.Name(), path)
	}
}
