package cpio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// entry is one archive member in a test table.
type entry struct {
	name   string
	mode   fs.FileMode
	data   string
	target string
	major  uint32
	minor  uint32
}

// sample is an initramfs-like tree with every entry type the kernel uses.
var sample = []entry{
	{name: "dev", mode: fs.ModeDir | 0o755},
	{name: "dev/console", mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, major: 5, minor: 1},
	{name: "dev/sda", mode: fs.ModeDevice | 0o660, major: 8, minor: 0},
	{name: "bin", mode: fs.ModeDir | 0o755},
	{name: "bin/busybox", mode: 0o755, data: "\x7fELF not really"},
	{name: "bin/sh", mode: fs.ModeSymlink | 0o777, target: "busybox"},
	{name: "/init", mode: 0o755, data: "#!/bin/sh\necho hi\n"},
	{name: "empty", mode: 0o644},
	{name: "tmp", mode: fs.ModeDir | fs.ModeSticky | 0o777},
	{name: "bin/su", mode: fs.ModeSetuid | 0o755, data: "x"},
	{name: "run", mode: fs.ModeDir | 0o755},
	{name: "run/fifo", mode: fs.ModeNamedPipe | 0o644},
	{name: "odd-sizes/a", mode: 0o644, data: "1"},
	{name: "odd-sizes/ab", mode: 0o644, data: "12"},
	{name: "odd-sizes/abc", mode: 0o644, data: "123"},
	{name: "odd-sizes/abcd", mode: 0o644, data: "1234"},
}

