package network

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// Port is one port forward of a VM: HostIP:HostPort on the host to the
// VM's address on the network, GuestPort.
type Port struct {
	Proto     string     `json:"proto"`
	HostIP    netip.Addr `json:"host_ip"`
	HostPort  uint16     `json:"host_port"`
	GuestPort uint16     `json:"guest_port"`
}

// String is the forward as ports: in YAML writes it: "127.0.0.1:8080:80/tcp".
func (p Port) String() string {
	return fmt.Sprintf("%s:%d/%s", netip.AddrPortFrom(p.HostIP, p.HostPort), p.GuestPort, p.Proto)
}

// hello is what an attaching VM sends netd: one JSON line. netd answers
// with one answer line and then serves the VM for as long as the
// connection stays open.
type hello struct {
	VM string `json:"vm"`
	// NICs are the VM's leases on this network.
	NICs []Lease `json:"nics"`
	// Ports are forwarded to the first NIC's address.
	Ports []Port `json:"ports,omitempty"`
}

// answer is netd's reply to a hello.
type answer struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// helloTimeout bounds each side's wait for the other's line: netd's for
// a hello, a VM's for the answer (which may follow bringing the network
// up).
const helloTimeout = 30 * time.Second

// sendLine writes v as one JSON line.
func sendLine(c net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := c.SetWriteDeadline(time.Now().Add(helloTimeout)); err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}

// maxLine bounds a protocol line.
const maxLine = 1 << 20

// readLine reads one JSON line into v from r, reading from c.
func readLine(c net.Conn, r *bufio.Reader, v any) error {
	if err := c.SetReadDeadline(time.Now().Add(helloTimeout)); err != nil {
		return err
	}
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return fmt.Errorf("a line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			break
		}
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// UserConn is the connection of the first VM that a netd process
// inherits at descriptor fd (NetdFD).
func UserConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "user")
	if f == nil {
		return nil, fmt.Errorf("netd: descriptor %d is not open", fd)
	}
	defer f.Close() // FileConn has its own copy
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("netd: descriptor %d: %w", fd, err)
	}
	return c, nil
}
