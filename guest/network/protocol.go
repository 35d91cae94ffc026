package network

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
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

// answer is netd's reply to a hello. With OK, the line carries the
// descriptors of the taps netd made for the VM's NICs (SCM_RIGHTS), in
// the hello's order, and Taps names them.
type answer struct {
	OK    bool     `json:"ok"`
	Error string   `json:"error,omitempty"`
	Taps  []string `json:"taps,omitempty"`
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

// sendLineFiles writes v as one JSON line carrying the files'
// descriptors, over a unix socket.
func sendLineFiles(c net.Conn, v any, files []*os.File) error {
	if len(files) == 0 {
		return sendLine(c, v)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("send descriptors over a %T", c)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var fds []int
	for _, f := range files {
		fds = append(fds, int(f.Fd()))
	}
	if err := c.SetWriteDeadline(time.Now().Add(helloTimeout)); err != nil {
		return err
	}
	_, _, err = uc.WriteMsgUnix(append(b, '\n'), unix.UnixRights(fds...), nil)
	return err
}

// maxFiles bounds the descriptors one line may carry: netd's answer
// carries a tap for each NIC of the hello, so a hello has at most
// maxFiles NICs.
const maxFiles = 64

// readLineFiles reads one JSON line into v from the unix socket c, with
// the descriptors it carries (the caller closes them). Nothing may be
// read from c before (no buffered reader).
func readLineFiles(c *net.UnixConn, v any) (fds []int, err error) {
	defer func() {
		if err != nil {
			closeFDs(fds)
			fds = nil
		}
	}()
	if err := c.SetReadDeadline(time.Now().Add(helloTimeout)); err != nil {
		return nil, err
	}
	var line []byte
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(maxFiles*4))
	for !bytes.HasSuffix(line, []byte("\n")) {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if flags&unix.MSG_CTRUNC != 0 && err == nil {
			// The kernel dropped the descriptors that did not fit; the
			// others are closed with the error.
			err = fmt.Errorf("a line carried more than %d descriptors", maxFiles)
		}
		if oobn > 0 {
			msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				if got, rerr := unix.ParseUnixRights(&m); rerr == nil {
					fds = append(fds, got...)
				}
			}
			if perr != nil && err == nil {
				err = perr
			}
		}
		if err != nil {
			return fds, err
		}
		if n == 0 {
			return fds, io.ErrUnexpectedEOF
		}
		if line = append(line, buf[:n]...); len(line) > maxLine {
			return fds, fmt.Errorf("a line longer than %d bytes", maxLine)
		}
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return fds, err
	}
	return fds, json.Unmarshal(line, v)
}

// closeFDs closes descriptors.
func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
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
