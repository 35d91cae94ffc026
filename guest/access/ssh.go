package access

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// DefaultPort is the guest's SSH port.
const DefaultPort = "22"

// Target is where and as whom paddock reaches a VM's guest.
type Target struct {
	// Name is the VM's.
	Name string
	// Addr is the guest's SSH server, host:port.
	Addr string
	// User is the guest user (the VM's user field).
	User string
	// Key is paddock's private key.
	Key string
	// KnownHosts is the VM's known_hosts file (in its state directory).
	KnownHosts string
	// Strict says KnownHosts holds the guest's host keys, learned from
	// its console: ssh accepts no other. Otherwise ssh records the key
	// the guest shows the first time (trust on first use) and refuses
	// another one later.
	Strict bool
}

// HostAlias is the name known_hosts holds the guest's keys under, so they
// stay the VM's whatever address it has.
func (t *Target) HostAlias() string { return "paddock-" + t.Name }

// options are the ssh options both ssh and scp take: paddock's key and
// no other (so an agent's many keys cannot use up the server's attempts),
// the VM's own known_hosts under its alias, and the host key policy.
func (t *Target) options() []string {
	check := "accept-new"
	if t.Strict {
		check = "yes"
	}
	return []string{
		"-i", t.Key,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + t.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "HostKeyAlias=" + t.HostAlias(),
		"-o", "HashKnownHosts=no",
		"-o", "StrictHostKeyChecking=" + check,
		"-o", "User=" + t.User,
		"-o", "ConnectTimeout=30",
	}
}

// hostPort splits Addr for ssh's -p (scp's -P) and host arguments.
func (t *Target) hostPort() (host, port string, err error) {
	host, port, err = net.SplitHostPort(t.Addr)
	if err != nil {
		return "", "", fmt.Errorf("access: VM %s: address %q: %w", t.Name, t.Addr, err)
	}
	return host, port, nil
}

// SSHArgs returns the arguments of ssh (after the program name) that run
// cmd in the guest, or a login shell when cmd is empty. As with ssh, the
// words of cmd are joined with spaces and run by the user's shell.
func (t *Target) SSHArgs(cmd []string) ([]string, error) {
	host, port, err := t.hostPort()
	if err != nil {
		return nil, err
	}
	// "--" ends ssh's options, so neither the host nor the command's
	// words are read as options.
	args := append(t.options(), "-p", port, "--", host)
	return append(args, cmd...), nil
}

// SCPArgs returns the arguments of scp that copy src to dst, where a
// Remote path is in the guest. Exactly one of them is remote.
func (t *Target) SCPArgs(recursive bool, src, dst Path) ([]string, error) {
	if src.Remote == dst.Remote {
		return nil, errors.New("access: copy between the host and a VM: exactly one side is NAME:PATH")
	}
	host, port, err := t.hostPort()
	if err != nil {
		return nil, err
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	side := func(p Path) string {
		if p.Remote {
			return host + ":" + p.Path
		}
		return p.Path
	}
	args := append(t.options(), "-P", port)
	if recursive {
		args = append(args, "-r")
	}
	return append(args, "--", side(src), side(dst)), nil
}

// Path is one side of paddock cp: a host path, or a path in a VM.
type Path struct {
	// VM is the VM's name when Remote.
	VM     string
	Path   string
	Remote bool
}

// ParsePath reads one side of paddock cp: NAME:PATH is PATH in VM NAME
// when NAME is a VM name (a DNS label); anything else is a host path (so
// ./a:b is the host file "a:b"). A remote path must not be empty.
func ParsePath(s string, validName func(string) bool) (Path, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || !validName(name) {
		return Path{Path: s}, nil
	}
	if rest == "" {
		return Path{}, fmt.Errorf("%s: no path after the VM's name (write %s:PATH, such as %s:~ or %s:/tmp/)", s, name, name, name)
	}
	return Path{VM: name, Path: rest, Remote: true}, nil
}

// Program finds the system's ssh or scp, or says which package has it.
func Program(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("paddock runs the system's %s, which is not installed (Debian package openssh-client)", name)
	}
	return p, nil
}
