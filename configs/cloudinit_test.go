package configs

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// newPublicKey returns a fresh ed25519 public key in authorized_keys form
// with the given comment.
func newPublicKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

// keyTree adds key files to a test tree: id.pub (one key), keys (two, an
// authorized_keys file with a comment and a blank line), id (a private
// key) and bad.pub (not a key). It returns the keys of id.pub and keys.
func keyTree(t *testing.T, dir string) (idPub string, two []string) {
	t.Helper()
	idPub = newPublicKey(t, "me@host")
	two = []string{newPublicKey(t, "a"), newPublicKey(t, "b")}
	files := map[string]string{
		"id.pub":  idPub + "\n",
		"keys":    "# mine\n" + two[0] + "\n\n" + two[1] + "\n",
		"id":      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n",
		"bad.pub": "ssh-ed25519 nonsense\n",
		"big.pub": strings.Repeat("#", 65*1024),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return idPub, two
}

func TestCloudInitFields(t *testing.T) {
	dir := testTree(t)
	key := newPublicKey(t, "me@laptop")
	keyTree(t, dir)
	t.Setenv("SUDO_USER", "alice")
	const ok = "name: hello\nkernel: vmlinuz\n"
	const f = "$DIR/hello.yaml"
	tests := []struct {
		name, yaml, want string
	}{
		{"cloud_init alone", ok + "cloud_init: true\n", ""},
		{"everything", ok + "user: bob\nssh_keys: [id.pub, keys, '" + key + "']\nuser_data: |\n  #cloud-config\n  packages: [nginx]\n", ""},
		{"user_data with only the header", ok + "user_data: \"#cloud-config\\n\"\n", ""},
		{"cloud_init false with user", ok + "cloud_init: false\nuser: bob\n",
			f + ":4:7: user: is set but cloud_init is false: the guest only gets it through cloud-init's seed; set cloud_init: true or leave user out"},
		{"cloud_init not a bool", ok + "cloud_init: yes please\n", f + `:3:13: cloud_init: must be true or false, got "yes please"`},
		{"user root", ok + "user: root\n", f + ":3:7: user: must not be root: cloud-init keeps root's SSH login off; name a user, which gets sudo"},
		{"user with capitals", ok + "user: Bob\n", f + `:3:7: user: must be a user name (lowercase letters, digits, '_' and '-', not starting with a digit or '-'), got "Bob"`},
		{"user too long", ok + "user: " + strings.Repeat("a", 33) + "\n", f + ":3:7: user: must be at most 32 characters, got 33"},
		{"user empty", ok + "cloud_init: true\nuser: ''\n", f + ":4:7: user: must be a user name"},
		{"ssh_keys not a list", ok + "ssh_keys: id.pub\n", f + `:3:11: ssh_keys: must be a list of SSH public keys or public key files, such as [~/.ssh/id_ed25519.pub], got "id.pub"`},
		{"ssh_keys bad key", ok + "ssh_keys: ['ssh-ed25519 AAAAnope me']\n", f + `:3:12: ssh_keys[0]: is not an SSH public key (TYPE BASE64 [COMMENT], as in a .pub file): "ssh-ed25519 AAAAnope me"`},
		{"ssh_keys two keys in one", ok + "ssh_keys: [\"" + key + "\\n" + key + "\"]\n", f + ":3:12: ssh_keys[0]: must be one key on one line"},
		{"ssh_keys missing file", ok + "ssh_keys: [nope.pub]\n", f + ":3:12: ssh_keys[0]: $DIR/nope.pub: no such file or directory"},
		{"ssh_keys private key", ok + "ssh_keys: [id]\n", f + ":3:12: ssh_keys[0]: $DIR/id is a private key: give its public key ($DIR/id.pub)"},
		{"ssh_keys bad file", ok + "ssh_keys: [bad.pub]\n", f + ":3:12: ssh_keys[0]: $DIR/bad.pub: line 1 is not an SSH public key (TYPE BASE64 [COMMENT], as in a .pub file): \"ssh-ed25519 nonsense\""},
		{"ssh_keys empty file", ok + "ssh_keys: [empty]\n", f + ":3:12: ssh_keys[0]: $DIR/empty holds no SSH public key"},
		{"ssh_keys big file", ok + "ssh_keys: [big.pub]\n", f + ":3:12: ssh_keys[0]: $DIR/big.pub is 65KiB, too large for a public key file (at most 64KiB)"},
		{"ssh_keys a fifo", ok + "ssh_keys: [fifo]\n", f + ":3:12: ssh_keys[0]: $DIR/fifo: a named pipe, not a regular file"},
		{"user_data without header", ok + "user_data: |\n  packages: [nginx]\n",
			f + `:3:12: user_data: must be a cloud-config document, whose first line is #cloud-config; got "packages: [nginx]"`},
		{"user_data a script", ok + "user_data: |\n  #!/bin/sh\n  echo hi\n",
			f + `:3:12: user_data: must be a cloud-config document, whose first line is #cloud-config; got "#!/bin/sh"`},
		{"user_data bad YAML", ok + "user_data: |\n  #cloud-config\n  packages: [nginx\n",
			f + ":3:12: user_data: is not valid YAML: yaml: line 1: did not find expected ',' or ']'"},
		{"user_data a list", ok + "user_data: |\n  #cloud-config\n  - a\n",
			f + ":3:12: user_data: must be a mapping of cloud-config keys such as {packages: [nginx]}, got a list"},
		{"user_data two documents", ok + "user_data: |\n  #cloud-config\n  a: 1\n  ---\n  b: 2\n",
			f + ":3:12: user_data: must be one YAML document: remove the --- separators"},
		{"user_data not text", ok + "user_data: {packages: [a]}\n", f + ":3:12: user_data: must be a cloud-config document, got a mapping"},
		{"seed counts as a device", ok + "cloud_init: true\nrng: true\nnics:\n" + manyNICs(30),
			f + ":6:3: nics: 0 disks, 30 NICs and 1 rng device and the cloud-init seed volume: at most 31 devices fit on the PCI bus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Only the structure: NICs name taps that do not exist.
			path := writeConfig(t, dir, tt.yaml)
			vm, err := Load(path)
			if vm != nil {
				vm.FillDefaults()
				c := &checker{vm: vm}
				c.structure()
				c.cloudInitFiles()
				err = c.result()
			}
			got := ""
			if err != nil {
				got = strings.ReplaceAll(err.Error(), dir, "$DIR")
			}
			if got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestCloudInitDefaults(t *testing.T) {
	dir := testTree(t)
	t.Setenv("SUDO_USER", "alice")
	for _, tc := range []struct {
		yaml      string
		cloudInit bool
		user      string
	}{
		{"", false, ""},
		{"cloud_init: true\n", true, "alice"},
		{"user: bob\n", true, "bob"},
		{"ssh_keys: [id.pub]\n", true, "alice"},
		{"user_data: \"#cloud-config\\n\"\n", true, "alice"},
		{"cloud_init: false\n", false, ""},
	} {
		vm, err := Parse([]byte("name: hello\nkernel: vmlinuz\n"+tc.yaml), filepath.Join(dir, "hello.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		vm.FillDefaults()
		if vm.CloudInit != tc.cloudInit || vm.User != tc.user {
			t.Errorf("%q: cloud_init %v, user %q; want %v, %q", tc.yaml, vm.CloudInit, vm.User, tc.cloudInit, tc.user)
		}
		// The resolved spec reads back the same.
		out, err := yaml.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out, filepath.Join(dir, "hello.yaml"))
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		again.FillDefaults()
		if again.CloudInit != vm.CloudInit || again.User != vm.User || strings.Join(again.SSHKeys, ",") != strings.Join(vm.SSHKeys, ",") || again.UserData != vm.UserData {
			t.Errorf("%q: read back as %+v from:\n%s", tc.yaml, again, out)
		}
	}
}

func TestDefaultUser(t *testing.T) {
	for _, tc := range []struct{ sudo, want string }{
		{"alice", "alice"},
		{"Bad Name", DefaultGuestUser},
		{"9lives", DefaultGuestUser},
	} {
		t.Setenv("SUDO_USER", tc.sudo)
		if got := DefaultUser(); got != tc.want {
			t.Errorf("SUDO_USER=%q: %q, want %q", tc.sudo, got, tc.want)
		}
	}
	// Without sudo, the current user; root becomes DefaultGuestUser.
	t.Setenv("SUDO_USER", "")
	want := os.Getenv("USER")
	if os.Geteuid() == 0 {
		want = DefaultGuestUser
	}
	if got := DefaultUser(); got != want && !(want == "" && got == DefaultGuestUser) {
		t.Errorf("without sudo: %q, want %q", got, want)
	}
}

func TestAuthorizedKeys(t *testing.T) {
	dir := testTree(t)
	idPub, two := keyTree(t, dir)
	key := newPublicKey(t, "inline")
	vm, err := Parse([]byte("name: hello\nkernel: vmlinuz\nssh_keys: [id.pub, keys, '"+key+"', "+filepath.Join(dir, "id.pub")+"]\n"), filepath.Join(dir, "hello.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(Host{}); err != nil {
		t.Fatal(err)
	}
	if vm.SSHKeys[0] != filepath.Join(dir, "id.pub") {
		t.Errorf("key file path %q, want it resolved against the file's directory", vm.SSHKeys[0])
	}
	keys, err := vm.AuthorizedKeys()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{idPub, two[0], two[1], key}
	if strings.Join(keys, "\n") != strings.Join(want, "\n") {
		t.Errorf("AuthorizedKeys =\n%s\nwant (each once, in order):\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
	if err := os.Remove(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.AuthorizedKeys(); err == nil || !strings.Contains(err.Error(), "ssh_keys[1]: "+filepath.Join(dir, "keys")) {
		t.Errorf("AuthorizedKeys with a file gone: %v", err)
	}
}

// manyNICs returns n NIC list items on taps t0, t1, ...
func manyNICs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  - {tap: t%d}\n", i)
	}
	return b.String()
}
