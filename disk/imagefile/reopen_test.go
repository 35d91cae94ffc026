package imagefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// openPath opens path with O_PATH, as a caller that judges a file before
// opening it does.
func openPath(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestReopen: Reopen opens and locks the file the O_PATH descriptor
// holds, even once its path names another file, names it by the path
// given, and refuses what is not an image without blocking.
func TestReopen(t *testing.T) {
	p := scratch(t)
	if err := os.WriteFile(p, []byte("judged"), 0o644); err != nil {
		t.Fatal(err)
	}
	pfd := openPath(t, p)
	// The path now names another file: the descriptor still holds the
	// one judged.
	other := filepath.Join(filepath.Dir(p), "other")
	if err := os.WriteFile(other, []byte("swapped"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, p); err != nil {
		t.Fatal(err)
	}
	f, err := Reopen(pfd, p, Read)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(f)
	buf := make([]byte, 16)
	n, _ := f.ReadAt(buf, 0)
	if string(buf[:n]) != "judged" {
		t.Errorf("Reopen read %q, want the file judged", buf[:n])
	}
	if f.Name() != p {
		t.Errorf("Name %q, want %q", f.Name(), p)
	}
	if got := lockBytes(t, f); got != "100-100 201-201 203-203" {
		t.Errorf("Reopen for Read locks %q", got)
	}
	// A writer of the judged file conflicts with it; the new file at the
	// path is another file and is free.
	if _, err := Reopen(pfd, p, Write); !errors.Is(err, ErrInUse) {
		t.Errorf("a writer of the judged file: %v", err)
	}
	w, err := Open(p, Write)
	if err != nil {
		t.Fatalf("the file now at the path: %v", err)
	}
	Close(w)

	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Reopen(openPath(t, fifo), fifo, Read)
	if want := fifo + " is a named pipe (FIFO), not a disk image (images are regular files or block devices)"; !errors.Is(err, ErrNotImage) || err.Error() != want {
		t.Errorf("FIFO: %v\nwant %s", err, want)
	}
}

// TestCheckMode: regular files and block devices are images, the rest
// are named.
func TestCheckMode(t *testing.T) {
	for _, tc := range []struct {
		mode uint32
		ok   bool
	}{
		{unix.S_IFREG | 0o644, true}, {unix.S_IFBLK | 0o600, true},
		{unix.S_IFDIR, false}, {unix.S_IFIFO, false}, {unix.S_IFCHR, false}, {unix.S_IFSOCK, false},
	} {
		err := CheckMode("x", tc.mode)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrNotImage)) {
			t.Errorf("mode %#o: %v", tc.mode, err)
		}
	}
}
