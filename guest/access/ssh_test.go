package access

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/paddock-vm/paddock/guest/access/sshtest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

func testTarget() *Target {
	return &Target{Name: "web", Addr: "10.0.0.5:22", User: "alice", Key: "/h/ssh/id_ed25519", KnownHosts: "/h/vms/web/known_hosts"}
}

func TestSSHArgs(t *testing.T) {
	tg := testTarget()
	opts := "-i /h/ssh/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=/h/vms/web/known_hosts -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias=paddock-web -o HashKnownHosts=no -o StrictHostKeyChecking=accept-new -o User=alice -o ConnectTimeout=30"
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{nil, opts + " -p 22 -- 10.0.0.5"},
		{[]string{"ls", "-l", "/tmp"}, opts + " -p 22 -- 10.0.0.5 ls -l /tmp"},
	} {
		args, err := tg.SSHArgs(tc.cmd)
		if err != nil || strings.Join(args, " ") != tc.want {
			t.Errorf("SSHArgs(%q) = %q, %v\nwant %q", tc.cmd, strings.Join(args, " "), err, tc.want)
		}
	}
	tg.Strict, tg.Addr = true, "[fd00::5]:2222"
	args, _ := tg.SSHArgs(nil)
	if s := strings.Join(args, " "); !strings.Contains(s, "StrictHostKeyChecking=yes") || !strings.HasSuffix(s, "-p 2222 -- fd00::5") {
		t.Errorf("strict, IPv6: %s", s)
	}
	tg.Addr = "nope"
	if _, err := tg.SSHArgs(nil); err == nil {
		t.Error("an address without a port")
	}
}

func TestSCPArgs(t *testing.T) {
	tg := testTarget()
	remote, local := Path{VM: "web", Path: "/tmp/x", Remote: true}, Path{Path: "-weird"}
	args, err := tg.SCPArgs(true, local, remote)
	if s := strings.Join(args, " "); err != nil || !strings.HasSuffix(s, "-P 22 -r -- -weird 10.0.0.5:/tmp/x") || !strings.Contains(s, "-o HostKeyAlias=paddock-web") {
		t.Errorf("SCPArgs up = %s, %v", s, err)
	}
	tg.Addr = "[fd00::5]:22"
	args, _ = tg.SCPArgs(false, remote, local)
	if s := strings.Join(args, " "); !strings.HasSuffix(s, "-P 22 -- [fd00::5]:/tmp/x -weird") {
		t.Errorf("SCPArgs down, IPv6 = %s", s)
	}
	if _, err := tg.SCPArgs(false, local, local); err == nil {
		t.Error("two host paths")
	}
}

func TestParsePath(t *testing.T) {
	valid := func(s string) bool { return s == "web" || s == "db" }
	for _, tc := range []struct {
		in   string
		want Path
		err  string
	}{
		{"web:/tmp/x", Path{VM: "web", Path: "/tmp/x", Remote: true}, ""},
		{"db:conf", Path{VM: "db", Path: "conf", Remote: true}, ""},
		{"./web:x", Path{Path: "./web:x"}, ""},
		{"/abs/path", Path{Path: "/abs/path"}, ""},
		{"Web:x", Path{Path: "Web:x"}, ""},
		{"web:", Path{}, "web:: no path after the VM's name (write web:PATH, such as web:~ or web:/tmp/)"},
	} {
		got, err := ParsePath(tc.in, valid)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParsePath(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestSSHWithOpenSSH runs the system's ssh with paddock's arguments
// against a test server: paddock's key gets in as the user, the command
// runs and its status comes back; the host key policy holds: a strict
// target accepts only the known key, a first use records the key.
func TestSSHWithOpenSSH(t *testing.T) {
	sshPath := testenv.RequireTool(t, "ssh", "openssh-client")
	testenv.Declare(t, testenv.Oracle)
	home := t.TempDir()
	key, err := EnsureKey(home)
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t, "alice", key.Public, func(cmd string) (string, uint32) {
		return "ran: " + cmd + "\n", 7
	})
	known := filepath.Join(t.TempDir(), "known_hosts")
	tg := &Target{Name: "web", Addr: srv.Addr, User: "alice", Key: key.Path, KnownHosts: known}
	run := func() (string, int) {
		t.Helper()
		args, err := tg.SSHArgs([]string{"echo", "hi there"})
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		c := exec.Command(sshPath, args...)
		c.Stdout, c.Stderr = &out, &errOut
		c.Env = append(os.Environ(), "HOME="+t.TempDir()) // no ~/.ssh of the user's
		err = c.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String() + errOut.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String() + errOut.String(), 0
	}

	// First use: ssh records the key under the VM's alias.
	out, status := run()
	if status != 7 || !strings.Contains(out, "ran: echo hi there") || srv.Execs()[0] != "echo hi there" {
		t.Fatalf("first use: status %d, output %q; want the command's status 7 and output", status, out)
	}
	kh, _ := os.ReadFile(known)
	if want := string(KnownHosts("paddock-web", []ssh.PublicKey{srv.HostKey})); !strings.Contains(string(kh), strings.TrimSpace(want)) {
		t.Errorf("known_hosts after first use:\n%s\nwant the server's key under paddock-web", kh)
	}

	// Strict with the right key: in. Strict with another: refused.
	tg.Strict = true
	if err := os.WriteFile(known, KnownHosts("paddock-web", []ssh.PublicKey{srv.HostKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, status := run(); status != 7 {
		t.Errorf("strict, the known key: status %d, %q", status, out)
	}
	other, _ := hostKey(t)
	if err := os.WriteFile(known, KnownHosts("paddock-web", []ssh.PublicKey{other}), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, status := run(); status != 255 || !strings.Contains(out, "Host key verification failed") {
		t.Errorf("strict, another key: status %d, %q; want ssh to refuse (255)", status, out)
	}
	if execs := srv.Execs(); len(execs) != 2 {
		t.Errorf("the server ran %q; want two commands (none for the refused host key)", execs)
	}

	// Another key than paddock's is not let in.
	tg.Strict = false
	os.Remove(known)
	other2, err := EnsureKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tg.Key = other2.Path
	if out, status := run(); status != 255 || !strings.Contains(out, "Permission denied") {
		t.Errorf("another client key: status %d, %q", status, out)
	}
}
