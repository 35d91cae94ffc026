package main

import "strings"

// Event is one line of `go test -json` (see `go doc cmd/test2json`), with
// the fields of the build events (`go help buildjson`) and of test
// attributes (testing.T.Attr).
type Event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	FailedBuild string
	// ImportPath is set on build-output and build-fail events.
	ImportPath string
	// Key and Value are set on attr events.
	Key, Value string
}

// framing reports whether a line of test output is go test -v's framing
// ("=== RUN   TestX", "=== PAUSE", "=== CONT", "=== NAME", "=== ATTR"),
// which go test without -v does not show.
func framing(line string) bool {
	for _, p := range []string{"=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME ", "=== NAME\n", "=== ATTR "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// lines splits output into lines, each with its newline (the last one
// may lack it).
func lines(output string) []string {
	if output == "" {
		return nil
	}
	out := strings.SplitAfter(output, "\n")
	if out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}
