package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

var update = flag.Bool("update", false, "record testdata/*.json again with go test and rewrite testdata/*.golden")

// stream is a go test -json run of a package in testdata, recorded in
// testdata/NAME.json; testdata/NAME.golden is the report's output for it.
type stream struct {
	name string
	args []string // go test's arguments after -json
	ci   string   // $CI while recording and reporting
	// What the report must find.
	status  int
	layers  map[testenv.Layer]Counts
	failed  []string // Named.String() of Summary.Failed
	skipped []string // tests in Summary.Skipped
	missing []string // tests in Summary.Missing
}

var streams = []stream{{
	name:   "sample",
	args:   []string{"./testdata/sample"},
	status: 1,
	layers: map[testenv.Layer]Counts{
		testenv.Unit:    {Ran: 2},
		testenv.HostKVM: {Ran: 1},
		testenv.Lab:     {Ran: 2, Failed: 1},
		testenv.Oracle:  {Skipped: 1},
	},
	failed:  []string{"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestLab/fail"},
	skipped: []string{"TestMissingTool"},
	missing: []string{"TestOptional"},
}, {
	// Under CI the missing tools fail their tests.
	name:   "sample-ci",
	args:   []string{"./testdata/sample"},
	ci:     "true",
	status: 1,
	layers: map[testenv.Layer]Counts{
		testenv.Unit:    {Ran: 2, Failed: 1},
		testenv.HostKVM: {Ran: 1},
		testenv.Lab:     {Ran: 2, Failed: 1},
		testenv.Oracle:  {Ran: 1, Failed: 1},
	},
	failed: []string{
		"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestMissingTool",
		"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestLab/fail",
		"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestOptional",
	},
}, {
	name:   "pass",
	args:   []string{"-run", "^(TestUnit|TestKVM)$", "./testdata/sample"},
	status: 0,
	layers: map[testenv.Layer]Counts{testenv.Unit: {Ran: 1}, testenv.HostKVM: {Ran: 1}},
}, {
	// A panic kills the test binary: the panicking test fails with its
	// trace, the tests after it (TestAfterPanic, then TestUnit: go test
	// runs the files in name order) never run.
	name:   "panic",
	args:   []string{"-tags", "sample_panic", "-run", "^(TestUnit|TestPanic|TestAfterPanic)$", "./testdata/sample"},
	status: 1,
	layers: map[testenv.Layer]Counts{testenv.Unit: {Ran: 1, Failed: 1}},
	failed: []string{"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestPanic"},
}, {
	// A test binary that exits in the middle of a test: go test reports
	// no result for the test, the report fails it (and TestUnit, in a
	// later file, never runs).
	name:   "exit",
	args:   []string{"-tags", "sample_exit", "-run", "^(TestUnit|TestExit)$", "./testdata/sample"},
	status: 1,
	layers: map[testenv.Layer]Counts{testenv.Unit: {Ran: 1, Failed: 1}},
	failed: []string{"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestExit"},
}, {
	name:   "broken",
	args:   []string{"./testdata/broken"},
	status: 1,
	layers: map[testenv.Layer]Counts{},
	failed: []string{"github.com/paddock-vm/paddock/internal/testreport/testdata/broken: build failed"},
}}

// TestRecorded replays each recorded stream through the report and checks
// its summary, its exit status and its whole output (golden file).
func TestRecorded(t *testing.T) {
	for _, s := range streams {
		t.Run(s.name, func(t *testing.T) {
			t.Setenv(testenv.EnvCI, s.ci)
			jsonPath := filepath.Join("testdata", s.name+".json")
			if *update {
				os.WriteFile(jsonPath, goTestJSON(t, s.args), 0o644)
			}
			in, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatal(err)
			}
			r := NewReport(&bytes.Buffer{})
			if err := r.Read(bytes.NewReader(in)); err != nil {
				t.Fatal(err)
			}
			s.check(t, r.Summary())

			var out, errOut bytes.Buffer
			if got := run(nil, bytes.NewReader(in), &out, &errOut); got != s.status {
				t.Errorf("exit status %d, want %d\n%s%s", got, s.status, out.String(), errOut.String())
			}
			golden(t, filepath.Join("testdata", s.name+".golden"), out.String())
		})
	}
}

