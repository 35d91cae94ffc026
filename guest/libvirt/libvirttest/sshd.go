package libvirttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshdPath is the sshd a remote daemon's namespace runs (openssh-server).
const sshdPath = "/usr/sbin/sshd"

// sshdConfig is the config of a remote daemon's sshd, as it sees its
// files: DIR/ssh is its /etc/ssh. It listens only on the daemon's
// address, lets root in with the test's key alone, and forwards only
// from the client to the host (the SSH transport tunnels to libvirtd's
// socket). AllowTcpForwarding must allow local forwarding: with "no",
// sshd refuses to open unix sockets for the client too.
// It logs to /etc/ssh/sshd.log (DIR/ssh/sshd.log).
const sshdConfig = `ListenAddress %s:22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/libvirt/sshd.pid
AuthorizedKeysFile /etc/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowStreamLocalForwarding yes
AllowTcpForwarding local
X11Forwarding no
PermitTTY no
`

// setupSSH writes what a remote daemon's sshd and its SSH clients need:
// DIR/ssh (the sshd's /etc/ssh: config, host key, authorized_keys) and
// DIR/client (the test's key and a known_hosts with the host's key),
// and sets SSHKey, KnownHosts and SSHURI.
func (d *Daemon) setupSSH() error {
	etc, client := filepath.Join(d.Dir, "ssh"), filepath.Join(d.Dir, "client")
	for _, dir := range []string{etc, client} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	hostKey, err := WriteSSHKey(filepath.Join(etc, "ssh_host_ed25519_key"))
	if err != nil {
		return err
	}
	d.SSHKey = filepath.Join(client, "id_ed25519")
	userKey, err := WriteSSHKey(d.SSHKey)
	if err != nil {
		return err
	}
	d.KnownHosts = filepath.Join(client, "known_hosts")
	files := map[string]string{
		filepath.Join(etc, "sshd_config"):     fmt.Sprintf(sshdConfig, d.Addr),
		filepath.Join(etc, "authorized_keys"): string(ssh.MarshalAuthorizedKey(userKey)),
		d.KnownHosts:                          knownhosts.Line([]string{net.JoinHostPort(d.Addr, "22")}, hostKey) + "\n",
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	d.SSHURI = d.SSHURIWith(d.SSHKey, d.KnownHosts)
	return nil
}

// SSHURIWith is the qemu+ssh URI of a remote daemon that logs in as root
// with the key keyfile and checks the host's key against knownHosts.
func (d *Daemon) SSHURIWith(keyfile, knownHosts string) string {
	return fmt.Sprintf("qemu+ssh://root@%s/system?keyfile=%s&known_hosts=%s", d.Addr, keyfile, knownHosts)
}

// WriteSSHKey writes a new ed25519 private key to path (mode 0600, in
// OpenSSH's format) and returns its public key.
func WriteSSHKey(path string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}
