package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// TestJailFilesNotFollowed plays a compromised jailed VMM: in its VM's
// directory, where it may replace what it owns, it puts links to another
// VM's snapshots, control socket and a host file. paddock, as root,
// acts on none of what they name: the other VM keeps its snapshot and
// runs on unpaused, the host file does not show. Then, with its files
// back, the jailed VM's snapshots work end to end: restore, a warm
// template (which takes the jail's memory file over), rm.
func TestJailFilesNotFollowed(t *testing.T) {
	testenv.RequireRoot(t, "a jailed VMM needs paddock to run as root")
	e := newManagedEnv(t)
	disk := filepath.Join(e.dir, "web.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", disk, "1M")
	e.ok("up", "-f", e.guestVM("web", "counter", "disks:\n  - path: "+disk+"\n    format: qcow2\n"))
	e.ok("up", "-f", e.guestVM("db", "counter", ""))
	e.waitConsoleLog("web", "counting\n")
	e.waitConsoleLog("db", "counting\n")
	e.ok("snapshot", "create", "web", "s1")
	e.ok("snapshot", "create", "db", "d1")
	web, db := e.vm("web"), e.vm("db")
	if id, ok := web.JailID(); !ok {
		t.Fatalf("VM web runs unjailed (jail id %d)", id)
	}
	swap := func(name, target string) (undo func()) {
		t.Helper()
		p := web.Path(name)
		if err := os.Rename(p, p+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return func() {
			t.Helper()
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".real", p); err != nil {
				t.Fatal(err)
			}
		}
	}

	undo := swap(store.SnapshotsDir, db.Path(store.SnapshotsDir))
	if _, stderr, status := e.paddock("snapshot", "rm", "web", "d1"); status == 0 || !strings.Contains(stderr, "is a symbolic link") {
		t.Errorf("snapshot rm through a linked snapshots directory: status %d, stderr %q", status, stderr)
	}
	undo()
	if out := e.ok("snapshot", "ls", "db"); !strings.Contains(out, "d1") {
		t.Fatalf("VM db lost its snapshot d1:\n%s", out)
	}

	undo = swap(store.SocketFile, db.Path(store.SocketFile))
	if _, stderr, status := e.paddock("pause", "web"); status == 0 || !strings.Contains(stderr, "is not a socket") {
		t.Errorf("pause through a linked control socket: status %d, stderr %q", status, stderr)
	}
	undo()
	if s := e.state("db"); s != "running" {
		t.Fatalf("VM db is %s after a pause of web through a link to its socket", s)
	}

	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-hash:1:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("stop", "web")
	undo = swap(store.ConsoleFile, secret)
	if out, _, _ := e.paddock("logs", "web"); strings.Contains(out, "secret") {
		t.Errorf("paddock logs shows the file console.log links to:\n%s", out)
	}
	undo()

	e.ok("snapshot", "restore", "web", "s1")
	e.waitConsoleLog("web", "counting\n")
	e.ok("template", "create", "web-warm", "--from", "web", "--memory")
	e.ok("snapshot", "rm", "web", "s1")
	e.ok("snapshot", "rm", "db", "d1")
}
