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
	"net"
	"net/url"
	"os/user"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// Conn is a connection to one libvirt host. Its methods may be called
// from several goroutines. A host that stops answering (it went away,
// the network failed, its daemon hangs) is noticed by a heartbeat: its
// calls then fail with ErrConnectionLost instead of waiting for ever.
type Conn struct {
	Host   Host
	l      *golibvirt.Libvirt
	raw    *replyFirst   // the connection go-libvirt speaks over
	stop   chan struct{} // closed by Close: ends the heartbeat
	limits limits
}

// limits are a connection's timeouts.
type limits struct {
	// handshake bounds libvirt's handshake once connected (the auth
	// list and the open): a daemon that accepted the connection and
	// hangs would hold Connect for ever. A daemon that has just started
	// probes QEMU before it opens the first connection, which takes
	// seconds, many more on a loaded host.
	handshake time.Duration
	// heartbeatEvery is how often a connection asks its host whether it
	// is still there, and silentFor how long the host may take to answer
	// before the connection is given up as lost.
	heartbeatEvery, silentFor time.Duration
}

// defaultLimits are the limits of every connection (tests shorten them).
var defaultLimits = limits{handshake: time.Minute, heartbeatEvery: 5 * time.Second, silentFor: 20 * time.Second}

// Timeouts of a connection, besides its limits.
const (
	// dialTimeout bounds connecting to a host.
	dialTimeout = 10 * time.Second
	// closeTimeout bounds the goodbye to the host when closing.
	closeTimeout = 5 * time.Second
)

// Connect opens a connection to h's libvirtd. Only QEMU hosts (qemu://
// URIs) are supported, over unix, tcp, tls or ssh (go-libvirt's dialers:
// ssh is Go's SSH client with ~/.ssh's keys and known_hosts). A host that
// does not answer is one error sentence naming it and its URI.
func Connect(h Host) (*Conn, error) {
	u, err := url.Parse(h.URI)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	driver, _, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" {
		return nil, fmt.Errorf("%s: paddock drives QEMU hosts only (qemu:// URIs), not %s", h, driver)
	}
	d, err := dialer(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	lim := defaultLimits
	rd := &recordingDialer{d: d, handshake: lim.handshake}
	l := golibvirt.NewWithDialer(rd)
	err = l.ConnectToURI(golibvirt.RemoteURI(u))
	if rd.conn != nil && !rd.conn.shook() {
		err = rd.conn.broken() // the handshake took too long
	}
	if err != nil {
		if bad := rd.conn.broken(); bad != nil {
			err = bad
		}
		return nil, fmt.Errorf("%s: cannot connect: %w", h, err)
	}
	c := &Conn{Host: h, l: l, raw: rd.conn, stop: make(chan struct{}), limits: lim}
	go c.heartbeat(l)
	return c, nil
}

// dialer picks go-libvirt's dialer for a URI's transport, as libvirt's
// own client reads the URI: the host, port, and the socket, keyfile,
// pkipath and no_verify parameters.
func dialer(u *url.URL) (socket.Dialer, error) {
	_, transport, _ := strings.Cut(u.Scheme, "+")
	q := u.Query()
	switch transport {
	case "", "unix":
		opts := []dialers.LocalOption{dialers.WithLocalTimeout(dialTimeout)}
		if s := q.Get("socket"); s != "" {
			opts = append(opts, dialers.WithSocket(s))
		}
		return dialers.NewLocal(opts...), nil
	case "tcp":
		opts := []dialers.RemoteOption{dialers.WithRemoteTimeout(dialTimeout)}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UsePort(p))
		}
		return dialers.NewRemote(u.Hostname(), opts...), nil
	case "tls":
		var opts []dialers.TLSOption
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UseTLSPort(p))
		}
		if p := q.Get("pkipath"); p != "" {
			opts = append(opts, dialers.UsePKIPath(p))
		}
		if q.Get("no_verify") == "1" {
			opts = append(opts, dialers.WithInsecureNoVerify())
		}
		return dialers.NewTLS(u.Hostname(), opts...), nil
	case "ssh", "libssh", "libssh2":
		me, err := user.Current()
		if err != nil {
			return nil, err
		}
		opts := []dialers.SSHOption{dialers.WithSystemSSHDefaults(me)}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UseSSHPort(p))
		}
		if n := u.User.Username(); n != "" {
			opts = append(opts, dialers.UseSSHUsername(n))
		}
		if k := q.Get("keyfile"); k != "" {
			opts = append(opts, dialers.UseKeyFile(k))
		}
		if s := q.Get("socket"); s != "" {
			opts = append(opts, dialers.WithRemoteSocket(s))
		}
		if q.Get("no_verify") == "1" {
			opts = append(opts, dialers.WithInsecureIgnoreHostKey())
		}
		return dialers.NewSSH(u.Hostname(), opts...), nil
	}
	return nil, fmt.Errorf("transport %s is not supported: use unix, tcp, tls or ssh", transport)
}

// recordingDialer keeps the connection its dialer made, so that a lost
// host's connection can be closed under go-libvirt, and puts what the
// host sends in the order go-libvirt needs (replyFirst).
// The connection is given up if libvirt's handshake on it does not end
// within handshake.
type recordingDialer struct {
	d         socket.Dialer
	conn      *replyFirst
	handshake time.Duration
}

func (r *recordingDialer) Dial() (net.Conn, error) {
	c, err := r.d.Dial()
	if err != nil {
		return nil, err
	}
	r.conn = newReplyFirst(c)
	r.conn.bound(r.handshake)
	return r.conn, nil
}

// heartbeat asks the host for its version every heartbeatEvery; one that
// does not answer within silentFor is lost: its connection is closed,
// which makes every call waiting on it fail (go-libvirt ends the calls
// of a connection that closed). TCP alone would wait minutes for a host
// that went away without a word, and for ever for a daemon that hangs
// with its socket open. A call that never gets its reply while the host
// answers the heartbeat (a libvirtd stuck in one call, which libvirt's
// own client would wait for too) waits on: libvirt's calls have no
// bound of their own (a snapshot of a large guest, a long upload).
func (c *Conn) heartbeat(l *golibvirt.Libvirt) {
	tick := time.NewTicker(c.limits.heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, err := l.ConnectGetLibVersion()
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				return // lost already; the calls say so
			}
		case <-time.After(c.limits.silentFor):
			c.raw.giveUp(fmt.Errorf("%w: it has not answered for %v", errSilent, c.limits.silentFor))
			return
		case <-c.stop:
			return
		}
	}
}

// Close ends the connection: it says goodbye to the host, but does not
// wait more than closeTimeout for a host that does not answer.
func (c *Conn) Close() error {
	if c == nil || c.l == nil {
		return nil
	}
	close(c.stop)
	done := make(chan error, 1)
	go func() { done <- c.l.Disconnect() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(closeTimeout):
		c.raw.Close()
	}
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
		if bad := c.raw.broken(); bad != nil {
			err = bad // what broke it, rather than go-libvirt's "interrupted"
		}
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

// errSilent: the host stopped answering.
var errSilent = errors.New("the host stopped answering")

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
