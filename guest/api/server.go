package api

import (
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
	"sync"
	"time"

	"github.com/paddock-vm/paddock/guest/console"
)

// Controller is what a Server drives: the VMM's view of its VM. Methods
// return an *Error for refusals (wrong_state, bad_request); any other
// error becomes an internal error.
type Controller interface {
	// Status reports the VM now.
	Status() Status
	// Pause stops the vCPUs; Resume lets them run again.
	Pause() (Status, error)
	Resume() (Status, error)
	// Shutdown presses the ACPI power button and waits up to timeout for
	// the guest to power off, then forces it off. It returns once the
	// guest has stopped.
	Shutdown(timeout time.Duration) (StopResult, error)
	// Kill stops the guest at once and returns once it has stopped.
	Kill() (StopResult, error)
	// Output subscribes to console output (see console.Hub.Subscribe);
	// History returns the remembered output.
	Output(history bool, tail int) *console.Subscriber
	History() []byte
	// Input is where attached clients' keystrokes go.
	Input() io.Writer
	// Snapshot takes a snapshot of the running or paused VM and returns
	// once it is complete on disk.
	Snapshot(req SnapshotRequest) (SnapshotResult, error)
	// DeleteSnapshot deletes the internal qcow2 snapshots called name
	// from the disks the VMM holds open.
	DeleteSnapshot(name string) error
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// Server serves the control API of one VM.
type Server struct {
	name string
	ctl  Controller
	http *http.Server

	mu    sync.Mutex
	conns map[net.Conn]struct{} // attached consoles (hijacked)
	wg    sync.WaitGroup        // their goroutines
}

// NewServer returns a server for the VM called name.
func NewServer(name string, ctl Controller) *Server {
	s := &Server{name: name, ctl: ctl, conns: map[net.Conn]struct{}{}}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Serve accepts connections on l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops accepting connections, waits until ctx is done for requests
// in flight (console streams end when the VM's console hub closes), then
// drops what is left, including attached consoles.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// route is one endpoint: the operation after /v1/vms/NAME/ and its method.
type route struct {
	method string
	query  []string // allowed query parameters
	handle func(s *Server, w http.ResponseWriter, r *http.Request) error
}

var routes = map[string]route{
	"":                {http.MethodGet, nil, (*Server).status},
	"pause":           {http.MethodPost, nil, (*Server).pause},
	"resume":          {http.MethodPost, nil, (*Server).resume},
	"shutdown":        {http.MethodPost, nil, (*Server).shutdown},
	"kill":            {http.MethodPost, nil, (*Server).kill},
	"console":         {http.MethodGet, []string{"follow", "tail", "history"}, (*Server).console},
	"console/attach":  {http.MethodPost, []string{"tail"}, (*Server).attach},
	"snapshot":        {http.MethodPost, nil, (*Server).snapshot},
	"snapshot/delete": {http.MethodPost, nil, (*Server).deleteSnapshot},
}

// ServeHTTP routes a request and writes errors as JSON.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.serve(w, r); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = Errorf(CodeInternal, "%v", err)
		}
		if e.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", routes[opOf(r.URL.Path)].method)
		}
		writeJSON(w, e.Status, e)
	}
}

// opOf returns the operation part of an API path.
func opOf(path string) string {
	rest, _ := strings.CutPrefix(path, "/"+Version+"/vms/")
	_, op, _ := strings.Cut(rest, "/")
	return op
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/"+Version+"/vms/")
	if !ok {
		return Errorf(CodeNotFound, "no endpoint %s: paths start with /%s/vms/NAME", r.URL.Path, Version)
	}
	name, op, _ := strings.Cut(rest, "/")
	if name != s.name {
		return Errorf(CodeNotFound, "no VM named '%s' here: this VMM runs '%s'", name, s.name)
	}
	rt, ok := routes[op]
	if !ok {
		return Errorf(CodeNotFound, "no endpoint %s", r.URL.Path)
	}
	if r.Method != rt.method {
		return Errorf(CodeMethod, "%s %s: use %s", r.Method, r.URL.Path, rt.method)
	}
	for k := range r.URL.Query() {
		if !containsString(rt.query, k) {
			return Errorf(CodeBadRequest, "unknown parameter %q", k)
		}
	}
	return rt.handle(s, w, r)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeBody decodes a JSON object body into v; an empty body leaves v as
// it is. Unknown fields are errors.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return Errorf(CodeBadRequest, "read the request body: %v", err)
	}
	if len(data) > maxBody {
		return Errorf(CodeBadRequest, "request body larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeBadRequest, "request body: %v", err)
	}
	if dec.More() {
		return Errorf(CodeBadRequest, "request body: more than one JSON value")
	}
	return nil
}

