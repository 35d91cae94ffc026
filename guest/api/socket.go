package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a sockaddr_un holds (108 bytes with
// the terminating NUL).
const maxSocketPath = 107

// Listen creates the unix socket at path and listens on it. A path too
// long for sockaddr_un (deep $PADDOCK_HOME) is reached through
// /proc/self/fd. The socket file is not removed when the listener closes:
// its owner removes it by name. The socket is made 0600: only its owner
// (and root) may control the VM, even where the directory around it is
// more open than paddock makes it.
func Listen(path string) (*net.UnixListener, error) {
	var l *net.UnixListener
	err := viaShortPath(path, func(p string) error {
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("api: make %s private: %w", path, err)
	}
	return l, nil
}

// dial connects to the unix socket at path, following no symbolic link
// at its name: a jailed VMM creates its socket in a directory it may
// write, and could put there a link to another VM's socket, which root's
// paddock would then control. The socket is opened O_PATH and reached
// through /proc/self/fd, which also makes any path short enough.
// Failures to reach it are *net.OpError of Op "dial", as the dial's own.
func dial(ctx context.Context, path string) (net.Conn, error) {
	fail := func(err error) error {
		return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fail(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fail(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fail(fmt.Errorf("%s is not a socket (a symbolic link, or another file); paddock does not connect to it", path))
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d", fd))
}

// viaShortPath calls f with path, or, when path is too long for a socket
// address, with /proc/self/fd/N/BASE where N is an O_PATH descriptor of
// path's directory, open for the duration of f.
func viaShortPath(path string, f func(string) error) error {
	if len(path) <= maxSocketPath {
		return f(path)
	}
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	short := fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(short) > maxSocketPath {
		return fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return f(short)
}
