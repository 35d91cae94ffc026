package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// NetdFD is the descriptor of the first VM's connection in a netd
// process (its first extra file).
const NetdFD = 3

// AttachNIC is one NIC of a VM on a managed network.
type AttachNIC struct {
	// Index is the NIC's index in the spec, Network the network's
	// reference (Ref: the VM's tenant's network), MAC the NIC's address.
	Index   int
	Network string
	MAC     netdev.MAC
}

// AttachOptions describe a VM that attaches to its networks.
type AttachOptions struct {
	// VM is the VM's name.
	VM string
	// NICs are its NICs on managed networks.
	NICs []AttachNIC
	// Ports are forwarded to the address of NICs[0].
	Ports []Port
	// Ephemeral: the VM runs in the foreground and its new leases go
	// when it ends (Attachment.Close).
	Ephemeral bool
	// NetdCommand runs a netd, to which Attach appends "--home HOME
	// --user-fd 3 NAME"; empty means this executable's `netd` command.
	NetdCommand []string
	// Home is the state directory.
	Home string
}

// Attachment is a VM attached to its networks: while it is open, each
// network is up and serves the VM (DHCP, DNS, port forwards). Closing
// it, or the process's exit, detaches the VM.
type Attachment struct {
	// Bridges maps a NIC's index to its network's bridge; Leases maps
	// it to the NIC's lease, and Taps to the tap netd made for the NIC
	// (on the bridge, with the NIC's anti-spoofing rules), which the
	// caller takes over (TakeTaps).
	Bridges map[int]string
	Leases  map[int]Lease
	Taps    map[int]*netdev.Tap

	conns   []net.Conn
	release func() error
	// ephemeral: Close releases the VM's new leases (AttachOptions).
	ephemeral bool
}

// TakeTaps returns the NICs' taps (Taps) for the caller to close; the
// attachment has none left.
func (a *Attachment) TakeTaps() map[int]*netdev.Tap {
	taps := a.Taps
	a.Taps = map[int]*netdev.Tap{}
	return taps
}

// Close detaches the VM, closes the taps not taken (TakeTaps) and
// releases its ephemeral leases. It returns once each netd has detached
// the VM (its forwards are gone), or after helloTimeout.
func (a *Attachment) Close() error {
	var errs error
	for _, t := range a.TakeTaps() {
		errs = errors.Join(errs, t.Close())
	}
	for _, c := range a.conns {
		if uc, ok := c.(*net.UnixConn); ok {
			// netd closes its end once it has detached the VM.
			if uc.CloseWrite() == nil && uc.SetReadDeadline(time.Now().Add(helloTimeout)) == nil {
				_, _ = io.Copy(io.Discard, uc)
			}
		}
		errs = errors.Join(errs, c.Close())
	}
	a.conns = nil
	if a.release != nil {
		errs = errors.Join(errs, a.release())
	}
	return errs
}

// Attach attaches a VM to the managed networks of its NICs: for each
// network (created on first use if it is DefaultName), under the
// network's lock, it reserves the NICs' leases, starts the network's
// netd if none runs, and sends it the VM's hello. A refusal (a port in
// use, the VM attached already) is an error naming the network; what
// Attach did for the other networks is undone.
func Attach(o AttachOptions) (*Attachment, error) {
	st, err := Open(o.Home)
	if err != nil {
		return nil, err
	}
	a := &Attachment{Bridges: map[int]string{}, Leases: map[int]Lease{}, Taps: map[int]*netdev.Tap{}, ephemeral: o.Ephemeral}
	var released []string // networks whose ephemeral leases go at Close
	a.release = func() error {
		var errs error
		for _, name := range released {
			errs = errors.Join(errs, st.Release(name, o.VM, true))
		}
		return errs
	}
	var order []string
	byNet := map[string][]NICRequest{}
	for _, n := range o.NICs {
		if _, ok := byNet[n.Network]; !ok {
			order = append(order, n.Network)
		}
		byNet[n.Network] = append(byNet[n.Network], NICRequest{Index: n.Index, MAC: n.MAC})
	}
	for i, name := range order {
		var ports []Port
		if i == 0 {
			ports = o.Ports
		}
		if o.Ephemeral {
			released = append(released, name)
		}
		conn, n, leases, taps, err := st.attach(o, name, byNet[name], ports)
		if err != nil {
			return nil, errors.Join(err, a.Close())
		}
		a.conns = append(a.conns, conn)
		for i, l := range leases {
			a.Bridges[l.NIC], a.Leases[l.NIC], a.Taps[l.NIC] = n.Bridge, l, taps[i]
		}
	}
	return a, nil
}

// Use returns the network a VM's NIC names (its reference: the VM's
// tenant's network): DefaultName is created on first use; another that
// does not exist is an error saying how to make it.
func (s *Store) Use(name string) (*Network, error) {
	n, err := s.Get(name)
	tenant, short, _ := SplitRef(name)
	switch {
	case errors.Is(err, ErrNotFound) && short == DefaultName:
		n, err = s.Create(name, netip.Prefix{})
		if errors.Is(err, ErrExists) {
			n, err = s.Get(name) // another VM created it meanwhile
		}
	case errors.Is(err, ErrNotFound) && tenant != DefaultTenant:
		err = fmt.Errorf("%w: create it first (paddock network create --tenant %s %s)", err, tenant, short)
	case errors.Is(err, ErrNotFound):
		err = fmt.Errorf("%w: create it first (paddock network create %s)", err, name)
	}
	return n, err
}

