package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// Report follows a `go test -json` stream. As events arrive it writes to
// its output what go test without -v shows: build errors, the output of
// each failed test, each package's ok/FAIL line. It keeps what Summary
// needs: every test's outcome, declared layers and skip reason.
type Report struct {
	out      io.Writer
	tests    map[testKey]*test
	order    []*test // in the order they started
	pkgs     map[string]*pkg
	pkgOrder []*pkg
	// builds lists the packages (import paths) whose build failed.
	builds []string
}

type testKey struct{ pkg, name string }

// test is one test, subtest, example or fuzz target's seed run.
type test struct {
	pkg, name string
	parent    *test
	children  int
	layer     testenv.Layer // the highest layer the test declared itself
	missing   []string      // optional tools it ran without (testenv.HasTool)
	retries   []string      // why the lab booted L1 again for it (testenv.RetryKey)
	// output is what the test printed while it runs; it is dropped when
	// the test ends, after a failed test's is shown.
	output     strings.Builder
	skipReason string // a skipped test's t.Skip message
	state      string // "run", then "pass", "fail" or "skip"
	// unfinished: the test binary exited while the test ran (a panic in
	// another goroutine, a timeout, os.Exit).
	unfinished bool
}

// pkg is one package's test binary.
type pkg struct {
	name   string
	output strings.Builder // output outside any test
	state  string          // "" while it runs, then "pass", "fail" or "skip"
	// failedBuild is the package (import path) whose failed build failed
	// this one: itself, or a package it imports.
	failedBuild string
}

// NewReport returns a Report that writes go test's usual lines to out.
func NewReport(out io.Writer) *Report {
	return &Report{out: out, tests: map[testKey]*test{}, pkgs: map[string]*pkg{}}
}

// Read feeds every line of rd to the report until EOF. Tests still
// running in a package without a result then (go test was killed) fail,
// and their output so far is shown.
func (r *Report) Read(rd io.Reader) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		r.Line(sc.Bytes())
	}
	for _, p := range r.pkgOrder {
		if p.state == "" {
			r.failUnfinished(p)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("testreport: reading go test's output: %w", err)
	}
	return nil
}

// Line feeds one line of go test -json output. A line that is not a JSON
// event (go test writes some messages as plain text) is shown as is.
func (r *Report) Line(b []byte) {
	var e Event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil || e.Action == "" {
		fmt.Fprintf(r.out, "%s\n", b)
		return
	}
	r.Event(e)
}

// Event feeds one event.
func (r *Report) Event(e Event) {
	switch e.Action {
	case "build-output":
		io.WriteString(r.out, e.Output)
		return
	case "build-fail":
		r.builds = append(r.builds, e.ImportPath)
		return
	}
	if e.Package == "" {
		return
	}
	p := r.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.output.WriteString(e.Output)
		case "pass", "fail", "skip":
			p.failedBuild = e.FailedBuild
			r.endPackage(p, e.Action)
		}
		return
	}
	t := r.test(e.Package, e.Test)
	switch e.Action {
	case "output", "bench":
		t.output.WriteString(e.Output)
	case "attr":
		switch e.Key {
		case testenv.LayerKey:
			if l := testenv.Layer(e.Value); l.Rank() > t.layer.Rank() {
				t.layer = l
			}
		case testenv.MissingKey:
			t.missing = append(t.missing, e.Value)
		case testenv.RetryKey:
			t.retries = append(t.retries, e.Value)
		}
	case "pass":
		t.state = e.Action
		t.output.Reset()
	case "skip":
		t.state = e.Action
		t.skipReason = skipReason(t.output.String())
		t.output.Reset()
	case "fail":
		t.state = e.Action
		r.showFailed(t)
	}
}

// failUnfinished fails the tests of p that started and did not end, and
// shows their output.
func (r *Report) failUnfinished(p *pkg) {
	for _, t := range r.order {
		if t.pkg == p.name && t.state == "run" {
			t.state, t.unfinished = "fail", true
			r.showFailed(t)
		}
	}
}

// pkg returns the package named name, adding it on first sight.
func (r *Report) pkg(name string) *pkg {
	p := r.pkgs[name]
	if p == nil {
		p = &pkg{name: name}
		r.pkgs[name] = p
		r.pkgOrder = append(r.pkgOrder, p)
	}
	return p
}

// test returns the test named name in package pkg, adding it on first
// sight with its parent: the longest prefix of name, cut at a "/", that
// is a known test (a subtest's own name may contain "/").
func (r *Report) test(pkg, name string) *test {
	k := testKey{pkg, name}
	if t := r.tests[k]; t != nil {
		return t
	}
	t := &test{pkg: pkg, name: name, state: "run"}
	for i := strings.LastIndexByte(name, '/'); i > 0; i = strings.LastIndexByte(name[:i], '/') {
		if parent := r.tests[testKey{pkg, name[:i]}]; parent != nil {
			t.parent = parent
			parent.children++
			break
		}
	}
	r.tests[k] = t
	r.order = append(r.order, t)
	return t
}

// showFailed writes a failed test's output without go test -v's framing
// lines, as go test without -v shows it.
func (r *Report) showFailed(t *test) {
	for _, l := range lines(t.output.String()) {
		if !framing(l) {
			io.WriteString(r.out, l)
		}
	}
	if t.unfinished {
		fmt.Fprintf(r.out, "--- FAIL: %s (unfinished: the test binary exited while it ran)\n", t.name)
	}
	t.output.Reset()
}

// endPackage records a package's result. A test that started and did not
// end when its package failed (the binary panicked, timed out or exited)
// fails, and its output so far, which holds the panic, is shown. Then the
// package's own output is shown, minus the "PASS" of a passing one.
func (r *Report) endPackage(p *pkg, action string) {
	p.state = action
	if action == "fail" {
		r.failUnfinished(p)
	}
	for _, l := range lines(p.output.String()) {
		if !framing(l) && !(action == "pass" && l == "PASS\n") {
			io.WriteString(r.out, l)
		}
	}
	p.output.Reset()
}
