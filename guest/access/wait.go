package access

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// DefaultWait is how long paddock ssh and cp wait for the guest's SSH
// server by default: a first boot runs cloud-init before sshd starts.
const DefaultWait = 3 * time.Minute

// Timing of Wait's attempts.
const (
	// retryEvery is the pause between two attempts.
	retryEvery = 500 * time.Millisecond
	// attemptTimeout bounds one attempt: the TCP connection and the
	// server's identification line.
	attemptTimeout = 5 * time.Second
)

// NotReachableError is a guest whose SSH server did not answer in time.
type NotReachableError struct {
	Name, Addr string
	Waited     time.Duration
	// Last is the last attempt's failure.
	Last error
}

func (e *NotReachableError) Error() string {
	return fmt.Sprintf("VM %s: no SSH server answered at %s within %s (last: %v); a guest needs sshd and a network paddock knows its address on; paddock logs %s shows what it is doing", e.Name, e.Addr, e.Waited.Round(time.Second), e.Last, e.Name)
}

func (e *NotReachableError) Unwrap() error { return e.Last }

// Wait waits until an SSH server answers at addr (host:port), up to
// timeout: it connects and reads the server's identification line
// ("SSH-2.0-..."), again every half second until one does. It returns at
// once when ctx ends. name is the VM's, for the error.
func Wait(ctx context.Context, name, addr string, timeout time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		err := probe(ctx, addr)
		if err == nil {
			return nil
		}
		// An attempt the deadline cut short says less than the one
		// before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(retryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return &NotReachableError{Name: name, Addr: addr, Waited: time.Since(start), Last: last}
		case <-t.C:
		}
	}
}

// probe makes one attempt: connect and read the identification line.
func probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// RFC 4253 4.2: the server may send other lines before the one that
	// starts with "SSH-"; a line is at most 255 bytes.
	r := bufio.NewReaderSize(conn, 256)
	first := ""
	for range 16 {
		line, err := r.ReadSlice('\n')
		if err == nil && strings.HasPrefix(string(line), "SSH-") {
			return nil
		}
		if first == "" && len(line) > 0 {
			first = strings.TrimRight(string(line), "\r\n")
		}
		var ne net.Error
		switch {
		case err == nil:
			continue
		case first != "":
			return fmt.Errorf("the server is not an SSH server: it said %q", first)
		case errors.As(err, &ne) && ne.Timeout():
			return errors.New("the server accepted the connection but sent no SSH identification")
		default:
			return fmt.Errorf("the server closed the connection before its SSH identification: %w", err)
		}
	}
	return fmt.Errorf("the server is not an SSH server: it said %q", first)
}