// TestLive runs go test on the sample package through the report, outside
// CI and under CI=true: what testenv declares is what the report counts.
func TestLive(t *testing.T) {
	goTool := goCommand(t)
	for _, s := range streams[:2] {
		t.Run(s.name, func(t *testing.T) {
			t.Setenv(testenv.EnvCI, s.ci)
			var out, errOut bytes.Buffer
			r := NewReport(&out)
			status := runTests(r, append([]string{goTool, "test", "-json", "-count=1"}, s.args...), &errOut)
			if status != s.status {
				t.Errorf("go test exit status %d, want %d\n%s%s", status, s.status, out.String(), errOut.String())
			}
			s.check(t, r.Summary())
		})
	}
}

func (s stream) check(t *testing.T, sum Summary) {
	t.Helper()
	for _, l := range testenv.Layers {
		if got, want := *sum.Layers[l], s.layers[l]; got != want {
			t.Errorf("%s: %+v, want %+v", l, got, want)
		}
	}
	var failed, skipped, missing []string
	for _, n := range sum.Failed {
		failed = append(failed, n.String())
	}
	for _, n := range sum.Skipped {
		skipped = append(skipped, n.Test)
		if !strings.Contains(n.Why, "is not installed (Debian package paddock-no-such-package)") {
			t.Errorf("skip reason %q does not name the tool and its package", n.Why)
		}
	}
	for _, n := range sum.Missing {
		missing = append(missing, n.Test)
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"failed", failed, s.failed}, {"skipped", skipped, s.skipped}, {"missing", missing, s.missing}} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
}

// TestRetried: each time the lab booted L1 again for a test (its
// testenv.RetryKey attribute) is listed in the summary with why, whether
// the test then passed or failed.
func TestRetried(t *testing.T) {
	r := NewReport(&bytes.Buffer{})
	const p = "example.com/e2e"
	for _, e := range []Event{
		{Action: "run", Package: p, Test: "TestA"},
		{Action: "attr", Package: p, Test: "TestA", Key: testenv.LayerKey, Value: string(testenv.Lab)},
		{Action: "attr", Package: p, Test: "TestA", Key: testenv.RetryKey, Value: "step a timed out"},
		{Action: "pass", Package: p, Test: "TestA"},
		{Action: "run", Package: p, Test: "TestB"},
		{Action: "attr", Package: p, Test: "TestB", Key: testenv.RetryKey, Value: "lab: L1 froze"},
		{Action: "attr", Package: p, Test: "TestB", Key: testenv.RetryKey, Value: "step b: 1 triple fault(s) of a guest in L1"},
		{Action: "fail", Package: p, Test: "TestB"},
		{Action: "run", Package: p, Test: "TestC"},
		{Action: "pass", Package: p, Test: "TestC"},
		{Action: "fail", Package: p},
	} {
		r.Event(e)
	}
	sum := r.Summary()
	var got []string
	for _, n := range sum.Retried {
		got = append(got, n.String())
	}
	want := []string{
		p + " TestA: step a timed out",
		p + " TestB: lab: L1 froze",
		p + " TestB: step b: 1 triple fault(s) of a guest in L1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("retried %q, want %q", got, want)
	}
	var out bytes.Buffer
	sum.Write(&out, nil)
	if !strings.Contains(out.String(), "booted L1 again after the emulator failed (docs/lab.md):\n  "+want[0]+"\n") {
		t.Errorf("the summary does not list the retries:\n%s", out.String())
	}
}

