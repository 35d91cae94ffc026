// Package access is how users reach a managed VM's guest over SSH:
// paddock's own key pair, which every VM with cloud-init authorizes;
// waiting until the guest's SSH server answers; the guest's host keys,
// learned from its console; and the command lines of the system's ssh and
// scp that `paddock ssh` and `paddock cp` run.
package access

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/paddock-vm/paddock/guest/store"
)

// Key files, in $PADDOCK_HOME.
const (
	// KeyDir is the directory of paddock's key pair.
	KeyDir = "ssh"
	// KeyFile is the private key (OpenSSH format, mode 0600); the public
	// key is KeyFile + ".pub".
	KeyFile = "id_ed25519"
	// keyComment is the public key's comment.
	keyComment = "paddock"
)

// Key is paddock's SSH key pair.
type Key struct {
	// Path is the private key file.
	Path string
	// Public is the public key as an authorized_keys line.
	Public string
}

// KeyPath returns the path of paddock's private key in home.
func KeyPath(home string) string { return filepath.Join(home, KeyDir, KeyFile) }

// EnsureKey returns paddock's key pair in home (the state directory),
// creating it the first time: an ed25519 key, private key mode 0600 in a
// directory of mode 0700. The directory and key must be trusted as the
// state directory is (store.CheckTrusted): ssh refuses a private key
// others can read, and paddock a key others could replace. Concurrent
// calls agree on one key: it appears in one link(2), and the public key
// is always derived from the private one.
func EnsureKey(home string) (Key, error) {
	dir := filepath.Join(home, KeyDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return Key{}, fmt.Errorf("access: create %s: %w", dir, err)
	}
	if err := store.CheckTrusted(dir); err != nil {
		return Key{}, err
	}
	path := filepath.Join(dir, KeyFile)
	k, err := ReadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := createKey(path); err != nil {
		return Key{}, err
	}
	return ReadKey(path)
}

// ReadKey reads the private key at path, which must be trusted and not
// readable by others, and derives its public key. It writes path.pub
// when that is missing or differs, for people and other tools.
func ReadKey(path string) (Key, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Key{}, fmt.Errorf("access: %w", err)
	}
	if err := store.CheckTrusted(path); err != nil {
		return Key{}, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Key{}, &store.UnsafeError{Path: path, Problem: fmt.Sprintf("is a private key readable by others (mode %04o)", fi.Mode().Perm()), Fix: "chmod 600 " + path}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("access: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("access: %s: %w; remove it (and %s.pub) to make a new key pair, which VMs created from then on authorize", path, err, path)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + keyComment
	if old, err := os.ReadFile(path + ".pub"); err != nil || strings.TrimSpace(string(old)) != pub {
		if err := store.WriteFileAtomic(path+".pub", []byte(pub+"\n"), 0o644); err != nil {
			return Key{}, err
		}
	}
	return Key{Path: path, Public: pub}, nil
}

// createKey generates a key pair and links the private key into place at
// path; if another call got there first, it keeps that one. (ReadKey then
// writes the public key with WriteFileAtomic, whose sync of the directory
// makes the link durable too.)
func createKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("access: generate a key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, keyComment)
	if err != nil {
		return fmt.Errorf("access: encode the key: %w", err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("access: generate a key: %w", err)
	}
	tmp := path + ".tmp-" + hex.EncodeToString(rnd[:])
	defer os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("access: write the key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(block))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("access: write the key %s: %w", path, err)
	}
	return nil
}
