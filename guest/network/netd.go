package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/dhcpd"
	"github.com/paddock-vm/paddock/netdev/dnsfwd"
	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// NetdConfig is what the hidden `paddock netd` command passes to
// ServeNetd.
type NetdConfig struct {
	// Home is the state directory and Name the network.
	Home, Name string
	// User is the first VM's connection (the socket Attach made when it
	// started this netd).
	User net.Conn
	// Logf gets netd's messages (netd.log).
	Logf func(format string, args ...any)
	// ResolvConf lists the host's resolvers; empty means
	// dnsfwd.ResolvConf. SystemdResolvConf lists systemd-resolved's
	// upstreams, which a tenant's netd uses when ResolvConf has no
	// resolver its namespace reaches; empty means SystemdResolvConf.
	ResolvConf        string
	SystemdResolvConf string
	// HostNS is the host's network namespace, for the netd of a tenant
	// other than the default, which runs in the tenant's namespace;
	// nil means descriptor NetdHostNSFD.
	HostNS *os.File
}

// netd is one network's helper process.
type netd struct {
	c   NetdConfig
	st  *Store
	net *Network
	cfg hostnet.Config
	// hostNS is the host's network namespace when netd runs in its
	// tenant's, else nil.
	hostNS *os.File
	// uplink is the tenant's uplink (with its address) when hostNS is
	// set.
	uplink hostnet.Uplink

	mu    sync.Mutex
	users map[*user]bool // attached VMs; guarded by mu
	// stuck are the NICs of VMs that left whose taps netd could not
	// take off the bridge: their anti-spoofing rules stay. Guarded by
	// mu.
	stuck    []hostnet.Guest
	leases   map[netdev.MAC]dhcpd.Lease
	closing  bool          // guarded by mu: taking the network down
	idle     chan struct{} // gets a value when the last user leaves
	listener net.Listener
}

// user is one attached VM.
type user struct {
	hello    hello
	forwards []hostnet.Forward
	reserved []io.Closer
	// guests are the VM's NICs in the anti-spoofing rules, taps their
	// taps until they are handed to the VM.
	guests []hostnet.Guest
	taps   []*netdev.Tap
}

// closeTaps closes netd's descriptors of the user's taps: once the VM
// has its own, the taps live as long as the VM's.
func (u *user) closeTaps() {
	for _, t := range u.taps {
		t.Close()
	}
	u.taps = nil
}