func writeArchive(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	dirs := map[string]bool{}
	for _, e := range entries {
		// Parent directories the table does not list (odd-sizes/).
		if d := filepath.Dir(strings.TrimPrefix(e.name, "/")); d != "." && !dirs[d] {
			dirs[d] = true
			if !containsEntry(entries, d) {
				if err := w.AddDir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		h := &Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Linkname: e.target, RdevMajor: e.major, RdevMinor: e.minor}
		if err := w.WriteHeader(h); err != nil {
			t.Fatalf("WriteHeader(%q): %v", e.name, err)
		}
		if e.mode.Type() == 0 {
			if _, err := io.WriteString(w, e.data); err != nil {
				t.Fatalf("Write(%q): %v", e.name, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Written() != int64(buf.Len()) {
		t.Errorf("Written() = %d, buffer has %d bytes", w.Written(), buf.Len())
	}
	return buf.Bytes()
}

func containsEntry(entries []entry, name string) bool {
	for _, e := range entries {
		if strings.TrimPrefix(e.name, "/") == name {
			return true
		}
	}
	return false
}

func TestRoundTrip(t *testing.T) {
	data := writeArchive(t, sample)
	if len(data)%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", len(data))
	}
	got := map[string]*Header{}
	content := map[string]string{}
	r := NewReader(bytes.NewReader(data))
	inos := map[uint32]string{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := inos[h.Ino]; dup {
			t.Errorf("entries %q and %q share inode %d (the kernel would hard-link them)", prev, h.Name, h.Ino)
		}
		inos[h.Ino] = h.Name
		if h.Mtime != 0 {
			t.Errorf("%s: mtime %d, want 0", h.Name, h.Mtime)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		content[h.Name] = string(b)
	}
	for _, e := range sample {
		name := strings.TrimPrefix(e.name, "/")
		h, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from archive", name)
			continue
		}
		if h.Mode != e.mode {
			t.Errorf("%s: mode %v, want %v", name, h.Mode, e.mode)
		}
		if h.Linkname != e.target {
			t.Errorf("%s: link %q, want %q", name, h.Linkname, e.target)
		}
		if e.mode.Type() == 0 && content[name] != e.data {
			t.Errorf("%s: data %q, want %q", name, content[name], e.data)
		}
		if h.RdevMajor != e.major || h.RdevMinor != e.minor {
			t.Errorf("%s: rdev %d:%d, want %d:%d", name, h.RdevMajor, h.RdevMinor, e.major, e.minor)
		}
	}
}

func TestReproducible(t *testing.T) {
	a := writeArchive(t, sample)
	b := writeArchive(t, sample)
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same entries differ")
	}
}

// TestExactBytes checks one entry and the trailer against the layout in
// the kernel's buffer-format.rst, field by field.
func TestExactBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.AddFile("init", 0o755, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "070701" +
		"00000001" + // ino
		"000081ed" + // mode: S_IFREG | 0755
		"00000000" + "00000000" + // uid, gid
		"00000001" + // nlink
		"00000000" + // mtime
		"00000005" + // filesize
		"00000000" + "00000000" + // devmajor, devminor
		"00000000" + "00000000" + // rdevmajor, rdevminor
		"00000005" + // namesize incl. NUL
		"00000000" + // check
		"init\x00" + "\x00" + // 110+5 = 115, padded to 116
		"hello" + "\x00\x00\x00" + // 5 data bytes padded to 8
		"070701" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" +
		"0000000b" + "00000000" +
		"TRAILER!!!\x00" + "\x00\x00\x00" // 110+11 = 121, padded to 124
	if got := buf.String(); got != want {
		t.Fatalf("archive bytes:\n got %q\nwant %q", got, want)
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"empty name", func(w *Writer) error { return w.AddDir("/", 0o755) }, "is empty"},
		{"dotdot", func(w *Writer) error { return w.AddFile("a/../b", 0o644, nil) }, `".."`},
		{"dot", func(w *Writer) error { return w.AddFile("./b", 0o644, nil) }, `"."`},
		{"double slash", func(w *Writer) error { return w.AddFile("a//b", 0o644, nil) }, "empty"},
		{"nul", func(w *Writer) error { return w.AddFile("a\x00b", 0o644, nil) }, "NUL"},
		{"trailer name", func(w *Writer) error { return w.AddFile(Trailer, 0o644, nil) }, "reserved"},
		{"long name", func(w *Writer) error { return w.AddFile(strings.Repeat("a", 5000), 0o644, nil) }, "long"},
		{"symlink without target", func(w *Writer) error { return w.WriteHeader(&Header{Name: "l", Mode: fs.ModeSymlink}) }, "no target"},
		{"negative size", func(w *Writer) error { return w.WriteHeader(&Header{Name: "f", Size: -1}) }, "size -1"},
		{"huge size", func(w *Writer) error { return w.WriteHeader(&Header{Name: "f", Size: 1 << 33}) }, "4 GiB"},
		{"bad uid", func(w *Writer) error { return w.WriteHeader(&Header{Name: "f", UID: -1}) }, "uid"},
		{"bad mtime", func(w *Writer) error { return w.WriteHeader(&Header{Name: "f", Mtime: -5}) }, "mtime"},
		{"irregular type", func(w *Writer) error { return w.WriteHeader(&Header{Name: "f", Mode: fs.ModeIrregular}) }, "unsupported file type"},
		{"AddFile with dir mode", func(w *Writer) error { return w.AddFile("f", fs.ModeDir, nil) }, "not a regular file"},
		{"too much data", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Size: 2}); err != nil {
				return err
			}
			_, err := w.Write([]byte("abc"))
			return err
		}, "too long"},
		{"too little data", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Size: 2}); err != nil {
				return err
			}
			return w.Close()
		}, "missing 2 data bytes"},
		{"short source", func(w *Writer) error { return w.AddFileFrom("f", 0o644, 10, strings.NewReader("abc")) }, "after 3 of 10"},
		{"header after close", func(w *Writer) error {
			if err := w.Close(); err != nil {
				return err
			}
			return w.AddDir("d", 0o755)
		}, "after close"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(NewWriter(io.Discard))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	good := writeArchive(t, sample[:5])
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"bad magic", append([]byte("070707"), good[6:]...), "bad magic"},
		{"not hex", append(append([]byte{}, good[:6]...), append([]byte("zzzzzzzz"), good[14:]...)...), "not hex"},
		{"truncated header", good[:50], "unexpected EOF"},
		{"truncated data", good[:len(good)-200], "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.data))
			var err error
			for err == nil {
				if _, err = r.Next(); err == nil {
					_, err = io.Copy(io.Discard, r)
				}
			}
			if err == io.EOF || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestConcatenated reads two archives joined with extra zero padding, as
// the kernel accepts them.
func TestConcatenated(t *testing.T) {
	a := writeArchive(t, sample[:3])
	b := writeArchive(t, []entry{{name: "second", mode: 0o644, data: "2"}})
	joined := append(append(append([]byte{}, a...), make([]byte, 512)...), b...)
	r := NewReader(bytes.NewReader(joined))
	var names []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if got, want := strings.Join(names, ","), "dev,dev/console,dev/sda,second"; got != want {
		t.Fatalf("entries %s, want %s", got, want)
	}
}

// TestGNUCpioOracle lists and extracts the archive with GNU cpio (gzipped,
// as an initramfs may be) and checks what lands on disk.
func TestGNUCpioOracle(t *testing.T) {
	testenv.RequireTool(t, "cpio", "cpio")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(writeArchive(t, sample)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}

	list := exec.Command("cpio", "-it", "--quiet")
	list.Stdin = bytes.NewReader(plain)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	listed := strings.Fields(string(out))
	for _, e := range sample {
		if !containsString(listed, strings.TrimPrefix(e.name, "/")) {
			t.Errorf("cpio -it does not list %q; it listed %q", e.name, listed)
		}
	}

	dir := t.TempDir()
	extract := exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	extract.Dir = dir
	extract.Stdin = bytes.NewReader(plain)
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	root := os.Geteuid() == 0
	for _, e := range sample {
		p := filepath.Join(dir, strings.TrimPrefix(e.name, "/"))
		fi, err := os.Lstat(p)
		if e.mode&fs.ModeDevice != 0 && !root {
			continue // only root can create device nodes
		}
		if err != nil {
			t.Errorf("%s: %v", e.name, err)
			continue
		}
		if fi.Mode().Type() != e.mode.Type() {
			t.Errorf("%s: extracted type %v, want %v", e.name, fi.Mode().Type(), e.mode.Type())
		}
		switch {
		case e.mode.Type() == 0:
			b, err := os.ReadFile(p)
			if err != nil || string(b) != e.data {
				t.Errorf("%s: extracted %q (%v), want %q", e.name, b, err, e.data)
			}
			if fi.Mode() != e.mode {
				t.Errorf("%s: extracted mode %v, want %v", e.name, fi.Mode(), e.mode)
			}
		case e.mode.Type() == fs.ModeSymlink:
			if got, _ := os.Readlink(p); got != e.target {
				t.Errorf("%s: extracted link to %q, want %q", e.name, got, e.target)
			}
		case e.mode&fs.ModeDevice != 0:
			st := fi.Sys().(*syscall.Stat_t)
			if maj, min := uint32(st.Rdev>>8&0xfff), uint32(st.Rdev&0xff|st.Rdev>>12&0xfff00); maj != e.major || min != e.minor {
				t.Errorf("%s: extracted device %d:%d, want %d:%d", e.name, maj, min, e.major, e.minor)
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestReaderDataErrorsAreWrapped(t *testing.T) {
	r := NewReader(iotestErrReader{})
	_, err := r.Next()
	if err == nil || !errors.Is(err, errBoom) {
		t.Fatalf("error %v, want one wrapping %v", err, errBoom)
	}
}

var errBoom = errors.New("boom")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errBoom }

// FuzzReader feeds arbitrary bytes to the reader: it must return entries or
// an error, never panic or allocate beyond its limits.
func FuzzReader(f *testing.F) {
	f.Add(writeArchive(f, sample))
	f.Add([]byte(Magic))
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for i := 0; i < 10000; i++ {
			h, err := r.Next()
			if err != nil {
				return
			}
			if h.Size < 0 {
				t.Fatalf("negative size %d", h.Size)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
		}
	})
}

// FuzzWriteRead writes an entry with arbitrary name and data: the writer
// either rejects the name or produces an archive that reads back the same.
func FuzzWriteRead(f *testing.F) {
	f.Add("bin/sh", []byte("data"), uint32(0o755))
	f.Add("/a/b/c", []byte{}, uint32(0o644))
	f.Fuzz(func(t *testing.T, name string, data []byte, perm uint32) {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		mode := fs.FileMode(perm) & fs.ModePerm
		if err := w.AddFile(name, mode, data); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r := NewReader(&buf)
		h, err := r.Next()
		if err != nil {
			t.Fatalf("read back %q: %v", name, err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != strings.TrimLeft(name, "/") || h.Mode != mode || !bytes.Equal(got, data) {
			t.Fatalf("read back %q %v %q, wrote %q %v %q", h.Name, h.Mode, got, name, mode, data)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("after the only entry: %v, want EOF", err)
		}
	})
}

func TestReadAll(t *testing.T) {
	data := writeArchive(t, sample)
	entries, err := ReadAll(bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Entry{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	if string(byName["init"].Data) != "#!/bin/sh\necho hi\n" || byName["bin/sh"].Linkname != "busybox" || byName["bin/sh"].Data != nil {
		t.Errorf("entries %+v", byName)
	}
	if _, err := ReadAll(bytes.NewReader(data), 10); err == nil || !strings.Contains(err.Error(), "exceeds 10 bytes") {
		t.Errorf("limit: %v", err)
	}
}
