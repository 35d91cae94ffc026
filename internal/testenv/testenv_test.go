package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recorder is a testing.TB that records what a helper asked of it.
// Skip and Fatal record and return (the real ones stop the goroutine).
type recorder struct {
	testing.TB
	attrs   []string
	skipped string
	fatal   string
	logs    []string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Attr(key, value string)            { r.attrs = append(r.attrs, key+"="+value) }
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

const noTool = "paddock-no-such-tool"

func TestRequireTool(t *testing.T) {
	for _, ci := range []string{"", "false", "true", "1"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv(EnvCI, ci)
			r := &recorder{TB: t}
			if p := RequireTool(r, noTool, "paddock-pkg"); p != "" {
				t.Errorf("path %q for a missing tool", p)
			}
			want := noTool + " is not installed (Debian package paddock-pkg)"
			inCI := ci == "true" || ci == "1"
			switch {
			case inCI && (r.skipped != "" || !strings.HasPrefix(r.fatal, want+" (CI="+ci+": ")):
				t.Errorf("in CI: skipped %q, failed %q; want a failure naming the tool", r.skipped, r.fatal)
			case !inCI && (r.fatal != "" || r.skipped != want):
				t.Errorf("outside CI: skipped %q, failed %q; want a skip naming the tool", r.skipped, r.fatal)
			}
			if got := strings.Join(r.attrs, " "); got != LayerKey+"=oracle" {
				t.Errorf("attributes %q, want the oracle layer", got)
			}
		})
	}

	r := &recorder{TB: t}
	if p := RequireTool(r, "sh", "dash"); p == "" || r.skipped != "" || r.fatal != "" {
		t.Errorf("RequireTool(sh) = %q, skipped %q, failed %q", p, r.skipped, r.fatal)
	}
}

func TestHasTool(t *testing.T) {
	t.Setenv(EnvCI, "")
	r := &recorder{TB: t}
	if HasTool(r, noTool, "paddock-pkg") || r.skipped != "" || r.fatal != "" || len(r.logs) != 1 {
		t.Errorf("missing optional tool outside CI: skipped %q, failed %q, logged %q; want it logged only", r.skipped, r.fatal, r.logs)
	}
	if got := strings.Join(r.attrs, " "); got != MissingKey+"="+noTool+" is not installed (Debian package paddock-pkg)" {
		t.Errorf("attributes %q, want the missing tool recorded and no layer", got)
	}

	t.Setenv(EnvCI, "true")
	r = &recorder{TB: t}
	if HasTool(r, noTool, "paddock-pkg"); !strings.Contains(r.fatal, noTool) {
		t.Errorf("missing optional tool in CI: failed %q, want the tool named", r.fatal)
	}

	r = &recorder{TB: t}
	if !HasTool(r, "sh", "dash") || r.fatal != "" || strings.Join(r.attrs, " ") != LayerKey+"=oracle" {
		t.Errorf("HasTool(sh): failed %q, attributes %q", r.fatal, r.attrs)
	}
}

func TestRequireRoot(t *testing.T) {
	t.Setenv(EnvCI, "")
	r := &recorder{TB: t}
	RequireRoot(r, "network namespaces need CAP_NET_ADMIN")
	if root := os.Geteuid() == 0; root != (r.skipped == "") {
		t.Errorf("euid %d: skipped %q", os.Geteuid(), r.skipped)
	}
}

// TestRequireKVM runs for real on this machine: /dev/kvm opens, or the
// test is skipped (failed in CI) by the very helper under test.
func TestRequireKVM(t *testing.T) {
	r := &recorder{TB: t}
	RequireKVM(r)
	if got := strings.Join(r.attrs, " "); got != LayerKey+"=hostkvm" {
		t.Errorf("attributes %q, want the host KVM layer", got)
	}
	_, err := os.Stat(KVMPath)
	if (err == nil) != (r.skipped == "" && r.fatal == "") {
		t.Errorf("%s: %v, but skipped %q, failed %q", KVMPath, err, r.skipped, r.fatal)
	}
}

func TestRank(t *testing.T) {
	for i := 1; i < len(Layers); i++ {
		if Layers[i].Rank() <= Unit.Rank() {
			t.Errorf("%s ranks %d, not above unit", Layers[i], Layers[i].Rank())
		}
	}
	if !(Lab.Rank() > HostKVM.Rank() && HostKVM.Rank() > Oracle.Rank() && Layer("other").Rank() < Unit.Rank()) {
		t.Error("want lab > host KVM > oracle > unit > unknown")
	}
}

func TestOpenFDs(t *testing.T) {
	before := OpenFDs(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if got := OpenFDs(t); got != before+1 {
		t.Errorf("%d descriptors with one more open, %d before", got, before)
	}
	f.Close()
	if got := OpenFDs(t); got != before {
		t.Errorf("%d descriptors after closing it, %d before", got, before)
	}
}
