package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrUnavailable wraps failures to reach the VMM at all (no socket, or
// nobody listening).
var ErrUnavailable = errors.New("the VMM's control socket does not answer")

// Client talks to one VM's VMM over its control socket.
type Client struct {
	name   string
	socket string
	hc     *http.Client
}

// NewClient returns a client for the VM called name whose VMM listens on
// socket. Each call's context bounds it; there is no other timeout.
func NewClient(socket, name string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx, socket)
		},
		DisableCompression: true,
		MaxIdleConns:       1,
	}
	return &Client{name: name, socket: socket, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, op string, query url.Values, body, out any) error {
	resp, err := c.send(ctx, method, op, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: %s %s: decode the answer: %w", method, op, err)
	}
	return nil
}

// send sends a request and returns a 2xx response; other statuses become
// an *Error.
func (c *Client) send(ctx context.Context, method, op string, query url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("api: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := "http://paddock" + vmPath(c.name, op)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("api: %s %s: %w", method, vmPath(c.name, op), ctx.Err())
		}
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return nil, fmt.Errorf("api: %s: %w (%w)", c.socket, ErrUnavailable, ne.Err)
		}
		if method == http.MethodGet && dropped(err) {
			// A VMM that is ending closes its listener, and the kernel
			// resets the connections it had not accepted yet: to the
			// caller that is a VMM that does not answer, as if the dial
			// had failed. Only a GET, which changes nothing, is known
			// to be safe to take so; for others it may have been done.
			return nil, fmt.Errorf("api: %s: %w (the connection was closed unanswered: %w)", c.socket, ErrUnavailable, err)
		}
		return nil, fmt.Errorf("api: %s %s: %w", method, vmPath(c.name, op), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// dropped reports whether err is the VMM's end of a connection going
// away before it answered: reset, or closed.
func dropped(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// decodeError turns a non-2xx response into an *Error.
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	e := &Error{Status: resp.StatusCode}
	if err := json.Unmarshal(data, e); err != nil || e.Message == "" {
		e.Code = CodeInternal
		e.Message = fmt.Sprintf("the VMM answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	return e
}

// Status returns the VM's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "", nil, nil, &st)
	return st, err
}

// Pause pauses the VM.
func (c *Client) Pause(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodPost, "pause", nil, nil, &st)
	return st, err
}

// Resume resumes the VM.
func (c *Client) Resume(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodPost, "resume", nil, nil, &st)
	return st, err
}

// Shutdown presses the power button and waits for the guest to stop,
// forced after timeout (the VMM enforces it). ctx should allow more than
// timeout.
func (c *Client) Shutdown(ctx context.Context, timeout time.Duration) (StopResult, error) {
	var res StopResult
	err := c.do(ctx, http.MethodPost, "shutdown", nil, ShutdownRequest{Timeout: timeout.String()}, &res)
	return res, err
}

// Kill stops the VM at once.
func (c *Client) Kill(ctx context.Context) (StopResult, error) {
	var res StopResult
	err := c.do(ctx, http.MethodPost, "kill", nil, nil, &res)
	return res, err
}

// Snapshot takes a snapshot of the VM and returns once it is on disk.
func (c *Client) Snapshot(ctx context.Context, req SnapshotRequest) (SnapshotResult, error) {
	var res SnapshotResult
	err := c.do(ctx, http.MethodPost, "snapshot", nil, req, &res)
	return res, err
}

// DeleteSnapshot asks the VMM to delete the internal qcow2 snapshots
// called name from the VM's disks.
func (c *Client) DeleteSnapshot(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "snapshot/delete", nil, SnapshotDeleteRequest{Name: name}, nil)
}

// ConsoleOptions select what Console streams.
type ConsoleOptions struct {
	Follow    bool // keep streaming live output until the VM stops
	NoHistory bool // skip the remembered output
	Tail      int  // only the last Tail lines of the history (0: all)
}

// Console returns the console stream; close it to stop.
func (c *Client) Console(ctx context.Context, o ConsoleOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.NoHistory {
		q.Set("history", "false")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	resp, err := c.send(ctx, http.MethodGet, "console", q, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Attach opens a raw console connection: reads are guest output, writes
// go to the guest, Close detaches. tail > 0 replays the last tail lines
// first. ctx bounds the handshake only.
func (c *Client) Attach(ctx context.Context, tail int) (net.Conn, error) {
	conn, err := dial(ctx, c.socket)
	if err != nil {
		return nil, fmt.Errorf("api: %s: %w (%w)", c.socket, ErrUnavailable, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	path := vmPath(c.name, "console/attach")
	if tail > 0 {
		path += "?tail=" + strconv.Itoa(tail)
	}
	req := "POST " + path + " HTTP/1.1\r\nHost: paddock\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeProtocol + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("api: attach: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("api: attach: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, decodeError(resp)
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads through the reader that parsed the handshake, which
// may hold console output already.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
