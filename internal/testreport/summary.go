package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// Counts are the tests of one layer.
type Counts struct {
	Ran, Failed, Skipped int
}

// Named is a test (or a package, Test empty) with something to say about it.
type Named struct {
	Package, Test string
	// Why is a skip's reason, an optional tool that was missing, why the
	// lab booted L1 again, or why a package failed without a failed
	// test.
	Why string
}

func (n Named) String() string {
	s := n.Package
	if n.Test != "" {
		s += " " + n.Test
	}
	if n.Why != "" {
		s += ": " + n.Why
	}
	return s
}

// Summary is what a whole go test run did, by layer.
//
// Tests are counted as go test -v lists them, except that a test with
// subtests counts as its subtests, unless it failed while none of them
// did. A test is in the highest layer (testenv.Layer.Rank) that it or a
// test enclosing it declared; a test that declared none is a unit test.
type Summary struct {
	Layers  map[testenv.Layer]*Counts
	Skipped []Named
	// Missing lists tests that ran without an optional tool (outside CI).
	Missing []Named
	// Retried lists, passed or not, the tests for which the lab booted
	// L1 again after the emulator failed (test/lab's Run), once for each
	// time: a fault of paddock's that comes and goes shows here.
	Retried []Named
	// Failed lists failed tests (not the parents of a failed subtest),
	// packages that failed to build, and packages that failed with no
	// failed test to show for it.
	Failed []Named
}

// Summary adds up what the stream reported so far.
func (r *Report) Summary() Summary {
	s := Summary{Layers: map[testenv.Layer]*Counts{}}
	for _, l := range testenv.Layers {
		s.Layers[l] = &Counts{}
	}
	failedChild := map[*test]bool{}
	for _, t := range r.order {
		if t.state != "pass" && t.state != "skip" {
			for p := t.parent; p != nil; p = p.parent {
				failedChild[p] = true
			}
		}
	}
	failedPkg := map[string]bool{}
	built := map[string]bool{} // failed builds already listed
	for _, t := range r.order {
		for _, m := range t.missing {
			s.Missing = append(s.Missing, Named{t.pkg, t.name, m})
		}
		for _, why := range t.retries {
			s.Retried = append(s.Retried, Named{t.pkg, t.name, why})
		}
		failed := t.state != "pass" && t.state != "skip" // "run": the stream ended first
		if t.children > 0 && !(failed && !failedChild[t]) {
			continue
		}
		c := s.Layers[layerOf(t)]
		switch {
		case failed:
			c.Ran++
			c.Failed++
			s.Failed = append(s.Failed, Named{Package: t.pkg, Test: t.name})
			failedPkg[t.pkg] = true
		case t.state == "skip":
			c.Skipped++
			s.Skipped = append(s.Skipped, Named{t.pkg, t.name, t.skipReason})
		default:
			c.Ran++
		}
	}
	for _, p := range r.pkgOrder {
		switch {
		case p.failedBuild != "":
			why := "build failed"
			if b := importPath(p.failedBuild); b != p.name {
				why = "build failed in " + b
			}
			s.Failed = append(s.Failed, Named{Package: p.name, Why: why})
			built[importPath(p.failedBuild)] = true
		case failedPkg[p.name]:
		case p.state == "fail":
			s.Failed = append(s.Failed, Named{Package: p.name, Why: "the test binary failed outside any test"})
		case p.state == "":
			s.Failed = append(s.Failed, Named{Package: p.name, Why: "no result: go test's output ended first"})
		}
	}
	for _, b := range r.builds {
		if !built[importPath(b)] {
			s.Failed = append(s.Failed, Named{Package: importPath(b), Why: "build failed"})
		}
	}
	return s
}

// importPath cuts the test variant off a build's package ID:
// "example.com/p [example.com/p.test]" is example.com/p.
func importPath(id string) string {
	if i := strings.IndexByte(id, ' '); i > 0 {
		return id[:i]
	}
	return id
}

// layerOf is the highest layer t or an enclosing test declared.
func layerOf(t *test) testenv.Layer {
	l := testenv.Unit
	for ; t != nil; t = t.parent {
		if t.layer.Rank() > l.Rank() {
			l = t.layer
		}
	}
	return l
}

// skipReason is the last line a skipped test logged before go test's
// "--- SKIP" line: the t.Skip message.
func skipReason(output string) string {
	reason := ""
	for _, l := range lines(output) {
		if strings.HasPrefix(l, "--- SKIP") {
			break
		}
		if !framing(l) && strings.TrimSpace(l) != "" {
			reason = strings.TrimSpace(l)
		}
	}
	return reason
}

// layerNames are the layers as the summary shows them.
var layerNames = map[testenv.Layer]string{
	testenv.Unit:    "unit",
	testenv.HostKVM: "host KVM",
	testenv.Lab:     "lab",
	testenv.Oracle:  "oracle",
}

// Fuzz is what `make fuzz` reported: its final line "fuzz: N targets, M
// executions" (see the Makefile).
type Fuzz struct {
	Ran                 bool // the fuzz command ran
	Failed              bool // it exited non-zero
	Reported            bool // it printed its count line
	Targets, Executions int64
}

// Write prints the summary: a table of the layers, then the skipped
// tests, the tests that ran without an optional tool, those whose L1
// the lab booted again, and the failed ones.
func (s Summary) Write(w io.Writer, fz *Fuzz) {
	fmt.Fprintf(w, "\n%-10s %8s %8s %8s\n", "tests", "ran", "failed", "skipped")
	for _, l := range testenv.Layers {
		c := s.Layers[l]
		fmt.Fprintf(w, "%-10s %8d %8d %8d\n", layerNames[l], c.Ran, c.Failed, c.Skipped)
	}
	if fz != nil {
		switch {
		case !fz.Ran:
			fmt.Fprintf(w, "%-10s not run\n", "fuzz")
		case fz.Reported:
			fmt.Fprintf(w, "%-10s %8d targets, %d executions", "fuzz", fz.Targets, fz.Executions)
			if fz.Failed {
				io.WriteString(w, ", FAILED")
			}
			io.WriteString(w, "\n")
		case fz.Failed:
			fmt.Fprintf(w, "%-10s FAILED\n", "fuzz")
		default:
			fmt.Fprintf(w, "%-10s ran, but printed no \"fuzz: N targets, M executions\" line\n", "fuzz")
		}
	}
	list(w, "skipped (with CI=true each fails instead)", s.Skipped)
	list(w, "ran without an optional tool (with CI=true each fails instead)", s.Missing)
	list(w, "booted L1 again after the emulator failed (docs/lab.md)", s.Retried)
	list(w, "failed", s.Failed)
}

func list(w io.Writer, title string, ns []Named) {
	if len(ns) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for _, n := range ns {
		fmt.Fprintf(w, "  %s\n", n)
	}
}
