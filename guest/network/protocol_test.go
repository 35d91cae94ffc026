package network

import (
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair is a connected pair of unix stream sockets.
func socketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socket")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// TestLineFiles: a line carries descriptors up to maxFiles; one that
// carries more is an error, not a silent loss of the rest, and leaves no
// descriptor open.
func TestLineFiles(t *testing.T) {
	for _, n := range []int{1, maxFiles, maxFiles + 1} {
		a, b := socketPair(t)
		var files []*os.File
		for range n {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			files = append(files, f)
		}
		if err := sendLineFiles(a, answer{OK: true}, files); err != nil {
			t.Fatal(err)
		}
		var ans answer
		fds, err := readLineFiles(b, &ans)
		closeFDs(fds)
		switch {
		case n <= maxFiles && (err != nil || len(fds) != n || !ans.OK):
			t.Errorf("%d descriptors: got %d, %+v, %v", n, len(fds), ans, err)
		case n > maxFiles && (err == nil || !strings.Contains(err.Error(), "more than 64 descriptors") || fds != nil):
			t.Errorf("%d descriptors: got %d, %v; want an error", n, len(fds), err)
		}
	}
}

// TestHelloNICsBound: netd refuses a hello with more NICs than its
// answer can carry taps.
func TestHelloNICsBound(t *testing.T) {
	d := &netd{}
	if _, err := d.join(hello{VM: "web", NICs: make([]Lease, maxFiles+1)}); err == nil || err.Error() != "65 NICs on one network: at most 64" {
		t.Errorf("a hello with %d NICs: %v", maxFiles+1, err)
	}
}
