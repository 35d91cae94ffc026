package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/guest/access"
	"github.com/paddock-vm/paddock/guest/access/sshtest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// TestManagedSSH runs paddock ssh on a running tiny guest with cloud_init
// whose "sshd" is a test server on the host (--address): the system's ssh
// gets in with paddock's key as the VM's user, runs the command and
// brings its status back; the host key comes from the console (the block
// cloud-init prints), after which another key is refused; paddock cp
// copies both ways with the system's scp. Then the refusals: no
// cloud_init, not running, no address, no SSH server, cp's arguments.
func TestManagedSSH(t *testing.T) {
	testenv.RequireTool(t, "ssh", "openssh-client")
	e := newManagedEnv(t)
	e.ok("create", "-f", e.guestVM("web", "counter", "user: alice\n"))
	e.ok("start", "web")
	key, err := access.ReadKey(access.KeyPath(e.home))
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t, "alice", key.Public, func(cmd string) (string, uint32) {
		return "web\n", 3
	})

	// No host key on the console yet: the first connection records it.
	out, errOut, status := e.paddock("ssh", "--address", srv.Addr, "web", "--", "hostname")
	if status != 3 || out != "web\n" {
		t.Fatalf("paddock ssh: status %d, stdout %q, stderr %q; want the command's status 3 and output", status, out, errOut)
	}
	if got := srv.Execs(); len(got) != 1 || got[0] != "hostname" {
		t.Errorf("the guest ran %q", got)
	}
	vmDir := filepath.Join(e.home, "vms", "web")
	if kh, _ := os.ReadFile(filepath.Join(vmDir, "known_hosts")); !strings.HasPrefix(string(kh), "paddock-web ssh-ed25519 ") {
		t.Errorf("known_hosts after the first ssh: %q", kh)
	}

	// The console says which key the guest has: a server with another
	// one is refused, whatever ssh recorded before.
	other := sshtest.Start(t, "alice", key.Public, func(string) (string, uint32) { return "impostor\n", 0 })
	if err := os.WriteFile(filepath.Join(vmDir, "console.log.1"), []byte(srv.HostKeyBlock()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, status := e.paddock("ssh", "--address", other.Addr, "web", "--", "hostname"); status != 255 || !strings.Contains(errOut, "Host key verification failed") || out != "" {
		t.Errorf("ssh to another key: status %d, stdout %q, stderr %q; want ssh's refusal", status, out, errOut)
	}
	if len(other.Execs()) != 0 {
		t.Errorf("the impostor ran %q", other.Execs())
	}
	if out, _, status := e.paddock("ssh", "--address", srv.Addr, "web", "ls", "-l"); status != 3 || out != "web\n" {
		t.Errorf("ssh without --: status %d, %q", status, out)
	}
	if got := srv.Execs(); len(got) != 2 || got[1] != "ls -l" {
		t.Errorf("the guest ran %q; want the words after the name as the command", got)
	}

	// paddock cp, both ways, through scp's SFTP (the "guest" is the
	// host's file system here), with the strict host key.
	files := t.TempDir()
	up := filepath.Join(files, "up.txt")
	if err := os.WriteFile(up, []byte("to the guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inGuest := filepath.Join(files, "in-guest")
	if err := os.Mkdir(inGuest, 0o755); err != nil {
		t.Fatal(err)
	}
	e.ok("cp", "--address", srv.Addr, up, "web:"+inGuest+"/")
	if b, err := os.ReadFile(filepath.Join(inGuest, "up.txt")); err != nil || string(b) != "to the guest\n" {
		t.Errorf("copied up: %q, %v", b, err)
	}
	down := filepath.Join(files, "down")
	e.ok("cp", "--address", srv.Addr, "-r", "web:"+inGuest, down)
	if b, err := os.ReadFile(filepath.Join(down, "up.txt")); err != nil || string(b) != "to the guest\n" {
		t.Errorf("copied down, recursively: %q, %v", b, err)
	}
	if _, errOut, status := e.paddock("cp", "--address", srv.Addr, "web:"+filepath.Join(files, "nope"), files); status != 1 || !strings.Contains(errOut, "No such file") {
		t.Errorf("cp of a missing file: status %d, stderr %q; want scp's 1 and its message", status, errOut)
	}
	if _, errOut, status := e.paddock("cp", "--address", other.Addr, up, "web:"+inGuest+"/"); status != 255 && status != 1 || !strings.Contains(errOut, "Host key verification failed") {
		t.Errorf("cp to another host key: status %d, stderr %q", status, errOut)
	}

	// Refusals, before ssh runs.
	e.fails(1, "paddock: VM 'web' has no address paddock knows: paddock learns a VM's address from the DHCP lease its managed network gives (nics[].network); for a VM on a tap or bridge of your own, give it with --address\n", "ssh", "web")
	_, errOut, status = e.paddock("ssh", "--address", "127.0.0.1:1", "--wait", "1s", "web")
	if status != 1 || !strings.HasPrefix(errOut, "paddock: VM web: no SSH server answered at 127.0.0.1:1 within ") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("nothing listening: status %d, stderr %q", status, errOut)
	}
	e.ok("create", "-f", e.guestVM("plain", "counter", ""))
	e.fails(4, "paddock: cannot reach VM 'plain': it is created; start it first (paddock start plain)\n", "ssh", "--address", srv.Addr, "plain")
	e.ok("start", "plain")
	e.fails(1, "paddock: VM 'plain' has no cloud_init: paddock's SSH key reaches a guest through cloud-init's seed (docs/yaml.md, cloud_init); use ssh with a key of your own\n", "ssh", "--address", srv.Addr, "plain")
	e.fails(3, "paddock: no VM named 'nope' (paddock ls lists them)\n", "ssh", "nope")
	e.fails(2, "paddock: ssh needs a VM name (usage: paddock ssh NAME [-- CMD...])\n", "ssh")
	e.fails(2, "paddock: cp copies between the host and a VM: neither a nor b is NAME:PATH\n", "cp", "a", "b")
	e.fails(2, "paddock: cp copies between the host and one VM: web:a and plain:b are both in VMs; copy through the host\n", "cp", "web:a", "plain:b")
	e.fails(2, "paddock: web:: no path after the VM's name (write web:PATH, such as web:~ or web:/tmp/)\n", "cp", "x", "web:")
}
