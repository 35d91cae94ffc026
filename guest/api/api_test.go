package api

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"", DefaultShutdownTimeout, ""},
		{"0s", 0, ""},
		{"1m30s", 90 * time.Second, ""},
		{"24h", 24 * time.Hour, ""},
		{"25h", 0, "25h is out of range: want 0 to 24h0m0s"},
		{"-1s", 0, "-1s is out of range: want 0 to 24h0m0s"},
		{"soon", 0, `"soon" is not a duration such as 30s or 2m`},
		{"30", 0, `"30" is not a duration such as 30s or 2m`},
	}
	for _, tt := range tests {
		got, err := ParseTimeout(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseTimeout(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestErrorf(t *testing.T) {
	tests := []struct {
		code   string
		status int
	}{
		{CodeNotFound, http.StatusNotFound},
		{CodeWrongState, http.StatusConflict},
		{CodeBadRequest, http.StatusBadRequest},
		{CodeMethod, http.StatusMethodNotAllowed},
		{CodeNotImplemented, http.StatusNotImplemented},
		{CodeInternal, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		e := Errorf(tt.code, "VM '%s' %s", "web", "x")
		if e.Status != tt.status || e.Code != tt.code || e.Error() != "VM 'web' x" {
			t.Errorf("Errorf(%s) = %+v", tt.code, e)
		}
	}
}

// TestLongSocketPath checks that a socket deeper than sockaddr_un allows
// is reached through /proc/self/fd, for listening and dialing.
func TestLongSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ctl.sock")
	if len(path) <= maxSocketPath {
		t.Fatalf("test path %d bytes long, want more than %d", len(path), maxSocketPath)
	}
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no socket at the long path: %v", err)
	}
	if mode := fi.Mode(); mode&os.ModeSocket == 0 || mode.Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", mode)
	}
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		buf := make([]byte, 5)
		n, _ := c.Read(buf)
		got <- string(buf[:n])
		c.Close()
	}()
	c, err := dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.Close()
	if s := <-got; s != "hello" {
		t.Errorf("server read %q", s)
	}
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Close removed the socket file (its owner removes it by name): %v", err)
	}
}

func TestClientUnavailable(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"), "web")
	defer c.Close()
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Status without a VMM: %v, want ErrUnavailable", err)
	}
	if _, err := c.Attach(context.Background(), 0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Attach without a VMM: %v, want ErrUnavailable", err)
	}
}

// TestClientDropped: a VMM that closes a connection without answering
// (an ending VMM's kernel resets those it had not accepted) is, to a GET,
// a VMM that does not answer, whether the close came before it read the
// request (a reset) or after (end of file). A POST's failure is left as
// it is: its operation may have been done.
func TestClientDropped(t *testing.T) {
	for _, tt := range []struct {
		name    string
		readAll bool // the server reads the request before it closes
	}{{"reset", false}, {"closed", true}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ctl.sock")
			l, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					if tt.readAll {
						http.ReadRequest(bufio.NewReader(c))
					} else {
						c.Read(make([]byte, 1)) // the rest stays unread
					}
					c.Close()
				}
			}()
			c := NewClient(path, "web")
			defer c.Close()
			_, err = c.Console(context.Background(), ConsoleOptions{Follow: true})
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Console from a VMM that closed the connection: %v, want ErrUnavailable", err)
			}
			_, err = c.Pause(context.Background())
			if err == nil || errors.Is(err, ErrUnavailable) {
				t.Errorf("Pause from a VMM that closed the connection: %v, want an error other than ErrUnavailable", err)
			}
		})
	}
}

// TestClientSocketLink: a VM's control socket replaced by a link to
// another VM's (a jailed VMM may write the directory its socket is in).
// The client does not connect through the link: the other VMM never
// hears from it, and the call fails as for a VMM that does not answer.
func TestClientSocketLink(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other.sock")
	l, err := Listen(other)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	link := filepath.Join(dir, "ctl.sock")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	c := NewClient(link, "web")
	defer c.Close()
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("Status through a link to another VMM's socket: %v", err)
	}
	if _, err := c.Attach(context.Background(), 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Attach through a link to another VMM's socket: %v", err)
	}
	// The other VMM is reached by its own name: it was listening all along.
	conn, err := dial(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a connection came through the link")
	default:
	}
}
