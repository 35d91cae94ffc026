package access

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestEnsureKey(t *testing.T) {
	home := t.TempDir()
	const n = 8
	keys := make([]Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = EnsureKey(home) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("EnsureKey %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] {
			t.Fatalf("concurrent EnsureKey calls disagree: %+v and %+v", keys[i], keys[0])
		}
	}
	k := keys[0]
	if k.Path != filepath.Join(home, "ssh", "id_ed25519") || !strings.HasPrefix(k.Public, "ssh-ed25519 AAAA") || !strings.HasSuffix(k.Public, " paddock") {
		t.Errorf("key %+v", k)
	}
	for path, mode := range map[string]os.FileMode{filepath.Join(home, "ssh"): 0o700, k.Path: 0o600, k.Path + ".pub": 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %04o", path, fi, err, mode)
		}
	}
	if pub, err := os.ReadFile(k.Path + ".pub"); err != nil || string(pub) != k.Public+"\n" {
		t.Errorf("id_ed25519.pub = %q, %v", pub, err)
	}
	ents, _ := os.ReadDir(filepath.Join(home, "ssh"))
	if len(ents) != 2 {
		t.Errorf("ssh/ holds %v; want the key pair alone", ents)
	}
	again, err := EnsureKey(home)
	if err != nil || again != k {
		t.Errorf("second EnsureKey = %+v, %v; want %+v", again, err, k)
	}
	// A lost .pub is written again from the private key.
	os.Remove(k.Path + ".pub")
	if again, err := EnsureKey(home); err != nil || again != k {
		t.Errorf("EnsureKey without .pub = %+v, %v", again, err)
	}
	if _, err := os.Stat(k.Path + ".pub"); err != nil {
		t.Error(err)
	}
}

// TestKeyWithOpenSSH checks that OpenSSH reads paddock's private key and
// derives the same public key from it.
func TestKeyWithOpenSSH(t *testing.T) {
	keygen := testenv.RequireTool(t, "ssh-keygen", "openssh-client")
	testenv.Declare(t, testenv.Oracle)
	k, err := EnsureKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-y", "-f", k.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != k.Public {
		t.Errorf("ssh-keygen derives %q, paddock %q", got, k.Public)
	}
}

func TestKeyRefused(t *testing.T) {
	home := t.TempDir()
	k, err := EnsureKey(home)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(k.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	var ue *store.UnsafeError
	if _, err := EnsureKey(home); !errors.As(err, &ue) || !strings.Contains(err.Error(), "private key readable by others (mode 0644)") || ue.Fix != "chmod 600 "+k.Path {
		t.Errorf("key readable by others: %v", err)
	}
	if err := os.Chmod(filepath.Join(home, "ssh"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureKey(home); !errors.As(err, &ue) || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("key directory writable by others: %v", err)
	}
	os.Chmod(filepath.Join(home, "ssh"), 0o700)
	os.Chmod(k.Path, 0o600)
	if err := os.WriteFile(k.Path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureKey(home); err == nil || !strings.Contains(err.Error(), k.Path) || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("damaged key: %v", err)
	}
}
