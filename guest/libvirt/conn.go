// Package libvirt is paddock's libvirt backend: it runs VMs as libvirt
// domains on local or remote libvirt hosts (qemu:///system,
// qemu+ssh://..., qemu+tcp://..., qemu+tls://...), through libvirt's RPC
// protocol (github.com/digitalocean/go-libvirt: pure Go, no libvirt
// client library) with domain, pool and volume XML built by
// libvirt.org/go/libvirtxml.
//
// A host is known by name (Hosts, hosts.json in the state directory).
// Everything a VM needs on a host — kernel, initrd, disks — lives in a
// storage pool there (DefaultPool unless the host names another), put
// there through the RPC connection (StorageVolUpload), never assumed to
// exist at the same path as on the machine paddock runs on. Files shared
// by VMs (kernels, initrds, read-only disks) are stored once per host
// under their SHA-256 and reused; a VM's writable disks are its own
// volumes. Where a VM lives is recorded in its directory (Placement,
// libvirt.json), and the domain carries paddock's metadata (the VM's UUID
// and state directory), so paddock never touches a domain it did not
// define.
package libvirt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// Conn is a connection to one libvirt host. Its methods may be called
// from several goroutines.
type Conn struct {
	Host Host
	l    *golibvirt.Libvirt
}

// Connect opens a connection to h's libvirtd. Only QEMU hosts (qemu://
// URIs) are supported. A host that does not answer is one error sentence
// naming it and its URI.
func Connect(h Host) (*Conn, error) {
	u, err := url.Parse(h.URI)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" {
		return nil, fmt.Errorf("%s: paddock drives QEMU hosts only (qemu:// URIs), not %s", h, driver)
	}
	switch transport {
	case "", "unix", "tcp", "tls", "ssh", "libssh", "libssh2":
	default:
		return nil, fmt.Errorf("%s: transport %s is not supported: use unix, tcp, tls or ssh", h, transport)
	}
	l, err := golibvirt.ConnectToURI(u)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot connect: %w", h, connectCause(err))
	}
	return &Conn{Host: h, l: l}, nil
}

// connectCause strips go-libvirt's wrapping ("failed to connect to
// libvirt: ...") from a connection error, keeping its cause.
func connectCause(err error) error {
	if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "failed to connect to libvirt: ") {
		return u
	}
	return err
}

// Close ends the connection.
func (c *Conn) Close() error {
	if c == nil || c.l == nil {
		return nil
	}
	err := c.l.Disconnect()
	c.l = nil
	return err
}

// where names the host in messages: "libvirt host lab1 (qemu+tcp://...)".
func (c *Conn) where() string { return c.Host.String() }

// String names the host in messages: "libvirt host lab1 (URI)", or
// "libvirt host URI" for a host known only by its URI.
func (h Host) String() string {
	if h.Name == "" {
		return "libvirt host " + h.URI
	}
	return fmt.Sprintf("libvirt host %s (%s)", h.Name, h.URI)
}

// ErrConnectionLost: the connection to a libvirt host broke during a
// call (the daemon stopped, the host went away, the network failed).
var ErrConnectionLost = errors.New("lost the connection to the libvirt host")

// fail wraps an error of a call made to do what: one sentence naming the
// host. A broken connection becomes ErrConnectionLost, whatever call
// noticed it.
func (c *Conn) fail(what string, err error) error {
	if lost(err) {
		return fmt.Errorf("%s: %s: %w (%v)", c.where(), what, ErrConnectionLost, err)
	}
	return fmt.Errorf("%s: %s: %w", c.where(), what, err)
}

// lost reports whether err means the connection is gone.
func lost(err error) bool {
	return errors.Is(err, golibvirt.ErrInterrupted) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, errClosed)
}

// errClosed is what a call on a closed Conn returns.
var errClosed = errors.New("connection closed")

// code returns the libvirt error number of err, or -1.
func code(err error) golibvirt.ErrorNumber {
	var e golibvirt.Error
	if errors.As(err, &e) {
		return golibvirt.ErrorNumber(e.Code)
	}
	return -1
}
