package hostnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
)

// ErrPortInUse: a host port a forward needs is taken.
var ErrPortInUse = errors.New("is in use")

// Reserve binds the host side of a forward so that no other program can
// take the port while the forward exists, and returns the socket to close
// when it ends: a listening TCP socket, or a bound UDP one. The socket
// never sees a packet (the forward's DNAT rewrites them first). A port
// that is taken, by a program or by another forward, is an error wrapping
// ErrPortInUse.
func Reserve(proto string, host netip.Addr, port uint16) (io.Closer, error) {
	addr := netip.AddrPortFrom(host, port).String()
	var c io.Closer
	var err error
	switch proto {
	case "tcp":
		c, err = net.Listen("tcp4", addr)
	case "udp":
		c, err = net.ListenPacket("udp4", addr)
	default:
		return nil, fmt.Errorf("hostnet: port %s: protocol %q is not tcp or udp", addr, proto)
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("host port %s/%s %w", addr, proto, ErrPortInUse)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("host port %s/%s: %s is not an address of this host", addr, proto, host)
	case err != nil:
		return nil, fmt.Errorf("host port %s/%s: %w", addr, proto, err)
	}
	return c, nil
}

// CheckPort reports whether Reserve would succeed now: nil if the port is
// free, an error wrapping ErrPortInUse if it is taken.
func CheckPort(proto string, host netip.Addr, port uint16) error {
	c, err := Reserve(proto, host, port)
	if err != nil {
		return err
	}
	return c.Close()
}
