// Package netnstest gives tests a private network namespace: bridges,
// veth pairs, taps and packet sockets made there cannot disturb the host.
// It uses iproute2's `ip` and needs CAP_NET_ADMIN.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace (/run/netns/NAME) that lives as long as
// the test.
type NS struct {
	Name string
	fd   int
}

// New creates a namespace for the test and removes it at cleanup. It
// ends the test (internal/testenv: a skip outside CI, a failure in CI)
// when `ip` is missing or the process is not root.
func New(t testing.TB) *NS {
	t.Helper()
	testenv.RequireTool(t, "ip", "iproute2")
	testenv.RequireRoot(t, "network namespaces need CAP_NET_ADMIN")
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	n := &NS{Name: "paddock-test-" + hex.EncodeToString(b[:])}
	run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() {
		unix.Close(n.fd)
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.fd = fd
	n.IP(t, "link", "set", "lo", "up")
	return n
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// IP runs `ip -n NAME ARGS...` and returns its output.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace and returns its output.
func (n *NS) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread that has entered the namespace: interfaces
// and sockets fn opens belong to it (and stay usable from any thread
// afterwards). The thread is discarded when fn returns.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime destroys the thread when the
		// goroutine exits, so no other goroutine runs in the namespace.
		runtime.LockOSThread()
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netnstest: enter %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Bridge creates a bridge (up) in the namespace.
func (n *NS) Bridge(t testing.TB, name string) {
	t.Helper()
	n.IP(t, "link", "add", name, "type", "bridge")
	n.IP(t, "link", "set", name, "up")
}

// Veth creates a veth pair a<->b (both up) and, if bridge is not empty,
// puts a in it.
func (n *NS) Veth(t testing.TB, a, b, bridge string) {
	t.Helper()
	n.IP(t, "link", "add", a, "type", "veth", "peer", "name", b)
	if bridge != "" {
		n.IP(t, "link", "set", a, "master", bridge)
	}
	n.IP(t, "link", "set", a, "up")
	n.IP(t, "link", "set", b, "up")
}

// PacketSocket is a raw AF_PACKET socket bound to one interface of the
// namespace: it sends and receives whole Ethernet frames.
type PacketSocket struct {
	fd    int
	index int
}

// OpenPacketSocket opens a packet socket on the interface, receiving
// frames of every protocol; reads time out after timeoutMs.
func (n *NS) OpenPacketSocket(t testing.TB, iface string, timeoutMs int) *PacketSocket {
	t.Helper()
	var ps *PacketSocket
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(iface)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("index of %s: %w", iface, err)
		}
		idx := int(ifr.Uint32())
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(timeoutMs) * 1e6)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		ps = &PacketSocket{fd: fd, index: idx}
		return nil
	})
	if err != nil {
		t.Fatalf("netnstest: packet socket on %s: %v", iface, err)
	}
	t.Cleanup(func() { unix.Close(ps.fd) })
	return ps
}

// Send transmits one Ethernet frame.
func (p *PacketSocket) Send(frame []byte) error {
	return unix.Sendto(p.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: p.index, Halen: 6})
}

// Recv returns the next frame the interface saw (sent or received) for
// which match returns true, skipping others, until the read timeout.
func (p *PacketSocket) Recv(match func([]byte) bool) ([]byte, error) {
	buf := make([]byte, 65536+64)
	for {
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netnstest: receive: %w", err)
		}
		if match == nil || match(buf[:n]) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// VethTo creates a veth pair between two namespaces, both ends up: a in
// n (made a port of bridge, unless bridge is empty) and b in other.
func (n *NS) VethTo(t testing.TB, other *NS, a, b, bridge string) {
	t.Helper()
	n.IP(t, "link", "add", a, "type", "veth", "peer", "name", b, "netns", other.Name)
	if bridge != "" {
		n.IP(t, "link", "set", a, "master", bridge)
	}
	n.IP(t, "link", "set", a, "up")
	other.IP(t, "link", "set", b, "up")
}

// Try runs a command inside the namespace and returns its combined
// output and error, for commands that are expected to fail.
func (n *NS) Try(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...).CombinedOutput()
	return string(out), err
}

// Listen opens a listener ("tcp4", "unix", ...) in the namespace; it is
// closed at cleanup. It is bound when Listen returns.
func (n *NS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen on %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ServeHTTP answers every request to addr (host:port, in the namespace)
// with body and the client's address on a second line, until cleanup.
func (n *NS) ServeHTTP(t testing.TB, addr, body string) {
	t.Helper()
	Serve(t, n.Listen(t, "tcp4", addr), func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\nfrom %s\n", body, r.RemoteAddr)
	})
}

// Serve serves HTTP with h on l until the test ends.
func Serve(t testing.TB, l net.Listener, h http.HandlerFunc) {
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}
