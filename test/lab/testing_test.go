package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// failedTB is a testing.TB that reports failure and records logs.
type failedTB struct {
	testing.TB
	logs []string
}

func (f *failedTB) Failed() bool { return true }
func (f *failedTB) Name() string { return "TestSomething/sub case" }
func (f *failedTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *failedTB) Helper() {}

func TestSaveTranscripts(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvLogs, dir)
	tb := &failedTB{TB: t}
	l := NewLab(Options{})
	l.tb = tb
	l.runs = []*Result{{Lines: []Line{{At: time.Second, Text: "@@LAB l1.init 1"}, {At: 2 * time.Second, Source: Harness, Text: "timed out"}}}}
	l.saveTranscripts()
	p := filepath.Join(dir, "TestSomething_sub_case-1.log")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[   1.000] @@LAB l1.init 1\n[   2.000] lab: timed out\n"; string(b) != want {
		t.Errorf("transcript file %q, want %q", b, want)
	}
	if len(tb.logs) != 1 || !strings.Contains(tb.logs[0], p) || !strings.Contains(tb.logs[0], "lab: timed out") {
		t.Errorf("logs %q: want the path and the tail", tb.logs)
	}
}
