package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// envProbe makes the test binary a probe (TestMain): it tries to open
// the files and connect to the sockets its arguments name, as
// open-ro:PATH, open-rw:PATH or connect:PATH, and prints one line per
// try: the try and "ok" or the error.
const envProbe = "PADDOCK_E2E_PROBE"

// probe is the probe's body.
func probe(args []string) {
	for _, a := range args {
		kind, path, _ := strings.Cut(a, ":")
		var err error
		switch kind {
		case "open-ro", "open-rw":
			flag := os.O_RDONLY
			if kind == "open-rw" {
				flag = os.O_RDWR
			}
			var f *os.File
			if f, err = os.OpenFile(path, flag, 0); err == nil {
				f.Close()
			}
		case "connect":
			var c net.Conn
			if c, err = net.Dial("unix", path); err == nil {
				c.Close()
			}
		default:
			err = fmt.Errorf("unknown try %q", kind)
		}
		result := "ok"
		if err != nil {
			result = "error: " + err.Error()
			if errors.Is(err, os.ErrPermission) {
				result = "denied"
			}
		}
		fmt.Printf("%s %s\n", a, result)
	}
}

// probeAs runs the probe (the test binary, copied to exe, where others
// may run it) as the user and group of process pid (with no
// supplementary groups), in the host's namespaces, and returns what it
// printed, one line per try.
func probeAs(t *testing.T, exe string, pid int, tries ...string) []string {
	t.Helper()
	st := procStatus(t, pid)
	uid, err1 := strconv.ParseUint(strings.Fields(st["Uid"])[0], 10, 32)
	gid, err2 := strconv.ParseUint(strings.Fields(st["Gid"])[0], 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("ids of %d: Uid %q Gid %q", pid, st["Uid"], st["Gid"])
	}
	cmd := exec.Command(exe, tries...)
	cmd.Env = append(os.Environ(), envProbe+"=1")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe as %d:%d: %v\n%s", uid, gid, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestJailTenants: a second tenant's VMM cannot open the first tenant's
// disk image or control socket. In its own mount namespace they do not
// exist; and a process of its user and group on the host, where they
// do, is refused both: the state directory is root's alone, the image
// root's, and even with the directories above it open to all, the
// first VM's directory is its jail group's (while a process of the
// first VM's own user reaches its socket there).
func TestJailTenants(t *testing.T) {
	testenv.RequireRoot(t, "a jailed VMM needs paddock to run as root")
	e := newManagedEnv(t)
	e.ok("tenant", "create", "acme")
	e.ok("tenant", "create", "globex")
	// The image lies in a directory anyone may pass through, readable
	// and writable by its owner, root, alone: as a careful user keeps one.
	pub, err := os.MkdirTemp("", "paddock-tenant-images-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(pub, "probe")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(pub, "a.img")
	if err := os.WriteFile(image, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("up", "-f", e.guestVM("a", "counter", "tenant: acme\ndisks: [{path: "+image+", format: raw}]\n"))
	e.ok("up", "-f", e.guestVM("b", "counter", "tenant: globex\n"))
	e.waitConsoleLog("b", "counting\n")
	ls := e.ls()
	a, b := ls["a"].PID, ls["b"].PID
	sock := e.vm("a").Path("ctl.sock")
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	// b's mount namespace has neither.
	for _, p := range []string{image, sock, pub, e.vm("a").Dir} {
		if _, err := os.Lstat("/proc/" + strconv.Itoa(b) + "/root" + p); !os.IsNotExist(err) {
			t.Errorf("%s exists in the mount namespace of tenant globex's VMM: %v", p, err)
		}
	}
	// b's user and group, on the host: the state directory is root's
	// alone, and so is the image.
	tries := []string{"open-ro:" + image, "open-rw:" + image, "connect:" + sock}
	denied := []string{"open-ro:" + image + " denied", "open-rw:" + image + " denied", "connect:" + sock + " denied"}
	if got := probeAs(t, exe, b, tries...); strings.Join(got, "\n") != strings.Join(denied, "\n") {
		t.Errorf("as tenant globex's VMM's user:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(denied, "\n"))
	}
	// Even with every directory above the VM's open to all, the VM's
	// directory (of a's jail group) keeps b's user out, while a's own
	// user reaches its socket: the probe can succeed.
	for dir := e.vm("a").Dir; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if dir != e.vm("a").Dir {
			if err := os.Chmod(dir, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := probeAs(t, exe, b, tries...); strings.Join(got, "\n") != strings.Join(denied, "\n") {
		t.Errorf("as tenant globex's VMM's user, the state directory open:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(denied, "\n"))
	}
	if got := probeAs(t, exe, a, "connect:"+sock); len(got) != 1 || got[0] != "connect:"+sock+" ok" {
		t.Errorf("as tenant acme's VMM's user: %v; want its socket reached", got)
	}
	e.ok("rm", "--force", "a", "b")
}
