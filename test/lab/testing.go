package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// Environment variables that tune lab tests.
const (
	// EnvLogs is the directory for failed runs' transcripts (default
	// $TMPDIR/paddock-lab-logs).
	EnvLogs = "PADDOCK_LAB_LOGS"
	// EnvEcho, set to 1, streams every transcript line to stderr.
	EnvEcho = "PADDOCK_LAB_ECHO"
	// EnvL1CPUs, EnvL1Machine and EnvL1BzImage (=1) override the L1
	// machine of Labs from New (for measurements).
	EnvL1CPUs    = "PADDOCK_LAB_L1_CPUS"
	EnvL1Machine = "PADDOCK_LAB_L1_MACHINE"
	EnvL1BzImage = "PADDOCK_LAB_L1_BZIMAGE"
)

// testImages is the one L1 image the tests of a package share: building it
// hashes and copies ~100 MB, so it is built once per test process. This is
// the package's only global state.
var testImages = struct {
	mu     sync.Mutex
	shared *sharedImage
}{}

// New returns a Lab for a test or benchmark with default options. It
// declares tb a lab test and ends it, naming the tool, when one the lab
// needs is not installed (internal/testenv: a skip outside CI, a failure
// in CI); it shares the built L1 image with every other Lab from New in
// the process;
// and if tb fails, its cleanup writes the transcript of each of tb's runs
// to a file ($PADDOCK_LAB_LOGS or $TMPDIR/paddock-lab-logs) and logs its
// tail.
func New(tb testing.TB) *Lab {
	tb.Helper()
	testenv.Declare(tb, testenv.Lab)
	if missing := MissingTool(); missing != "" {
		testenv.Unavailable(tb, "%s", missing)
	}
	var m Machine
	if v := os.Getenv(EnvL1CPUs); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			tb.Fatalf("%s=%q: want a positive number", EnvL1CPUs, v)
		}
		m.CPUs = n
	}
	m.Type = os.Getenv(EnvL1Machine)
	m.BootBzImage = os.Getenv(EnvL1BzImage) == "1"
	l := NewLab(Options{Machine: m})
	testImages.mu.Lock()
	if testImages.shared == nil {
		testImages.shared = l.shared
	}
	l.shared = testImages.shared
	testImages.mu.Unlock()
	l.tb = tb
	if os.Getenv(EnvEcho) == "1" {
		l.opts.Echo = func(line Line) { fmt.Fprintf(os.Stderr, "%s: %s\n", tb.Name(), line) }
	}
	tb.Cleanup(l.saveTranscripts)
	return l
}

// MissingTool returns why the lab cannot run here ("qemu-system-x86_64
// not installed ..."), or "" if it can.
func MissingTool() string {
	tools := []struct{ name, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"xz", "xz-utils"},
		{"ldd", "libc-bin"},
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t.name); err != nil {
			return fmt.Sprintf("%s not installed (Debian package %s)", t.name, t.pkg)
		}
	}
	if err := debian.CheckStatic(debian.HostBusybox); err != nil {
		if _, aptErr := exec.LookPath("apt-get"); aptErr != nil {
			return "no static busybox (Debian package busybox-static) and no apt-get to fetch it"
		}
	}
	for _, tool := range []string{"apt-cache", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			if c, cerr := cache.Default(); cerr == nil {
				if k, _ := (&debian.Client{Cache: c}).Cached("linux-image-"); len(k) > 0 {
					return "" // a cached kernel will do
				}
			}
			return fmt.Sprintf("%s not installed and no Debian kernel cached", tool)
		}
	}
	return ""
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// saveTranscripts runs at tb's cleanup.
func (l *Lab) saveTranscripts() {
	if !l.tb.Failed() {
		return
	}
	l.mu.Lock()
	runs := l.runs
	l.mu.Unlock()
	if len(runs) == 0 {
		return
	}
	dir := os.Getenv(EnvLogs)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "paddock-lab-logs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.tb.Logf("lab: cannot save transcripts: %v", err)
		return
	}
	for i, r := range runs {
		p := filepath.Join(dir, fmt.Sprintf("%s-%d.log", unsafeName.ReplaceAllString(l.tb.Name(), "_"), i+1))
		if err := r.WriteTranscript(p); err != nil {
			l.tb.Logf("%v", err)
			continue
		}
		l.tb.Logf("L1 run %d transcript: %s\n--- tail ---\n%s", i+1, p, r.Tail(25))
		for _, st := range r.Steps {
			if st.L2Shutdowns > 0 {
				l.tb.Logf("L1 run %d, step %s: %d shutdown(s) (triple faults) of a guest in L1: the step's own doing, or the emulated AMD-V's, which causes them now and then (docs/lab.md)", i+1, st.Name, st.L2Shutdowns)
			}
		}
	}
}