// ServeNetd is the body of a network's netd: it brings the network's
// host side up (bridge, nftables, DHCP, DNS), serves the VMs that attach
// (the first on c.User, the others on netd.sock), and when the last one
// has gone — or ctx ends — takes everything down again and returns.
func ServeNetd(ctx context.Context, c NetdConfig) error {
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.ResolvConf == "" {
		c.ResolvConf = dnsfwd.ResolvConf
	}
	if c.SystemdResolvConf == "" {
		c.SystemdResolvConf = SystemdResolvConf
	}
	fail := func(err error) error {
		if c.User != nil {
			_ = sendLine(c.User, answer{Error: err.Error()})
			c.User.Close()
		}
		return err
	}
	st, err := Open(c.Home)
	if err != nil {
		return fail(err)
	}
	n, err := st.Get(c.Name)
	if err != nil {
		return fail(err)
	}
	cfg, err := n.hostConfig()
	if err != nil {
		return fail(err)
	}
	var hostNS *os.File
	if inNamespace(n.Tenant) {
		if hostNS = c.HostNS; hostNS == nil {
			hostNS = os.NewFile(NetdHostNSFD, "host-netns")
		}
		var fs unix.Statfs_t
		if hostNS == nil || unix.Fstatfs(int(hostNS.Fd()), &fs) != nil || fs.Type != unix.NSFS_MAGIC {
			return fail(fmt.Errorf("network %s: netd of tenant %s has no host network namespace (descriptor %d)", n.Name, n.Tenant, NetdHostNSFD))
		}
	}
	runLock, err := os.OpenFile(st.path(n.Name, NetdLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(fmt.Errorf("network %s: %w", n.Name, err))
	}
	defer runLock.Close()
	if err := unix.Flock(int(runLock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(fmt.Errorf("network %s: another netd runs it (%w)", n.Name, err))
	}
	// The pid, for paddock network inspect; it means something only
	// while the lock is held.
	if err := runLock.Truncate(0); err == nil {
		_, _ = runLock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	d := &netd{c: c, st: st, net: n, cfg: cfg, hostNS: hostNS, users: map[*user]bool{}, leases: map[netdev.MAC]dhcpd.Lease{}, idle: make(chan struct{}, 1)}
	if hostNS != nil {
		d.uplink = tenantUplink(n.Tenant)
		inner, ok := hostnet.UplinkAddr(d.uplink.NSVeth)
		if !ok {
			return fail(fmt.Errorf("network %s: netd of tenant %s finds no uplink %s in its namespace", n.Name, n.Tenant, d.uplink.NSVeth))
		}
		d.uplink.Addr = netip.PrefixFrom(inner.Addr().Prev(), inner.Bits())
	}
	stop, err := d.up()
	if err != nil {
		return errors.Join(fail(err), d.collectUplink())
	}
	c.Logf("network %s is up: bridge %s, %s", n.Name, n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
	if c.User != nil {
		go d.serve(c.User)
	} else {
		d.idle <- struct{}{} // nobody to wait for
	}
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.closing = true
			d.mu.Unlock()
			c.Logf("network %s: %v: taking it down", n.Name, ctx.Err())
			return errors.Join(stop(), d.down(runLock))
		case <-d.idle:
		}
		done, err := d.tryDown(stop, runLock)
		if done {
			return err
		}
	}
}

// up brings the host side and the servers up; the returned function
// stops the servers.
func (d *netd) up() (func() error, error) {
	var stops []func() error
	stop := func() error {
		var errs error
		for _, s := range slices.Backward(stops) {
			errs = errors.Join(errs, s())
		}
		return errs
	}
	if err := hostnet.Up(d.cfg, hostnet.Rules{}); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (managed networks need root: CAP_NET_ADMIN)", err)
		}
		return nil, errors.Join(err, hostnet.Down(d.cfg))
	}
	fail := func(err error) (func() error, error) {
		return nil, errors.Join(err, stop(), hostnet.Down(d.cfg))
	}
	dh, err := dhcpd.Listen(dhcpd.Config{Interface: d.cfg.Bridge, ServerIP: d.net.Gateway, Subnet: d.net.Subnet, Lookup: d.lookup, Logf: d.c.Logf})
	if err != nil {
		return fail(err)
	}
	stops = append(stops, dh.Close)
	go func() {
		if err := dh.Serve(); err != nil {
			d.c.Logf("DHCP server: %v", err)
		}
	}()
	upstreams := dnsfwd.NewResolvers(d.c.ResolvConf, d.net.Gateway).Servers
	if d.hostNS != nil {
		var local []netip.Addr
		if err := hostnet.InNetns(int(d.hostNS.Fd()), func() (err error) {
			local, err = hostnet.LocalAddrs()
			return err
		}); err != nil {
			return fail(err)
		}
		upstreams = tenantUpstreams(func(a netip.Addr) bool { return slices.Contains(local, a) },
			upstreams, dnsfwd.NewResolvers(d.c.SystemdResolvConf, d.net.Gateway).Servers)
	}
	dns, err := dnsfwd.Listen(dnsfwd.Config{Upstreams: upstreams, Logf: d.c.Logf}, d.net.Gateway)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, dns.Close)
	go func() {
		if err := dns.Serve(); err != nil {
			d.c.Logf("DNS server: %v", err)
		}
	}()
	sock := d.st.path(d.net.Name, NetdSocket)
	os.Remove(sock) // a dead netd's; we hold netd.lock
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fail(fmt.Errorf("network %s: %w", d.net.Name, err))
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return fail(fmt.Errorf("network %s: %w", d.net.Name, err))
	}
	d.listener = l
	stops = append(stops, func() error {
		l.Close()
		os.Remove(sock)
		return nil
	})
	go d.accept(l)
	return stop, nil
}

// accept serves the VMs that attach on netd.sock.
func (d *netd) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.c.Logf("netd.sock: %v", err)
			}
			return
		}
		go d.serve(c)
	}
}

// tryDown takes the network down if no VM uses it, holding the network's
// lock so that no VM attaches meanwhile; done is false if one did.
func (d *netd) tryDown(stop func() error, runLock *os.File) (done bool, err error) {
	unlock, err := d.st.lock(d.net.Name)
	if err != nil {
		d.c.Logf("%v; trying again when the next VM leaves", err)
		return false, nil
	}
	defer unlock()
	d.mu.Lock()
	if len(d.users) > 0 {
		d.mu.Unlock()
		return false, nil
	}
	d.closing = true
	d.mu.Unlock()
	d.c.Logf("network %s: no VM uses it: taking it down", d.net.Name)
	// netd.lock goes before the network's lock: whoever takes that next
	// finds no netd and starts a new one.
	return true, errors.Join(stop(), d.down(runLock))
}

// down removes the host side (and the tenant's namespace and uplink
// when no other network of the tenant is up) and releases netd.lock.
func (d *netd) down(runLock *os.File) error {
	err := hostnet.Down(d.cfg)
	if d.hostNS != nil {
		err = errors.Join(err, d.setHostForwards(nil))
	}
	err = errors.Join(err, d.collectUplink())
	runLock.Close()
	return err
}

