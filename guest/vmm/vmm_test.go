package vmm

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// testTimeout bounds each wait in these tests: tiny guests take
// milliseconds, but CPL0 code is emulated on the test hosts (docs/hosts.md).
const testTimeout = 2 * time.Minute

// newVM creates a VM in a new store: spec is YAML without the kernel,
// which is the tiny guest called guest.
func newVM(t *testing.T, name, guest, spec string) (*store.Store, *store.VM) {
	t.Helper()
	testguest.RequireKVM(t)
	kernel := testguest.Build(t, guest)
	s, err := store.Open(filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf("name: %s\nmemory: 64MiB\nkernel: %s\n%s", name, kernel, spec)
	v, err := s.Create(name, []byte(y), store.Record{CreatedAt: time.Now(), Phase: store.PhaseCreated})
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// running is a VMM served in-process.
type running struct {
	v      *store.VM
	c      *api.Client
	ready  Ready
	done   chan error
	cancel context.CancelFunc
}

// serve runs Serve for v in a goroutine and waits for its readiness
// message.
func serve(t *testing.T, s *store.Store, v *store.VM, b Backoff) *running {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{v: v, done: make(chan error, 1), cancel: cancel}
	go func() {
		rn.done <- Serve(ctx, Config{Home: s.Home(), Name: v.Name, Ready: w, Backoff: b, Log: testLog{t}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rn.done:
		case <-time.After(testTimeout):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	r.SetReadDeadline(time.Now().Add(testTimeout))
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no readiness message: %v", err)
	}
	if err := json.Unmarshal(line, &rn.ready); err != nil {
		t.Fatalf("readiness message %q: %v", line, err)
	}
	rn.c = api.NewClient(v.Path(store.SocketFile), v.Name)
	t.Cleanup(rn.c.Close)
	return rn
}

// testLog sends the VMM's messages to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// wait returns Serve's result.
func (rn *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-rn.done:
		rn.done <- err // for the cleanup
		return err
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// waitOutput reads the console (history, then live) until it holds text.
func (rn *running) waitOutput(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	rc, err := rn.c.Console(ctx, api.ConsoleOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte(text)) {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("console ended (%v) before %q; got %q", err, text, got)
		}
	}
}

func record(t *testing.T, v *store.VM) store.Record {
	t.Helper()
	rec, err := v.ReadRecord()
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// checkGone checks that a VMM that returned left nothing behind.
func checkGone(t *testing.T, v *store.VM) {
	t.Helper()
	if _, err := os.Stat(v.Path(store.SocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ctl.sock left behind: %v", err)
	}
	if h, err := v.RunHolder(); err != nil || h.Alive {
		t.Errorf("run lock still held: %+v, %v", h, err)
	}
}

func TestServeLifecycle(t *testing.T) {
	s, v := newVM(t, "web", "counter", "cpus: 2\nlabels: {tier: test}\n")
	rn := serve(t, s, v, Backoff{})
	if !rn.ready.OK || rn.ready.PID != os.Getpid() {
		t.Fatalf("ready = %+v", rn.ready)
	}
	h, _ := v.RunHolder()
	rec := record(t, v)
	if rec.Phase != store.PhaseRunning || rec.RunID != h.RunID || rec.PID != os.Getpid() || rec.Boots != 1 {
		t.Errorf("record after ready: %+v, holder %+v", rec, h)
	}
	if st := store.Derive(rec, h); st != store.StateRunning {
		t.Errorf("derived state %s, want running", st)
	}
	ctx := context.Background()
	st, err := rn.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "web" || st.State != "running" || st.CPUs != 2 || st.Memory != 64<<20 || st.Boots != 1 || st.Protocol != "PVH" || st.RunID != rec.RunID {
		t.Errorf("status %+v", st)
	}
	rn.waitOutput(t, "counting\n")

	if st, err := rn.c.Pause(ctx); err != nil || st.State != "paused" {
		t.Fatalf("Pause = %+v, %v", st, err)
	}
	if rec := record(t, v); rec.Phase != store.PhasePaused {
		t.Errorf("record after pause: %s", rec.Phase)
	}
	var ae *api.Error
	if _, err := rn.c.Pause(ctx); !errors.As(err, &ae) || ae.Code != api.CodeWrongState || ae.Message != "cannot pause VM 'web': it is paused" {
		t.Errorf("second Pause: %v", err)
	}
	if st, err := rn.c.Resume(ctx); err != nil || st.State != "running" {
		t.Fatalf("Resume = %+v, %v", st, err)
	}
	if _, err := rn.c.Resume(ctx); !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Message != "cannot resume VM 'web': it is running, not paused" {
		t.Errorf("second Resume: %v", err)
	}
	if _, err := rn.c.Snapshot(ctx, api.SnapshotRequest{}); !errors.As(err, &ae) || ae.Code != api.CodeBadRequest {
		t.Errorf("Snapshot without a name: %v", err)
	}
	// The counter guest ignores the power button: forced off.
	res, err := rn.c.Shutdown(ctx, 50*time.Millisecond)
	if err != nil || res.How != api.StopForced {
		t.Fatalf("Shutdown = %+v, %v; want forced", res, err)
	}
	if err := rn.wait(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	rec = record(t, v)
	if rec.Phase != store.PhaseExited || rec.Exit == nil || rec.Exit.Reason != exit.Stop || rec.Exit.How != api.StopForced {
		t.Errorf("final record %+v", rec)
	}
	if st := store.Derive(rec, store.Holder{}); st != store.StateStopped {
		t.Errorf("derived state %s, want stopped", st)
	}
	checkGone(t, v)
	if _, err := rn.c.Status(ctx); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("Status after the end: %v, want ErrUnavailable", err)
	}
}

func TestShutdownACPI(t *testing.T) {
	s, v := newVM(t, "btn", "pwrbtn", "")
	rn := serve(t, s, v, Backoff{})
	rn.waitOutput(t, "armed\n")
	res, err := rn.c.Shutdown(context.Background(), testTimeout)
	if err != nil || res.How != api.StopACPI {
		t.Fatalf("Shutdown = %+v, %v; want acpi", res, err)
	}
	if err := rn.wait(t); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, v); rec.Exit == nil || rec.Exit.Reason != exit.Stop || rec.Exit.How != api.StopACPI {
		t.Errorf("final record %+v", rec)
	}
	log, _ := os.ReadFile(v.Path(store.ConsoleFile))
	if string(log) != "armed\nbutton\n" {
		t.Errorf("console.log = %q", log)
	}
}

// TestAPIErrors sends malformed and misdirected requests to a live VMM.
func TestAPIErrors(t *testing.T) {
	s, v := newVM(t, "web", "counter", "")
	rn := serve(t, s, v, Backoff{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial(ctx, v.Path(store.SocketFile))
	}}}
	defer hc.CloseIdleConnections()
	tests := []struct {
		method, path, body string
		status             int
		code, message      string
	}{
		{"GET", "/v1/vms/other", "", 404, api.CodeNotFound, "no VM named 'other' here: this VMM runs 'web'"},
		{"POST", "/v1/vms/webb/pause", "", 404, api.CodeNotFound, "no VM named 'webb' here: this VMM runs 'web'"},
		{"GET", "/v2/vms/web", "", 404, api.CodeNotFound, "no endpoint /v2/vms/web: paths start with /v1/vms/NAME"},
		{"GET", "/v1/vms/web/nope", "", 404, api.CodeNotFound, "no endpoint /v1/vms/web/nope"},
		{"GET", "/v1/vms/web/pause", "", 405, api.CodeMethod, "GET /v1/vms/web/pause: use POST"},
		{"DELETE", "/v1/vms/web", "", 405, api.CodeMethod, "DELETE /v1/vms/web: use GET"},
		{"POST", "/v1/vms/web/shutdown", `{"timeout": "soon"}`, 400, api.CodeBadRequest, `timeout: "soon" is not a duration such as 30s or 2m`},
		{"POST", "/v1/vms/web/shutdown", `{"timeout": "-5s"}`, 400, api.CodeBadRequest, "timeout: -5s is out of range: want 0 to 24h0m0s"},
		{"POST", "/v1/vms/web/shutdown", `{"timeout": 5}`, 400, api.CodeBadRequest, "request body: json: cannot unmarshal number into Go struct field ShutdownRequest.timeout of type string"},
		{"POST", "/v1/vms/web/shutdown", `{"delay": "1s"}`, 400, api.CodeBadRequest, `request body: json: unknown field "delay"`},
		{"POST", "/v1/vms/web/pause", `{`, 400, api.CodeBadRequest, "request body: unexpected EOF"},
		{"POST", "/v1/vms/web/kill", `{} {}`, 400, api.CodeBadRequest, "request body: more than one JSON value"},
		{"GET", "/v1/vms/web/console?tail=-1", "", 400, api.CodeBadRequest, `tail: "-1" is not a line count`},
		{"GET", "/v1/vms/web/console?follow=maybe", "", 400, api.CodeBadRequest, `follow: "maybe" is not a boolean`},
		{"GET", "/v1/vms/web?verbose=1", "", 400, api.CodeBadRequest, `unknown parameter "verbose"`},
		{"POST", "/v1/vms/web/console/attach", "", 400, api.CodeBadRequest, "attach needs the headers Connection: Upgrade and Upgrade: paddock-console"},
		{"POST", "/v1/vms/web/resume", "", 409, api.CodeWrongState, "cannot resume VM 'web': it is running, not paused"},
		{"POST", "/v1/vms/web/snapshot", "", 400, api.CodeBadRequest, "request body: a snapshot needs a name"},
		{"POST", "/v1/vms/web/snapshot", `{"name": "../x"}`, 400, api.CodeBadRequest, `"../x" cannot name a snapshot: use 1 to 63 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"POST", "/v1/vms/web/snapshot", `{"name": "s", "memory": true}`, 400, api.CodeBadRequest, `request body: json: unknown field "memory"`},
		{"POST", "/v1/vms/web/snapshot/delete", `{}`, 400, api.CodeBadRequest, "request body: which snapshot? name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://paddock"+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status || e.Code != tt.code || e.Message != tt.message {
				t.Errorf("got %d %s %q\nwant %d %s %q", resp.StatusCode, e.Code, e.Message, tt.status, tt.code, tt.message)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
	// The VM is unharmed by all that.
	if st, err := rn.c.Status(context.Background()); err != nil || st.State != "running" {
		t.Fatalf("status after bad requests: %+v, %v", st, err)
	}
	res, err := rn.c.Kill(context.Background())
	if err != nil || res.How != api.StopKilled {
		t.Fatalf("Kill = %+v, %v", res, err)
	}
	if err := rn.wait(t); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, v); rec.Exit == nil || rec.Exit.Reason != exit.Kill {
		t.Errorf("final record %+v", rec)
	}
	checkGone(t, v)
}

// TestAttach attaches two consoles to the echoing guest: both see the
// output, the input of both reaches the guest, and one detaching leaves
// the VM and the other console running.
func TestAttach(t *testing.T) {
	s, v := newVM(t, "echo", "irq", "")
	rn := serve(t, s, v, Backoff{})
	rn.waitOutput(t, "ready\n")
	ctx := context.Background()
	c1, err := rn.c.Attach(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := rn.c.Attach(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// c1 asked for the last line first.
	expect(t, c1, "ready\n")
	c1.Write([]byte("a"))
	expect(t, c1, "a")
	expect(t, c2, "a")
	c2.Write([]byte("b"))
	expect(t, c1, "b")
	expect(t, c2, "b")
	c1.Close() // detach
	c2.Write([]byte("c"))
	expect(t, c2, "c")
	c2.Write([]byte("q")) // the guest powers off on q
	expect(t, c2, "q")
	if rest, err := io.ReadAll(c2); err != nil || len(rest) != 0 {
		t.Errorf("after the guest powered off: read %q, %v; want EOF", rest, err)
	}
	if err := rn.wait(t); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, v); rec.Exit == nil || rec.Exit.Reason != exit.PowerOff {
		t.Errorf("final record %+v", rec)
	}
	checkGone(t, v)
}

// expect reads exactly len(want) bytes from r and compares them.
func expect(t *testing.T, r io.Reader, want string) {
	t.Helper()
	if c, ok := r.(net.Conn); ok {
		c.SetReadDeadline(time.Now().Add(testTimeout))
	}
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q, %v; want %q", buf, err, want)
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("bad kernel", func(t *testing.T) {
		s, v := newVM(t, "bad", "counter", "")
		spec, _ := os.ReadFile(v.Path(store.SpecFile))
		junk := filepath.Join(t.TempDir(), "junk")
		os.WriteFile(junk, []byte("not a kernel at all"), 0o644)
		spec = []byte(strings.Replace(string(spec), "kernel: /", "kernel: "+junk+"\n# was /", 1))
		if err := os.WriteFile(v.Path(store.SpecFile), spec, 0o600); err != nil {
			t.Fatal(err)
		}
		r, w, _ := os.Pipe()
		err := Serve(context.Background(), Config{Home: s.Home(), Name: "bad", Ready: w})
		if !IsStartError(err) || !strings.Contains(err.Error(), "not a Linux kernel") {
			t.Fatalf("Serve = %v, want a start error about the kernel", err)
		}
		var msg Ready
		if derr := json.NewDecoder(r).Decode(&msg); derr != nil || msg.OK || msg.Error != err.Error() {
			t.Errorf("readiness message %+v (%v), want the error", msg, derr)
		}
		rec := record(t, v)
		if rec.Phase != store.PhaseCreated || rec.StartError != err.Error() || rec.Exit != nil {
			t.Errorf("record after a failed start: %+v", rec)
		}
		checkGone(t, v)
	})
	t.Run("invalid spec", func(t *testing.T) {
		s, v := newVM(t, "bad", "counter", "")
		os.WriteFile(v.Path(store.SpecFile), []byte("name: bad\ncpus: 0\nkernel: /nope\n"), 0o600)
		err := Serve(context.Background(), Config{Home: s.Home(), Name: "bad"})
		if !IsStartError(err) || !strings.Contains(err.Error(), "vm.yaml:2:7: cpus: must be between 1 and 255, got 0") {
			t.Fatalf("Serve = %v", err)
		}
	})
	t.Run("no such VM", func(t *testing.T) {
		s, _ := newVM(t, "bad", "counter", "")
		err := Serve(context.Background(), Config{Home: s.Home(), Name: "other"})
		if !IsStartError(err) || !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Serve = %v", err)
		}
	})
	t.Run("running already", func(t *testing.T) {
		s, v := newVM(t, "web", "counter", "")
		serve(t, s, v, Backoff{})
		err := Serve(context.Background(), Config{Home: s.Home(), Name: "web"})
		if !IsStartError(err) || !errors.Is(err, store.ErrRunning) {
			t.Fatalf("second Serve = %v", err)
		}
	})
}

func TestRestartPolicies(t *testing.T) {
	quick := Backoff{First: time.Millisecond, Max: 2 * time.Millisecond, Window: time.Hour, Limit: 2}
	tests := []struct {
		name, guest, spec string
		reason            exit.Reason
		boots             int
		detail            string
		console           string
	}{
		{"crash, no restart", "crash", "", exit.Crash, 1, "KVM internal error", "crashing"},
		{"crash, on-failure", "crash", "restart: on-failure\n", exit.Crash, 3, "gave up after 2 restarts in a row that each ended within 1h0m0s", "crashing"},
		{"crash, always", "crash", "restart: always\n", exit.Crash, 3, "gave up after 2 restarts", "crashing"},
		{"poweroff, on-failure", "serial", "restart: on-failure\n", exit.PowerOff, 1, "", ""},
		{"poweroff, always", "serial", "restart: always\n", exit.PowerOff, 3, "gave up", ""},
		{"reboot, exit", "reset", "", exit.Reboot, 1, "triple-faulted", ""},
		{"reboot, restart", "reset", "on_reboot: restart\n", exit.Reboot, 3, "gave up", ""},
		{"reboot, exit, always", "reset", "restart: always\n", exit.Reboot, 3, "gave up", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, v := newVM(t, "vm", tt.guest, tt.spec)
			err := Serve(context.Background(), Config{Home: s.Home(), Name: "vm", Backoff: quick, Log: testLog{t}})
			if err != nil {
				t.Fatal(err)
			}
			rec := record(t, v)
			if rec.Exit == nil || rec.Exit.Reason != tt.reason || rec.Boots != tt.boots || rec.Restarts != tt.boots-1 || !strings.Contains(rec.Exit.Detail, tt.detail) {
				t.Fatalf("record: boots %d restarts %d exit %+v\nwant %s after %d boots, detail with %q", rec.Boots, rec.Restarts, rec.Exit, tt.reason, tt.boots, tt.detail)
			}
			if tt.console != "" && (len(rec.Exit.ConsoleTail) == 0 || rec.Exit.ConsoleTail[len(rec.Exit.ConsoleTail)-1] != tt.console) {
				t.Errorf("console tail %q, want it to end with %q", rec.Exit.ConsoleTail, tt.console)
			}
			checkGone(t, v)
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := DefaultBackoff
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := b.delay(i + 1); got != w {
			t.Errorf("delay(%d) = %v, want %v", i+1, got, w)
		}
	}
}
