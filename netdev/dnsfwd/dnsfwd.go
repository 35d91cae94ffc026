// Package dnsfwd is the DNS server of paddock's managed networks: it
// listens on the network's gateway address (UDP and TCP port 53) and
// forwards every query, as it came, to the host's own resolvers (those
// of /etc/resolv.conf, read again whenever the file changes), answering
// the guest with the first resolver's reply, or SERVFAIL when none
// answers. Messages are parsed and built by github.com/miekg/dns.
//
// A guest decides how many queries it sends: at most MaxInFlight are
// forwarded at once per network; past that a query is answered with
// SERVFAIL at once, so a flood costs the host a bounded number of
// sockets and goroutines.
package dnsfwd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Config.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultMaxInFlight = 256
	// ResolvConf is where the host's resolvers are listed.
	ResolvConf = "/etc/resolv.conf"
)

// Config describes a forwarder.
type Config struct {
	// Upstreams returns the resolvers to forward to, "IP:port", in order
	// of preference; it is called for each query.
	Upstreams func() []string
	// Timeout bounds each try of one resolver; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxInFlight bounds the queries forwarded at once; zero means
	// DefaultMaxInFlight.
	MaxInFlight int
	// Logf, if set, gets a line for each query no resolver answered and
	// each query refused for the bound.
	Logf func(format string, args ...any)
}

// Forwarder is a running DNS forwarder.
type Forwarder struct {
	c        Config
	sem      chan struct{}
	udp, tcp *dns.Server
	closed   atomic.Bool
}

// Listen opens the forwarder's sockets on addr, port 53, UDP and TCP, in
// the calling thread's network namespace; Serve then answers queries.
func Listen(c Config, addr netip.Addr) (*Forwarder, error) {
	if c.Upstreams == nil {
		return nil, errors.New("dnsfwd: no upstream resolvers")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	ap := netip.AddrPortFrom(addr, 53).String()
	pc, err := net.ListenPacket("udp", ap)
	if err != nil {
		return nil, fmt.Errorf("dnsfwd: listen on %s/udp: %w", ap, err)
	}
	l, err := net.Listen("tcp", ap)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dnsfwd: listen on %s/tcp: %w", ap, err)
	}
	f := &Forwarder{c: c, sem: make(chan struct{}, c.MaxInFlight)}
	f.udp = &dns.Server{PacketConn: pc, Handler: f}
	f.tcp = &dns.Server{Listener: l, Handler: f}
	return f, nil
}

// Serve answers queries until Close; it then returns nil.
func (f *Forwarder) Serve() error {
	errc := make(chan error, 2)
	for _, s := range []*dns.Server{f.udp, f.tcp} {
		go func() { errc <- s.ActivateAndServe() }()
	}
	var errs error
	for range 2 {
		if err := <-errc; err != nil && !f.closed.Load() {
			errs = errors.Join(errs, fmt.Errorf("dnsfwd: %w", err))
			f.Close() // one stopped: stop the other
		}
	}
	return errs
}

// Close stops the forwarder.
func (f *Forwarder) Close() error {
	f.closed.Store(true)
	return errors.Join(f.udp.PacketConn.Close(), f.tcp.Listener.Close())
}

// ServeDNS forwards one query (dns.Handler).
func (f *Forwarder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	select {
	case f.sem <- struct{}{}:
		defer func() { <-f.sem }()
	default:
		f.c.Logf("dnsfwd: %d queries in flight: %s refused", f.c.MaxInFlight, describe(req))
		f.fail(w, req)
		return
	}
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	client := &dns.Client{Net: network, Timeout: f.c.Timeout, UDPSize: dns.MaxMsgSize}
	var errs []string
	for _, up := range f.c.Upstreams() {
		resp, _, err := client.Exchange(req, up)
		if err == nil {
			resp.Id = req.Id
			_ = w.WriteMsg(resp)
			return
		}
		errs = append(errs, fmt.Sprintf("%s: %v", up, err))
	}
	f.c.Logf("dnsfwd: %s from %s: no resolver answered %v", describe(req), w.RemoteAddr(), errs)
	f.fail(w, req)
}

// fail answers SERVFAIL.
func (f *Forwarder) fail(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}

// describe names a query for messages.
func describe(m *dns.Msg) string {
	if len(m.Question) == 0 {
		return "a query without a question"
	}
	q := m.Question[0]
	return fmt.Sprintf("%s %s", dns.TypeToString[q.Qtype], q.Name)
}

// Resolvers reads a resolv.conf file's name servers, again whenever the
// file changes (its modification time, size or inode). Safe for
// concurrent use.
type Resolvers struct {
	path string
	// skip is an address never forwarded to: the forwarder's own, which
	// would loop.
	skip netip.Addr

	mu      sync.Mutex
	stamp   fileStamp
	servers []string
}

// fileStamp tells a changed file.
type fileStamp struct {
	mod   time.Time
	size  int64
	inode uint64
}

// NewResolvers reads name servers from path (ResolvConf on a host),
// leaving out skip.
func NewResolvers(path string, skip netip.Addr) *Resolvers {
	return &Resolvers{path: path, skip: skip}
}

// Servers returns the name servers as "IP:53", in the file's order;
// none when the file is missing or lists none.
func (r *Resolvers) Servers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		r.stamp, r.servers = fileStamp{}, nil
		return nil
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size(), inode: inode(fi)}
	if st == r.stamp && r.servers != nil {
		return r.servers
	}
	cc, err := dns.ClientConfigFromFile(r.path)
	if err != nil {
		r.stamp, r.servers = fileStamp{}, nil
		return nil
	}
	servers := []string{}
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Unmap() == r.skip {
			continue
		}
		servers = append(servers, netip.AddrPortFrom(a.Unmap(), 53).String())
	}
	r.stamp, r.servers = st, servers
	return servers
}