// writeJSON writes v as the response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The client may be gone; nothing useful to do with the error.
	_ = enc.Encode(v)
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, s.ctl.Status())
	return nil
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) error {
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	st, err := s.ctl.Pause()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) error {
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	st, err := s.ctl.Resume()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) shutdown(w http.ResponseWriter, r *http.Request) error {
	var req ShutdownRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	timeout, err := ParseTimeout(req.Timeout)
	if err != nil {
		return Errorf(CodeBadRequest, "timeout: %v", err)
	}
	res, err := s.ctl.Shutdown(timeout)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// ParseTimeout parses a shutdown timeout: a Go duration from 0 to
// MaxShutdownTimeout; empty means DefaultShutdownTimeout.
func ParseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return DefaultShutdownTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 30s or 2m", s)
	}
	if d < 0 || d > MaxShutdownTimeout {
		return 0, fmt.Errorf("%s is out of range: want 0 to %s", s, MaxShutdownTimeout)
	}
	return d, nil
}

func (s *Server) kill(w http.ResponseWriter, r *http.Request) error {
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	res, err := s.ctl.Kill()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) error {
	var req SnapshotRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return Errorf(CodeBadRequest, "request body: a snapshot needs a name")
	}
	res, err := s.ctl.Snapshot(req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	var req SnapshotDeleteRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return Errorf(CodeBadRequest, "request body: which snapshot? name is empty")
	}
	if err := s.ctl.DeleteSnapshot(req.Name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// consoleQuery holds the console endpoints' parameters.
type consoleQuery struct {
	follow  bool
	history bool
	tail    int
}

func parseConsoleQuery(q url.Values) (consoleQuery, error) {
	c := consoleQuery{history: true}
	var err error
	if v := q.Get("follow"); v != "" {
		if c.follow, err = strconv.ParseBool(v); err != nil {
			return c, Errorf(CodeBadRequest, "follow: %q is not a boolean", v)
		}
	}
	if v := q.Get("history"); v != "" {
		if c.history, err = strconv.ParseBool(v); err != nil {
			return c, Errorf(CodeBadRequest, "history: %q is not a boolean", v)
		}
	}
	if v := q.Get("tail"); v != "" {
		if c.tail, err = strconv.Atoi(v); err != nil || c.tail < 0 {
			return c, Errorf(CodeBadRequest, "tail: %q is not a line count", v)
		}
	}
	return c, nil
}

// console streams the console: the remembered output (its last tail
// lines), then, with follow, live output until the VM stops or the
// client leaves.
func (s *Server) console(w http.ResponseWriter, r *http.Request) error {
	q, err := parseConsoleQuery(r.URL.Query())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if !q.follow {
		var hist []byte
		if q.history {
			hist = console.TailBytes(s.ctl.History(), q.tail)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(hist)
		return nil
	}
	sub := s.ctl.Output(q.history, q.tail)
	defer sub.Close()
	stop := context.AfterFunc(r.Context(), func() { sub.Close() })
	defer stop()
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := sub.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client left
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return nil // the VM stopped or the client left
		}
	}
}

// attach upgrades the connection to a raw console: output (live; the last
// tail lines first if asked) to the client, the client's bytes to the
// guest. The client detaches by closing the connection (or its writing
// half); the server closes it when the VM stops.
func (s *Server) attach(w http.ResponseWriter, r *http.Request) error {
	if !headerHasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), UpgradeProtocol) {
		return Errorf(CodeBadRequest, "attach needs the headers Connection: Upgrade and Upgrade: %s", UpgradeProtocol)
	}
	q, err := parseConsoleQuery(r.URL.Query())
	if err != nil {
		return err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return Errorf(CodeInternal, "the connection cannot be upgraded")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return Errorf(CodeInternal, "upgrade the connection: %v", err)
	}
	sub := s.ctl.Output(q.tail > 0, q.tail)
	s.mu.Lock()
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + UpgradeProtocol + "\r\nConnection: Upgrade\r\n\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		sub.Close()
		s.drop(conn)
		return nil
	}
	s.wg.Add(2)
	go func() { // output
		defer s.wg.Done()
		defer s.drop(conn)
		buf := make([]byte, 32<<10)
		for {
			n, err := sub.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					sub.Close()
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // input; its end (EOF or error) is the detach
		defer s.wg.Done()
		defer sub.Close()
		in := s.ctl.Input()
		buf := make([]byte, 4096)
		for {
			n, err := brw.Reader.Read(buf)
			if n > 0 {
				if _, werr := in.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return nil
}

// drop closes an attached console's connection and forgets it.
func (s *Server) drop(conn net.Conn) {
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
	conn.Close()
}

// headerHasToken reports whether a comma-separated header has token.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
