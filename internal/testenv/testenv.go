// Package testenv is how a paddock test says what it needs from the
// machine (a tool, /dev/kvm, root) and which test layer it belongs to.
//
// Outside CI a test whose tool is missing skips, saying which tool and
// which Debian package provides it. Under CI (CI=true) the same test
// fails with the same sentence, so that a broken install step cannot make
// a whole layer drop out while CI stays green (docs/architecture.md,
// "Tests").
//
// Each helper also records the test's layer as a test attribute (key
// LayerKey, see testing.T.Attr); `make test` reads them from `go test
// -json` (internal/testreport) and counts the tests run in each layer. A
// test that declares no layer is a unit test.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// Layer is one of the project's test layers.
type Layer string

// The layers, from the cheapest to the most demanding. A test that
// declares several (say, a lab test that also runs qemu-img) counts in the
// highest by Rank.
const (
	// Unit tests are pure Go; they declare nothing.
	Unit Layer = "unit"
	// Oracle tests run tools written by others: QEMU's qemu-img, qemu-io
	// and qemu-system-x86_64, ACPICA's iasl, GNU binutils and cpio, xz,
	// Debian's apt and dpkg, busybox, ..., to judge paddock's output or to
	// make real input for it.
	Oracle Layer = "oracle"
	// HostKVM tests drive this machine's /dev/kvm with tiny guests.
	HostKVM Layer = "hostkvm"
	// Lab tests run in the nested KVM lab (test/lab, docs/lab.md).
	Lab Layer = "lab"
)

// Layers lists every layer in the order reports show them.
var Layers = []Layer{Unit, HostKVM, Lab, Oracle}

// Rank orders the layers for a test that declares several: the highest
// rank is the test's layer. Unknown names rank below Unit.
func (l Layer) Rank() int {
	switch l {
	case Unit:
		return 1
	case Oracle:
		return 2
	case HostKVM:
		return 3
	case Lab:
		return 4
	}
	return 0
}

// Test attribute keys (testing.T.Attr) that internal/testreport reads.
const (
	// LayerKey's value is the Layer a test declared.
	LayerKey = "paddock.layer"
	// MissingKey's value names an optional tool a test ran without
	// (HasTool), outside CI.
	MissingKey = "paddock.missing"
	// RetryKey's value says why the lab booted L1 again for a test (the
	// emulator's failure, test/lab's Run).
	RetryKey = "paddock.retry"
)

// EnvCI is the environment variable that marks a CI run: when it holds a
// true value (strconv.ParseBool: "true", "1", ...), what a test needs and
// does not find fails the test instead of skipping it.
const EnvCI = "CI"

// CI reports whether this is a CI run ($CI is true).
func CI() bool {
	ci, err := strconv.ParseBool(os.Getenv(EnvCI))
	return err == nil && ci
}

// Declare records that tb belongs to layer l.
func Declare(tb testing.TB, l Layer) {
	tb.Helper()
	tb.Attr(LayerKey, string(l))
}

// Unavailable ends tb because something it needs is not here; the message
// says what and, for a tool, which Debian package has it. Outside CI tb
// is skipped with that message; under CI it fails with it.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	why := fmt.Sprintf(format, args...)
	if CI() {
		tb.Fatalf("%s (%s=%s: in CI a test that cannot run fails instead of skipping)", why, EnvCI, os.Getenv(EnvCI))
		return
	}
	tb.Skip(why)
}

// RequireTool returns the path of the program name, which the Debian
// package debianPackage installs, and declares tb an Oracle test. If name
// is not on $PATH, tb ends (Unavailable).
func RequireTool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	Declare(tb, Oracle)
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(tb, "%s is not installed (Debian package %s)", name, debianPackage)
	}
	return p
}

// HasTool is RequireTool for a check a test can do without: it reports
// whether name is on $PATH. When it is, tb is declared an Oracle test.
// When it is not, under CI tb fails; outside CI tb goes on without the
// check, logs that, and the test report lists it (MissingKey).
func HasTool(tb testing.TB, name, debianPackage string) bool {
	tb.Helper()
	if _, err := exec.LookPath(name); err == nil {
		Declare(tb, Oracle)
		return true
	}
	missing := fmt.Sprintf("%s is not installed (Debian package %s)", name, debianPackage)
	if CI() {
		tb.Fatalf("%s (%s=%s: in CI every check must run)", missing, EnvCI, os.Getenv(EnvCI))
		return false
	}
	tb.Attr(MissingKey, missing)
	tb.Logf("%s: going on without its checks", missing)
	return false
}

// KVMPath is the KVM device host-KVM tests open.
const KVMPath = "/dev/kvm"

// RequireKVM declares tb a HostKVM test and ends it (Unavailable) unless
// /dev/kvm opens read-write.
func RequireKVM(tb testing.TB) {
	tb.Helper()
	Declare(tb, HostKVM)
	f, err := os.OpenFile(KVMPath, os.O_RDWR, 0)
	if err != nil {
		Unavailable(tb, "%s is not usable here: %v", KVMPath, err)
		return
	}
	f.Close()
}

// RequireRoot ends tb (Unavailable) unless the process runs as root; why
// says what needs it ("network namespaces need CAP_NET_ADMIN").
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "%s: run the tests as root", why)
	}
}
