package libvirt

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshDialer reaches a libvirtd through an SSH tunnel to its unix socket
// (go-libvirt's SSH dialer, Go's SSH client: no ssh binary), and turns
// the SSH client's terse failures into sentences that say what to do.
type sshDialer struct {
	d *dialers.SSH
	// host and port are the sshd's, addr both; user is the login,
	// keyfile and knownHosts the files used (keyfile "" for the
	// defaults); verify is whether host keys are checked.
	host, port, addr, user, keyfile, knownHosts string
	verify                                      bool
}

// newSSHDialer reads an ssh URI as libvirt's own client does: the user
// and port, and the parameters keyfile, known_hosts, known_hosts_verify
// (normal, auto or ignore), no_verify, sshauth (agent, privkey) and
// socket. Without known_hosts, host keys are checked against
// ~/.ssh/known_hosts of the user paddock runs as (from the password
// database, as ssh does).
func newSSHDialer(u *url.URL) (*sshDialer, error) {
	q := u.Query()
	s := &sshDialer{user: u.User.Username(), keyfile: q.Get("keyfile"), knownHosts: q.Get("known_hosts"), verify: true}
	s.host, s.port = u.Hostname(), u.Port()
	if s.port == "" {
		s.port = "22"
	}
	s.addr = net.JoinHostPort(s.host, s.port)
	if s.knownHosts == "" {
		me, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("finding ~/.ssh/known_hosts: %w", err)
		}
		s.knownHosts = filepath.Join(me.HomeDir, ".ssh", "known_hosts")
	}
	opts := []dialers.SSHOption{dialers.UseKnownHostsFile(s.knownHosts), dialers.UseSSHPort(s.port)}
	if s.user != "" {
		opts = append(opts, dialers.UseSSHUsername(s.user))
	}
	if s.keyfile != "" {
		// A key the user named that cannot be read would otherwise only
		// show as the host refusing the others.
		if err := checkKey(s.keyfile); err != nil {
			return nil, err
		}
		opts = append(opts, dialers.UseKeyFile(s.keyfile))
	}
	switch v := q.Get("known_hosts_verify"); v {
	case "", "normal":
	case "auto":
		opts = append(opts, dialers.WithAcceptUnknownHostKey())
	case "ignore":
		s.verify = false
	default:
		return nil, fmt.Errorf("known_hosts_verify=%s: want normal, auto or ignore", v)
	}
	if q.Get("no_verify") == "1" {
		s.verify = false
	}
	if !s.verify {
		opts = append(opts, dialers.WithInsecureIgnoreHostKey())
	}
	if a := q.Get("sshauth"); a != "" {
		m := &dialers.SSHAuthMethods{}
		for _, name := range strings.Split(a, ",") {
			switch name {
			case "agent":
				m.Agent()
			case "privkey":
				m.PrivKey()
			default:
				return nil, fmt.Errorf("sshauth=%s: paddock authenticates with agent or privkey only (it never prompts)", a)
			}
		}
		opts = append(opts, dialers.WithSSHAuthMethods(m))
	}
	if sock := q.Get("socket"); sock != "" {
		opts = append(opts, dialers.WithRemoteSocket(sock))
	}
	s.d = dialers.NewSSH(u.Hostname(), opts...)
	return s, nil
}

// Dial connects to the host's sshd and through it to libvirtd's socket.
// A host key that is not known, or differs from the known one, and keys
// the host refuses are each one sentence saying what to do.
func (s *sshDialer) Dial() (net.Conn, error) {
	c, err := s.d.Dial()
	if err == nil {
		return c, nil
	}
	var ke *knownhosts.KeyError
	switch {
	case errors.As(err, &ke) && len(ke.Want) == 0, s.verify && errors.Is(err, fs.ErrNotExist) && !s.knownFileExists():
		return nil, fmt.Errorf("the SSH host key of %s is not in %s: check the host's key and add it there (e.g. ssh-keyscan -p %s %s >> %s), or name another file with ?known_hosts=PATH",
			s.addr, s.knownHosts, s.port, s.host, s.knownHosts)
	case errors.As(err, &ke):
		return nil, fmt.Errorf("the SSH host key of %s is not the one %s has for it (line %d): the host was reinstalled, or someone is in the middle; check which before changing %s",
			s.addr, s.knownHosts, ke.Want[0].Line, s.knownHosts)
	case strings.Contains(err.Error(), "unable to authenticate"):
		keys := "the keys of ~/.ssh and the ssh-agent"
		if s.keyfile != "" {
			keys = s.keyfile
		}
		return nil, fmt.Errorf("%s@%s refused %s: put its public key in the host's authorized_keys, or name the key with ?keyfile=PATH",
			s.login(), s.addr, keys)
	}
	return nil, err
}

// knownFileExists reports whether the known_hosts file is there.
func (s *sshDialer) knownFileExists() bool {
	_, err := os.Stat(s.knownHosts)
	return err == nil
}

// checkKey makes sure a key the user named can be used: one that cannot
// would otherwise only show as the host refusing the others.
func checkKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the SSH key (keyfile=): %w", err)
	}
	if _, err := ssh.ParsePrivateKey(b); err != nil {
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return fmt.Errorf("the SSH key %s is protected by a passphrase, which paddock cannot ask for: load it into ssh-agent and leave keyfile= out", path)
		}
		return fmt.Errorf("the SSH key %s: %w", path, err)
	}
	return nil
}

// login is the user the SSH connection logs in as.
func (s *sshDialer) login() string {
	if s.user != "" {
		return s.user
	}
	if me, err := user.Current(); err == nil {
		return me.Username
	}
	return "?"
}