// TestShowsFailuresOnly checks the terminal output of the sample stream:
// go test's package lines and the failed test's output, without passing
// tests' logs and without go test -v's framing.
func TestShowsFailuresOnly(t *testing.T) {
	t.Setenv(testenv.EnvCI, "")
	in, err := os.ReadFile(filepath.Join("testdata", "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	run(nil, bytes.NewReader(in), &out, &out)
	for _, want := range []string{
		"the fail subtest fails\n",
		"--- FAIL: TestLab/fail (",
		"FAIL\tgithub.com/paddock-vm/paddock/internal/testreport/testdata/sample\t",
		"\nskipped (with CI=true each fails instead):\n  github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestMissingTool: ",
		"\nFAIL: 1 failure\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, unwanted := range []string{"=== RUN", "=== ATTR", "--- PASS", "--- SKIP", "paddock.layer"} {
		if strings.Contains(out.String(), unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, out.String())
		}
	}
}

// TestFuzz runs the report with a fuzz command on a passing stream: the
// count line is picked up, a failing command or a missing count fails the
// run, and failed tests keep the fuzz targets from running.
func TestFuzz(t *testing.T) {
	t.Setenv(testenv.EnvCI, "")
	tests := []struct {
		stream, command string
		status          int
		want            string
	}{
		{"pass", `echo "fuzz ./disk/qcow2 FuzzOpen (10x)"; echo "fuzz: 2 targets, 400 executions"`, 0, "fuzz              2 targets, 400 executions\n"},
		{"pass", `echo "fuzz: 2 targets, 400 executions"; exit 3`, 1, "fuzz              2 targets, 400 executions, FAILED\n"},
		{"pass", `exit 0`, 1, "fuzz       ran, but printed no"},
		{"sample", `echo ran >&2; exit 1`, 1, "fuzz       not run\n"},
	}
	for _, tt := range tests {
		in, err := os.ReadFile(filepath.Join("testdata", tt.stream+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		status := run([]string{"-fuzz", tt.command}, bytes.NewReader(in), &out, &errOut)
		if status != tt.status || !strings.Contains(out.String(), tt.want) {
			t.Errorf("-fuzz %q on %s: status %d, want %d; output lacks %q:\n%s", tt.command, tt.stream, status, tt.status, tt.want, out.String())
		}
		if strings.Contains(errOut.String(), "ran") {
			t.Errorf("-fuzz %q ran although the tests failed", tt.command)
		}
	}
}

// TestExitStatus: the report exits with go test's status, and fails a run
// that go test passed but whose stream shows a failure.
func TestExitStatus(t *testing.T) {
	t.Setenv(testenv.EnvCI, "")
	tests := []struct {
		stream string
		exit   int
		want   int
	}{
		{"pass", 0, 0},
		{"sample", 1, 1},
		{"broken", 2, 2},
		{"sample", 0, 1},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		script := "cat testdata/" + tt.stream + ".json; exit " + strconv.Itoa(tt.exit)
		if got := run([]string{"--", "sh", "-c", script}, nil, &out, &errOut); got != tt.want {
			t.Errorf("%s with go test exiting %d: status %d, want %d\n%s", tt.stream, tt.exit, got, tt.want, out.String())
		}
	}
}

// TestCISkip: under CI a skip that does not go through testenv (a plain
// t.Skip) fails the run.
func TestCISkip(t *testing.T) {
	t.Setenv(testenv.EnvCI, "true")
	in, err := os.ReadFile(filepath.Join("testdata", "sample.json")) // recorded outside CI: it has a skip
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if got := run(nil, bytes.NewReader(in), &out, &out); got != 1 || !strings.Contains(out.String(), "under CI 1 test skipped; under CI 1 test ran without an optional tool\n") {
		t.Errorf("status %d; want 1 and the skip named:\n%s", got, out.String())
	}
}

// TestNotJSON: lines that are not events (go test prints some errors as
// text) are shown as they are.
func TestNotJSON(t *testing.T) {
	var out bytes.Buffer
	r := NewReport(&out)
	r.Read(strings.NewReader("go: downloading example.com/x v1.0.0\n{\"Action\":\"start\",\"Package\":\"p\"}\n{broken\n"))
	if want := "go: downloading example.com/x v1.0.0\n{broken\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if s := r.Summary(); len(s.Failed) != 1 || !strings.Contains(s.Failed[0].Why, "no result") {
		t.Errorf("a package without a result: %+v", s.Failed)
	}
}

// TestKilled: when go test's output stops in the middle (go test was
// killed), the tests that were running fail and their output is shown.
func TestKilled(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "exit.json"))
	if err != nil {
		t.Fatal(err)
	}
	cut := string(in[:bytes.Index(in, []byte(`"Output":"FAIL\t`))])
	cut = cut[:strings.LastIndexByte(cut, '\n')+1] // up to the package's FAIL line
	var out bytes.Buffer
	r := NewReport(&out)
	if err := r.Read(strings.NewReader(cut)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "about to exit\n--- FAIL: TestExit (unfinished") {
		t.Errorf("output lacks TestExit's log and failure:\n%s", out.String())
	}
	var failed []string
	for _, n := range r.Summary().Failed {
		failed = append(failed, n.String())
	}
	want := []string{
		"github.com/paddock-vm/paddock/internal/testreport/testdata/sample TestExit",
	}
	if !reflect.DeepEqual(failed, want) {
		t.Errorf("failed %q, want %q", failed, want)
	}
}

// goTestJSON runs go test -json with args in this package's directory and
// returns its standard output (go test's exit status is part of what is
// recorded, not an error).
func goTestJSON(t *testing.T, args []string) []byte {
	t.Helper()
	cmd := exec.Command(goCommand(t), append([]string{"test", "-json", "-count=1"}, args...)...)
	out, err := cmd.Output()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatal(err)
	}
	return out
}

func goCommand(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on $PATH: %v", err)
	}
	return p
}

// golden compares got with the file at path (or rewrites it with -update).
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