// attach attaches a VM to one network, and returns the connection to
// its netd, the network, the NICs' leases and their taps (in the same
// order).
func (s *Store) attach(o AttachOptions, name string, nics []NICRequest, ports []Port) (net.Conn, *Network, []Lease, []*netdev.Tap, error) {
	fail := func(err error) (net.Conn, *Network, []Lease, []*netdev.Tap, error) {
		return nil, nil, nil, nil, err
	}
	n, err := s.Use(name)
	if err != nil {
		return fail(err)
	}
	unlock, err := s.lock(name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	leases, err := s.reserveLocked(n, o.VM, nics, o.Ephemeral)
	if err != nil {
		return fail(err)
	}
	alive, err := s.netdAlive(name)
	if err != nil {
		return fail(err)
	}
	var conn net.Conn
	if alive {
		conn, err = net.Dial("unix", s.path(name, NetdSocket))
		if err != nil {
			return fail(fmt.Errorf("network %s: its netd runs but does not answer: %w", name, err))
		}
	} else if inNamespace(n.Tenant) {
		// The uplink stays locked until netd has answered (its bridge
		// is up): no other tenant's netd removes the namespace meanwhile
		// for want of a bridge.
		unlockUp, err := s.lockUplinks()
		if err != nil {
			return fail(err)
		}
		defer unlockUp()
		ns, err := s.uplinkUp(n.Tenant)
		if err != nil {
			return fail(errors.Join(fmt.Errorf("network %s: %w", name, err), s.collectUplinkLocked(n.Tenant)))
		}
		conn, err = s.spawnNetd(o, name, ns)
		unix.Close(ns)
		if err != nil {
			return fail(errors.Join(err, s.collectUplinkLocked(n.Tenant)))
		}
	} else if conn, err = s.spawnNetd(o, name, -1); err != nil {
		return fail(err)
	}
	if err := sendLine(conn, hello{VM: o.VM, NICs: leases, Ports: ports}); err != nil {
		conn.Close()
		return fail(s.netdError(name, err))
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return fail(fmt.Errorf("network %s: netd's connection is a %T", name, conn))
	}
	var ans answer
	fds, err := readLineFiles(uc, &ans)
	if err != nil {
		conn.Close()
		return fail(s.netdError(name, err))
	}
	if !ans.OK {
		closeFDs(fds)
		conn.Close()
		return fail(fmt.Errorf("network %s: %s", name, ans.Error))
	}
	if len(fds) != len(leases) {
		closeFDs(fds)
		conn.Close()
		return fail(fmt.Errorf("network %s: netd sent %d taps for %d NICs", name, len(fds), len(leases)))
	}
	var taps []*netdev.Tap
	for i, fd := range fds {
		t, err := netdev.TapFromFD(fd, true)
		if err != nil {
			closeFDs(fds[i+1:])
			for _, t := range taps {
				t.Close()
			}
			conn.Close()
			return fail(fmt.Errorf("network %s: %w", name, err))
		}
		taps = append(taps, t)
	}
	return conn, n, leases, taps, nil
}

// netdError is a failure to talk to a network's netd, with the last
// lines it logged.
func (s *Store) netdError(name string, err error) error {
	msg := fmt.Sprintf("network %s: netd did not answer (%v)", name, err)
	if b, rerr := os.ReadFile(s.path(name, NetdLog)); rerr == nil {
		if tail := console.TailLines(b, 5); len(tail) > 0 {
			msg += "; its log ends: " + strings.Join(tail, " | ")
		}
	}
	return errors.New(msg)
}

// spawnNetd starts the network's netd as a detached process (its own
// session, output to netd.log, the previous log kept as netd.log.1) and
// returns the connection it serves first. A netd of a tenant other than
// the default starts in the tenant's namespace ns (-1 for the host's),
// with the host's namespace as its descriptor NetdHostNSFD.
// Precondition: the network's lock is held and no netd runs.
func (s *Store) spawnNetd(o AttachOptions, name string, ns int) (net.Conn, error) {
	argv := o.NetdCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("network %s: find this executable to run netd: %w", name, err)
		}
		argv = []string{exe, "netd"}
	}
	argv = append(slices.Clone(argv), "--home", o.Home, "--user-fd", fmt.Sprint(NetdFD), name)
	logPath := s.path(name, NetdLog)
	if _, err := os.Stat(logPath); err == nil {
		_ = os.Rename(logPath, logPath+".1")
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("network %s: netd log: %w", name, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	defer devnull.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network %s: socket pair for netd: %w", name, err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "netd"), os.NewFile(uintptr(fds[1]), "vm")
	defer mine.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.Dir = s.Dir(name)
	cmd.ExtraFiles = []*os.File{theirs} // NetdFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if ns >= 0 {
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			theirs.Close()
			return nil, fmt.Errorf("network %s: the host's network namespace: %w", name, err)
		}
		defer host.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, host) // NetdHostNSFD
		err = hostnet.InNetns(ns, cmd.Start)
	} else {
		err = cmd.Start()
	}
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("network %s: run netd %s: %w", name, argv[0], err)
	}
	// netd lives on, in its own session; reap it should it exit while
	// this process runs.
	go cmd.Wait()
	conn, err := net.FileConn(mine)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	return conn, nil
}
