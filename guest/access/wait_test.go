package access

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// listen returns a loopback listener whose connections get greet, and
// are then held open until the test ends.
func listen(t *testing.T, greet string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(greet))
				<-done
			}()
		}
	}()
	return l
}

func TestWaitAnswers(t *testing.T) {
	for _, greet := range []string{"SSH-2.0-OpenSSH_9.2\r\n", "welcome\r\nSSH-2.0-x\r\n"} {
		l := listen(t, greet)
		if err := Wait(context.Background(), "web", l.Addr().String(), time.Minute); err != nil {
			t.Errorf("greeting %q: %v", greet, err)
		}
	}
}

// TestWaitLateServer starts the server after Wait began: Wait keeps
// trying until it answers.
func TestWaitLateServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens now: connections are refused
	errc := make(chan error, 1)
	go func() { errc <- Wait(context.Background(), "web", addr, time.Minute) }()
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("SSH-2.0-late\r\n"))
			defer c.Close()
		}
	}()
	if err := <-errc; err != nil {
		t.Errorf("Wait for a late server: %v", err)
	}
}

func TestWaitGivesUp(t *testing.T) {
	silent := listen(t, "")
	notSSH := listen(t, "HTTP/1.1 400 Bad Request\r\n")
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()
	for _, tc := range []struct{ addr, last string }{
		{silent.Addr().String(), "the server accepted the connection but sent no SSH identification"},
		{notSSH.Addr().String(), `the server is not an SSH server: it said "HTTP/1.1 400 Bad Request"`},
		{refusedAddr, "connection refused"},
	} {
		start := time.Now()
		err := Wait(context.Background(), "web", tc.addr, 1500*time.Millisecond)
		var nr *NotReachableError
		if !errors.As(err, &nr) || !strings.Contains(err.Error(), tc.last) ||
			!strings.HasPrefix(err.Error(), "VM web: no SSH server answered at "+tc.addr+" within ") ||
			!strings.Contains(err.Error(), "paddock logs web") {
			t.Errorf("%s: %v; want a NotReachableError naming the VM, address and %q", tc.addr, err, tc.last)
		}
		if d := time.Since(start); d > time.Minute {
			t.Errorf("%s: gave up after %s", tc.addr, d)
		}
	}
	// A cancelled context ends the wait at once, as cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, "web", refusedAddr, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