// collectUplink removes the tenant's namespace and uplink if no network
// of the tenant is up; nothing for the default tenant's networks.
func (d *netd) collectUplink() error {
	if d.hostNS == nil {
		return nil
	}
	return d.st.collectUplink(d.net.Tenant, int(d.hostNS.Fd()))
}

// lookup is the DHCP server's lease lookup: attached VMs only.
func (d *netd) lookup(mac netdev.MAC) (dhcpd.Lease, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.leases[mac]
	return l, ok
}

// serve attaches one VM and holds it until its connection closes.
func (d *netd) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var h hello
	if err := readLine(c, r, &h); err != nil {
		d.c.Logf("a VM's hello: %v", err)
		d.leave(nil)
		return
	}
	u, err := d.join(h)
	if err != nil {
		d.c.Logf("VM %s not attached: %v", h.VM, err)
		_ = sendLine(c, answer{Error: err.Error()})
		d.leave(nil)
		return
	}
	ans := answer{OK: true}
	var files []*os.File
	for _, t := range u.taps {
		ans.Taps = append(ans.Taps, t.Name())
		files = append(files, t.File())
	}
	err = sendLineFiles(c, ans, files)
	u.closeTaps()
	if err != nil {
		d.c.Logf("VM %s: %v", h.VM, err)
		d.leave(u)
		return
	}
	d.c.Logf("VM %s attached (taps %s)", h.VM, strings.Join(ans.Taps, ", "))
	// The VM never writes again: a read returns when its VMM closes the
	// connection or exits, however it exits.
	_, _ = io.Copy(io.Discard, r)
	d.c.Logf("VM %s left", h.VM)
	d.leave(u)
}

// join checks a hello and attaches the VM: its leases in the DHCP
// server, its port forwards reserved and in the nftables table, a tap
// for each NIC, with anti-spoofing rules, on the bridge.
func (d *netd) join(h hello) (*user, error) {
	switch {
	case len(h.NICs) == 0:
		return nil, errors.New("no NICs")
	case len(h.NICs) > maxFiles:
		return nil, fmt.Errorf("%d NICs on one network: at most %d", len(h.NICs), maxFiles)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return nil, fmt.Errorf("network %s is being taken down; try again", d.net.Name)
	}
	u := &user{hello: h}
	for o := range d.users {
		if o.hello.VM == h.VM {
			return nil, fmt.Errorf("VM %s is already attached to network %s (does it run already?)", h.VM, d.net.Name)
		}
	}
	var macs []netdev.MAC
	for _, l := range h.NICs {
		mac, err := netdev.ParseMAC(l.MAC)
		if err != nil {
			return nil, fmt.Errorf("nics[%d]: %w", l.NIC, err)
		}
		if _, dup := d.leases[mac]; dup || slices.Contains(macs, mac) {
			return nil, fmt.Errorf("nics[%d]: MAC %s is attached already", l.NIC, mac)
		}
		if !d.net.Subnet.Contains(l.IP) {
			return nil, fmt.Errorf("nics[%d]: address %s is not in %s", l.NIC, l.IP, d.net.Subnet)
		}
		macs = append(macs, mac)
	}
	fail := func(err error) (*user, error) {
		closeAll(u.reserved)
		u.closeTaps()
		return nil, err
	}
	for _, p := range h.Ports {
		f := hostnet.Forward{Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort, GuestIP: h.NICs[0].IP, GuestPort: p.GuestPort}
		c, err := d.reserve(p)
		if err != nil {
			return fail(fmt.Errorf("ports: %s: %w", p, err))
		}
		u.reserved = append(u.reserved, c)
		if d.hostNS != nil {
			c, err := d.reserveInner(p)
			if err != nil {
				return fail(fmt.Errorf("ports: %s: %w", p, err))
			}
			u.reserved = append(u.reserved, c)
		}
		u.forwards = append(u.forwards, f)
	}
	for i, l := range h.NICs {
		tap, err := netdev.CreateTapFor(macs[i])
		if err != nil {
			return fail(fmt.Errorf("nics[%d]: %w", l.NIC, err))
		}
		u.taps = append(u.taps, tap)
		u.guests = append(u.guests, hostnet.Guest{Port: tap.Name(), MAC: macs[i], IP: l.IP})
		// A stuck tap of that name is gone: the kernel reused its name.
		d.stuck = slices.DeleteFunc(d.stuck, func(g hostnet.Guest) bool { return g.Port == tap.Name() })
	}
	// The rules first, then the taps on the bridge: no frame of the VM
	// passes unchecked.
	d.users[u] = true
	if err := d.setRulesLocked(); err != nil {
		delete(d.users, u)
		return fail(err)
	}
	for _, t := range u.taps {
		if err := hostnet.AttachPort(d.cfg, t.Name()); err != nil {
			delete(d.users, u)
			if rerr := d.setRulesLocked(); rerr != nil {
				d.c.Logf("VM %s not attached, but its rules stay: %v", h.VM, rerr)
			}
			return fail(fmt.Errorf("network %s: %w", d.net.Name, err))
		}
	}
	for i, l := range h.NICs {
		d.leases[macs[i]] = dhcpd.Lease{IP: l.IP, Hostname: h.VM}
	}
	return u, nil
}

