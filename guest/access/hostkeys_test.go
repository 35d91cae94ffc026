package access

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// hostKey returns a new ed25519 public key and its authorized_keys line.
func hostKey(t *testing.T) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestConsoleHostKeys(t *testing.T) {
	k1, l1 := hostKey(t)
	k2, l2 := hostKey(t)
	k3, l3 := hostKey(t)
	dir := t.TempDir()
	old := filepath.Join(dir, "console.log.1")
	cur := filepath.Join(dir, "console.log")
	// The first boot's block, as cloud-init prints it among other lines.
	first := "[  OK  ] Started cloud-final.service\r\n" +
		"<14>Dec  6 03:00:00 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n" +
		"<14>Dec  6 03:00:00 ec2: 256 SHA256:abc root@web (ED25519)\r\n" +
		"-----BEGIN SSH HOST KEY KEYS-----\r\n" +
		l1 + " root@web\r\n" +
		"garbage that is no key\r\n" +
		"ssh-ed25519 AAAAnotbase64!!\r\n" +
		"ec2: " + l2 + " root@web\r\n" +
		"-----END SSH HOST KEY KEYS-----\r\n" +
		"web login: "
	if err := os.WriteFile(old, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := ConsoleHostKeys(old, cur)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !equalKeys(keys[0], k1) || !equalKeys(keys[1], k2) {
		t.Errorf("keys %v; want the block's two keys", keys)
	}
	// A later, complete block wins; an unfinished one (the guest still
	// printing, or cut off) does not; a line too long is skipped.
	later := "-----BEGIN SSH HOST KEY KEYS-----\n" + strings.Repeat("x", 100<<10) + "\n" + l3 + "\n-----END SSH HOST KEY KEYS-----\n" +
		"-----BEGIN SSH HOST KEY KEYS-----\n" + l1 + "\n"
	if err := os.WriteFile(cur, []byte(later), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err = ConsoleHostKeys(old, cur)
	if err != nil || len(keys) != 1 || !equalKeys(keys[0], k3) {
		t.Errorf("keys %v, %v; want the last complete block's", keys, err)
	}
	// No block, or a block without keys: none.
	if err := os.WriteFile(cur, []byte("-----BEGIN SSH HOST KEY KEYS-----\njunk\n-----END SSH HOST KEY KEYS-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := ConsoleHostKeys(cur, filepath.Join(dir, "missing")); err != nil || len(keys) != 0 {
		t.Errorf("block without keys: %v, %v", keys, err)
	}
	if got, want := string(KnownHosts("paddock-web", []ssh.PublicKey{k1, k2})), "paddock-web "+l1+"\npaddock-web "+l2+"\n"; got != want {
		t.Errorf("KnownHosts = %q, want %q", got, want)
	}
}

func equalKeys(a, b ssh.PublicKey) bool { return string(a.Marshal()) == string(b.Marshal()) }
