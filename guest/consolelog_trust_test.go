package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// TestReapConsoleLink: a VMM that replaced its console.log (a jailed
// VMM owns it) with a link to a file of the host, then died. Recording
// its end copies the console's last lines into state.json, which the
// VM's next VMM owns: none of the linked file may get there; and its
// vmm.log made sparse and a TiB long is read from its end, and its line
// of zeros is recorded cut short, so that the record stays readable.
func TestReapConsoleLink(t *testing.T) {
	m := testManager(t)
	vm, _ := ticksVM(t, "web")
	if _, err := m.Create(vm, ""); err != nil {
		t.Fatal(err)
	}
	v, err := m.vm("web")
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-hash:1:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, v.Path(store.ConsoleFile)); err != nil {
		t.Fatal(err)
	}
	// And its log (written through a descriptor) made sparse and huge.
	logf, err := os.OpenFile(v.Path(store.VMMLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := logf.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	if _, err := logf.WriteString("\nlast words\n"); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	if err := reapLocked(v, store.Record{Phase: store.PhaseRunning}, exit.VMMDied, "test"); err != nil {
		t.Fatal(err)
	}
	rec, err := v.ReadRecord()
	if err != nil {
		t.Fatal(err)
	}
	if rec.Exit == nil || strings.Contains(strings.Join(rec.Exit.ConsoleTail, "\n"), "secret") {
		t.Fatalf("the recorded end %+v holds the linked file's contents", rec.Exit)
	}
	if n := len(rec.Exit.VMMLogTail); n == 0 || rec.Exit.VMMLogTail[n-1] != "last words" {
		t.Fatalf("the recorded end's VMM log tail ends %q, want \"last words\"", rec.Exit.VMMLogTail[max(n-1, 0):])
	}
	for _, l := range rec.Exit.VMMLogTail {
		if len(l) > maxTailLine {
			t.Fatalf("a recorded VMM log line of %d bytes, more than %d", len(l), maxTailLine)
		}
	}
}