// reserve reserves a forward's host port, in the host's namespace.
func (d *netd) reserve(p Port) (c io.Closer, err error) {
	if d.hostNS == nil {
		return hostnet.Reserve(p.Proto, p.HostIP, p.HostPort)
	}
	err = hostnet.InNetns(int(d.hostNS.Fd()), func() (err error) {
		c, err = hostnet.Reserve(p.Proto, p.HostIP, p.HostPort)
		return err
	})
	return c, err
}

// reserveInner reserves a forward's port on the uplink's inner address,
// in the tenant's namespace (netd's own), where every forward of the
// tenant's networks arrives whatever its host address (setRulesLocked):
// two forwards of one port, from two host addresses, would both end at
// the first. Precondition: mu is held.
func (d *netd) reserveInner(p Port) (io.Closer, error) {
	for o := range d.users {
		for _, f := range o.forwards {
			if f.Proto == p.Proto && f.HostPort == p.HostPort {
				return nil, fmt.Errorf("host port %d/%s %w by VM %s (%s): the forwards of tenant %s all arrive at one address in its namespace, so each needs a port of its own", p.HostPort, p.Proto, hostnet.ErrPortInUse, o.hello.VM, f, d.net.Tenant)
			}
		}
	}
	c, err := hostnet.Reserve(p.Proto, d.uplink.Peer().Addr(), p.HostPort)
	if errors.Is(err, hostnet.ErrPortInUse) {
		return nil, fmt.Errorf("host port %d/%s %w by a VM on another network of tenant %s: the forwards of a tenant all arrive at one address in its namespace, so each needs a port of its own", p.HostPort, p.Proto, hostnet.ErrPortInUse, d.net.Tenant)
	}
	return c, err
}

// setRulesLocked replaces the network's tables with the attached VMs'
// rules. In a tenant's namespace a forward has two halves: the host's
// table of the same name takes the host port to the uplink's inner
// address, and the network's from there to the guest. Precondition: mu
// is held.
func (d *netd) setRulesLocked() error {
	r := d.rulesLocked()
	if d.hostNS == nil {
		return hostnet.SetRules(d.cfg, r)
	}
	inner := r
	inner.Forwards = nil
	for _, f := range r.Forwards {
		f.HostIP = d.uplink.Peer().Addr()
		inner.Forwards = append(inner.Forwards, f)
	}
	if err := hostnet.SetRules(d.cfg, inner); err != nil {
		return err
	}
	return d.setHostForwards(r.Forwards)
}

// setHostForwards replaces the host's half of the forwards (none: its
// table goes).
func (d *netd) setHostForwards(forwards []hostnet.Forward) error {
	return hostnet.InNetns(int(d.hostNS.Fd()), func() error { return hostnet.SetUplinkForwards(d.uplink, d.cfg.Table, forwards) })
}

// rulesLocked is every attached VM's forwards and NICs. Precondition: mu
// is held.
func (d *netd) rulesLocked() hostnet.Rules {
	r := hostnet.Rules{Guests: slices.Clone(d.stuck)}
	for u := range d.users {
		r.Forwards = append(r.Forwards, u.forwards...)
		r.Guests = append(r.Guests, u.guests...)
	}
	return r
}

// leave detaches a VM (nil: a connection that never attached one) and
// reports when none is left. The VM's taps go off the bridge before
// their rules go: the VM holds the taps, and may well hold them on after
// closing its connection.
func (d *netd) leave(u *user) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u != nil && d.users[u] {
		delete(d.users, u)
		for _, g := range u.guests {
			if err := hostnet.DetachPort(d.cfg, g.Port); err != nil {
				d.c.Logf("VM %s left, but its tap stays on the bridge with its rules: %v", u.hello.VM, err)
				d.stuck = append(d.stuck, g)
			}
		}
		for _, l := range u.hello.NICs {
			if mac, err := netdev.ParseMAC(l.MAC); err == nil {
				delete(d.leases, mac)
			}
		}
		if !d.closing {
			if err := d.setRulesLocked(); err != nil {
				d.c.Logf("VM %s left, but its rules stay: %v", u.hello.VM, err)
			}
		}
		closeAll(u.reserved)
		u.closeTaps()
	}
	if len(d.users) == 0 {
		select {
		case d.idle <- struct{}{}:
		default: // one wake-up pending is enough
		}
	}
}

// closeAll closes each closer.
func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}
