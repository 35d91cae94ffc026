// Command testreport runs `go test -json` for `make test` and shows what
// go test without -v shows (build errors, each failed test's output, each
// package's ok or FAIL line), then a summary: how many tests ran, failed
// and were skipped in each test layer (internal/testenv), the fuzz
// targets and their executions, every skipped test with its reason, and
// every failure.
//
// Usage:
//
//	testreport [-fuzz 'shell command'] [--] go test -json [flags] [packages]
//	testreport < go-test-json-output
//
// With -fuzz, once the tests have passed, testreport runs the shell
// command (`make fuzz`), shows its output and takes the fuzz counts from
// its line "fuzz: N targets, M executions".
//
// The exit status is go test's, or 1 when go test exited 0 but the run
// still failed: a failure in the stream, the fuzz command failing or
// printing no count, or, under CI=true, a skipped test (a missing tool
// must fail in CI; internal/testenv already fails such tests, and this
// catches a t.Skip that does not go through it).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"

	"github.com/paddock-vm/paddock/internal/testenv"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main with its streams; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fuzzCmd := fs.String("fuzz", "", "shell `command` to run once the tests pass, printing \"fuzz: N targets, M executions\"")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: testreport [-fuzz 'command'] [--] go test -json [flags] [packages]\n       testreport < go-test-json-output")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Ctrl-C reaches go test too (same process group): keep reading what
	// it says while it stops, and print the summary.
	signal.Notify(make(chan os.Signal, 1), os.Interrupt)

	r := NewReport(stdout)
	status := 0
	if fs.NArg() == 0 {
		if err := r.Read(stdin); err != nil {
			fmt.Fprintln(stderr, err)
			status = 1
		}
	} else {
		status = runTests(r, fs.Args(), stderr)
	}
	sum := r.Summary()
	var fz *Fuzz
	if *fuzzCmd != "" {
		fz = &Fuzz{}
		if status == 0 && len(sum.Failed) == 0 {
			runFuzz(fz, *fuzzCmd, stdout, stderr)
		}
	}
	sum.Write(stdout, fz)
	return verdict(stdout, status, sum, fz, testenv.CI())
}

// runTests runs the go test command, feeding its standard output to r;
// its standard error is passed through. It returns the command's exit
// status.
func runTests(r *Report, argv []string, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testreport: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testreport: starting %s: %v\n", argv[0], err)
		return 1
	}
	readErr := r.Read(out)
	if readErr != nil {
		fmt.Fprintln(stderr, readErr)
		io.Copy(io.Discard, out) // let go test finish
	}
	return exitStatus(cmd.Wait(), readErr, stderr)
}

// fuzzCount matches the Makefile's fuzz target's last line.
var fuzzCount = regexp.MustCompile(`^fuzz: (\d+) targets?, (\d+) executions?$`)

// runFuzz runs the fuzz command with sh -c, passing its output through,
// and fills fz from it.
func runFuzz(fz *Fuzz, command string, stdout, stderr io.Writer) {
	fz.Ran = true
	cmd := exec.Command("sh", "-c", command)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintf(stderr, "testreport: running %q: %v\n", command, err)
		fz.Failed = true
		return
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(stdout, line)
		if m := fuzzCount.FindStringSubmatch(line); m != nil {
			fz.Targets, _ = strconv.ParseInt(m[1], 10, 64)
			fz.Executions, _ = strconv.ParseInt(m[2], 10, 64)
			fz.Reported = true
		}
	}
	readErr := sc.Err()
	if readErr != nil {
		io.Copy(io.Discard, out)
	}
	fz.Failed = exitStatus(cmd.Wait(), readErr, stderr) != 0
}

// exitStatus turns a command's Wait error into an exit status.
func exitStatus(waitErr, readErr error, stderr io.Writer) int {
	var ee *exec.ExitError
	switch {
	case errors.As(waitErr, &ee):
		if code := ee.ExitCode(); code > 0 {
			return code
		}
		return 1 // killed by a signal
	case waitErr != nil:
		fmt.Fprintf(stderr, "testreport: %v\n", waitErr)
		return 1
	case readErr != nil:
		return 1
	}
	return 0
}

// verdict prints the run's last line, PASS or FAIL with the reasons, and
// returns the exit status: go test's when it failed, else 1 for any other
// reason to fail.
func verdict(w io.Writer, status int, s Summary, fz *Fuzz, ci bool) int {
	var why []string
	if status != 0 {
		why = append(why, fmt.Sprintf("go test exited with status %d", status))
	}
	if n := len(s.Failed); n > 0 {
		why = append(why, plural(n, "failure"))
	}
	if fz != nil && fz.Ran {
		if fz.Failed {
			why = append(why, "the fuzz targets failed")
		} else if !fz.Reported {
			why = append(why, "the fuzz command printed no count")
		}
	}
	if ci {
		if n := len(s.Skipped); n > 0 {
			why = append(why, fmt.Sprintf("under CI %s skipped", plural(n, "test")))
		}
		if n := len(s.Missing); n > 0 {
			why = append(why, fmt.Sprintf("under CI %s ran without an optional tool", plural(n, "test")))
		}
	}
	if len(why) == 0 {
		fmt.Fprintln(w, "PASS")
		return 0
	}
	fmt.Fprintf(w, "FAIL: %s\n", strings.Join(why, "; "))
	if status != 0 {
		return status
	}
	return 1
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
