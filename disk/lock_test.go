package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/disk/qemutest"
)

// self names this test process as a lock holder.
var self = fmt.Sprintf("%s (pid %d)", filepath.Base(os.Args[0]), os.Getpid())

// chain makes base.qcow2 and an overlay on it.
func chain(t *testing.T) (base, overlay string) {
	t.Helper()
	dir := qemutest.TempDir(t)
	base, overlay = filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "overlay.qcow2")
	if err := qcow2.Create(base, qcow2.CreateOptions{Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(overlay, qcow2.CreateOptions{BackingFile: "base.qcow2"}); err != nil {
		t.Fatal(err)
	}
	return base, overlay
}

// TestOpenLocksTheChain: a writable overlay takes the write lock on
// itself and a reader's lock on its backing file, which other readers
// share and writers cannot have.
func TestOpenLocksTheChain(t *testing.T) {
	base, overlay := chain(t)
	img, err := Open(overlay, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	_, err = Open(overlay, Options{ReadOnly: true})
	if want := "qcow2: " + overlay + " is in use: " + self + " writes it"; err == nil || err.Error() != want {
		t.Errorf("reader of a written overlay: %v\nwant %s", err, want)
	}
	var ie *imagefile.InUseError
	if !errors.As(err, &ie) || ie.Path != overlay {
		t.Errorf("not an InUseError: %#v", err)
	}
	shared, err := Open(overlay, Options{ReadOnly: true, ForceShare: true})
	if err != nil {
		t.Fatalf("-U reader of a written overlay: %v", err)
	}
	shared.Close()
	if _, err := Open(overlay, Options{ForceShare: true}); err == nil || !strings.Contains(err.Error(), "force-share needs a read-only open") {
		t.Errorf("force-share writer: %v", err)
	}
	// The base: readers share it, a writer is refused.
	for _, f := range []string{FormatQcow2, ""} {
		r, err := Open(base, Options{Format: f, ReadOnly: true})
		if err != nil {
			t.Fatalf("second reader of the base: %v", err)
		}
		r.Close()
	}
	_, err = Open(base, Options{})
	if want := "qcow2: " + base + " is in use: " + self + " reads it"; err == nil || err.Error() != want {
		t.Errorf("writer of a base in use: %v\nwant %s", err, want)
	}
	// Closing releases everything.
	img.Close()
	for _, p := range []string{overlay, base} {
		w, err := Open(p, Options{})
		if err != nil {
			t.Fatalf("after close: %v", err)
		}
		w.Close()
	}
}

// TestCreateOverwrites: Create replaces an existing file like qemu-img,
// but never one in use, and leaves nothing behind when it fails.
func TestCreateOverwrites(t *testing.T) {
	dir := qemutest.TempDir(t)
	p := filepath.Join(dir, "old.img")
	if err := os.WriteFile(p, []byte("old contents that must go"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{FormatRaw, FormatQcow2} {
		img, err := Create(p, CreateOptions{Format: format, Size: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := img.WriteAt([]byte("new"), 4096); err != nil {
			t.Fatal(err)
		}
		img.Close()
		got, err := Open(p, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		got.ReadAt(buf, 4096)
		if got.Capabilities().Format != format || got.Size() != 1<<20 || string(buf) != "new" {
			t.Errorf("%s: format %s, size %d, %q", format, got.Capabilities().Format, got.Size(), buf)
		}
		got.Close()
	}
	qemutest.Check(t, p)

	// An image in use is refused and keeps its contents.
	before, _ := os.ReadFile(p)
	user, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Create(p, CreateOptions{Format: FormatRaw, Size: 1})
	if want := "disk: create: " + p + " is in use: " + self + " reads it"; err == nil || err.Error() != want {
		t.Errorf("create over an image in use: %v\nwant %s", err, want)
	}
	user.Close()
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Error("a refused create changed the image")
	}

	// A failed create of a new file leaves nothing; not-files are refused.
	n := filepath.Join(dir, "new.qcow2")
	if _, err := Create(n, CreateOptions{Size: 1 << 20, Qcow2: qcow2.CreateOptions{ClusterSize: 3000}}); err == nil {
		t.Error("bad cluster size accepted")
	}
	if _, err := os.Stat(n); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed create left %s: %v", n, err)
	}
	if _, err := Create(dir, CreateOptions{Size: 1}); !errors.Is(err, imagefile.ErrNotImage) {
		t.Errorf("create over a directory: %v", err)
	}
}

// TestConvertTarget: convert overwrites an existing destination, refuses
// one in use, and names the mistake of converting onto the source.
func TestConvertTarget(t *testing.T) {
	base, overlay := chain(t)
	dir := filepath.Dir(base)
	dst := filepath.Join(dir, "dst.raw")
	if err := os.WriteFile(dst, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Convert(ctx, overlay, dst, ConvertOptions{DstFormat: FormatRaw}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dst); fi.Size() != 4<<20 {
		t.Errorf("destination size %d", fi.Size())
	}
	for _, target := range []string{overlay, base} {
		err := Convert(ctx, overlay, target, ConvertOptions{})
		want := "disk: convert " + overlay + " to " + target + ": the destination is the source or one of its backing files"
		if err == nil || err.Error() != want {
			t.Errorf("convert onto %s: %v", filepath.Base(target), err)
		}
	}
	qemutest.Check(t, overlay)
	qemutest.Check(t, base)
	user, err := Open(dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	if err := Convert(ctx, overlay, dst, ConvertOptions{}); !errors.Is(err, imagefile.ErrInUse) {
		t.Errorf("convert onto an image in use: %v", err)
	}
}

// TestNotImageFiles: a FIFO, a directory or a character device fails at
// once, saying what it is, with the path named once.
func TestNotImageFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, kind string }{
		{dir, "a directory"}, {fifo, "a named pipe (FIFO)"}, {"/dev/zero", "a character device"},
	} {
		want := "disk: " + tc.path + " is " + tc.kind + ", not a disk image (images are regular files or block devices)"
		if _, err := Detect(tc.path); err == nil || err.Error() != want {
			t.Errorf("Detect: %v\nwant %s", err, want)
		}
		if _, err := Open(tc.path, Options{Format: FormatRaw, ReadOnly: true}); err == nil || err.Error() != want {
			t.Errorf("Open raw: %v\nwant %s", err, want)
		}
		if _, err := Open(tc.path, Options{Format: FormatQcow2}); !errors.Is(err, imagefile.ErrNotImage) {
			t.Errorf("Open qcow2: %v", err)
		}
		if err := Convert(context.Background(), tc.path, filepath.Join(dir, "out"), ConvertOptions{}); !errors.Is(err, imagefile.ErrNotImage) {
			t.Errorf("Convert: %v", err)
		}
	}
}
