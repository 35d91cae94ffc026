package disk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// inUse reports whether the image at path is locked against a writer.
func inUse(t *testing.T, path string) bool {
	t.Helper()
	err := imagefile.Check(path, imagefile.Write)
	if err != nil && !errors.Is(err, imagefile.ErrInUse) {
		t.Fatal(err)
	}
	return err != nil
}

// TestHandoverChain hands a writable overlay on a qcow2 base over and
// opens it again from the files alone: the chain reads as before, the
// locks never lapse (a writer is refused on both files throughout), and
// closing the image opened from the files releases them.
func TestHandoverChain(t *testing.T) {
	base, overlay := chain(t)
	qemutest.QemuIO(t, base, "write -P 0x62 0 64k")
	qemutest.QemuIO(t, overlay, "write -P 0x6f 64k 64k")
	img, err := Open(overlay, Options{Format: FormatQcow2})
	if err != nil {
		t.Fatal(err)
	}
	files, err := Handover(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name() != overlay || files[1].Name() != base {
		t.Fatalf("handed files %v, want the overlay then its base", names(files))
	}
	if !inUse(t, overlay) || !inUse(t, base) {
		t.Fatal("a handed-over image lost its locks")
	}
	// Remove both names: the files alone must do.
	os.Remove(overlay)
	os.Remove(base)
	again, err := OpenFiles(files, Options{Format: FormatQcow2})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 128<<10)
	if _, err := again.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x62 || b[64<<10-1] != 0x62 || b[64<<10] != 0x6f || b[128<<10-1] != 0x6f {
		t.Fatalf("the chain opened from the files reads % x ... % x", b[:4], b[64<<10:64<<10+4])
	}
	if _, err := again.WriteAt([]byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Handover(img); err == nil {
		t.Error("an image handed over twice")
	}
}

// TestHandoverRaw: a raw image's one file carries its write lock.
func TestHandoverRaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := CreateRaw(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	img, err := Open(path, Options{Format: FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	files, err := Handover(img)
	if err != nil || len(files) != 1 {
		t.Fatalf("Handover = %v, %v", names(files), err)
	}
	again, err := OpenFiles(files, Options{Format: FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	if !inUse(t, path) {
		t.Error("the raw image opened from its handed file is not locked")
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if inUse(t, path) {
		t.Error("the image stays locked after Close")
	}
}

// TestOpenFilesRefuses: handed files that do not make the chain their
// headers describe are refused, naming the image, and closed.
func TestOpenFilesRefuses(t *testing.T) {
	base, overlay := chain(t)
	open := func(path string, ro bool) *os.File {
		f, err := imagefile.Open(path, imagefile.AccessFor(ro, false))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		files  func() []*os.File
		format string
		want   string
	}{
		{"backing file missing", func() []*os.File { return []*os.File{open(overlay, false)} }, FormatQcow2,
			overlay + ` names the backing file "base.qcow2", but no file was handed over for it`},
		{"a file too many", func() []*os.File { return []*os.File{open(base, false), open(overlay, true)} }, FormatQcow2,
			"disk: " + base + ": 1 backing files were handed over, the chain has 0"},
		{"raw with backing", func() []*os.File { return []*os.File{open(base, false), open(overlay, true)} }, FormatRaw,
			"a raw image has no backing files, 1 were handed over"},
		{"no format", func() []*os.File { return []*os.File{open(base, false)} }, "",
			"unknown disk image format"},
		{"wrong format", func() []*os.File { return []*os.File{open(overlay, false), open(base, true)} }, FormatRaw,
			"a raw image has no backing files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testenv.OpenFDs(t)
			files := tc.files()
			img, err := OpenFiles(files, Options{Format: tc.format})
			if err == nil {
				img.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant it to contain %q", err, tc.want)
			}
			if after := testenv.OpenFDs(t); after != before {
				t.Errorf("%d descriptors left open", after-before)
			}
		})
	}
	if _, err := OpenFiles(nil, Options{Format: FormatRaw}); err == nil {
		t.Error("opened no files")
	}
}

func names(files []*os.File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Name())
	}
	return out
}
