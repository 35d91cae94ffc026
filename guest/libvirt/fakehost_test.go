package libvirt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// The procedures the fake host answers (libvirt's remote_protocol.x).
const (
	procConnectOpen          = 1
	procConnectClose         = 2
	procAuthList             = 66
	procConnectGetLibVersion = 157
	procStorageVolDownload   = 209
)

// fakeHost serves libvirt's protocol on a unix socket to Connect, as a
// script says: it answers the calls a connection makes on its own
// (auth list, open, close, the heartbeat's version) and passes the
// others to answer, which returns the packets to send back.
func fakeHost(t *testing.T, answer func(proc, serial uint32) [][]byte) Host {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "libvirt-sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFake(conn, answer)
		}
	}()
	return Host{Name: "fake", URI: "qemu:///system?socket=" + sock}
}

// serveFake answers the calls that come on conn until it closes.
func serveFake(conn net.Conn, answer func(proc, serial uint32) [][]byte) {
	defer conn.Close()
	for {
		hdr := make([]byte, packetHeader)
		if _, err := io.ReadFull(conn, hdr); err != nil {
			return
		}
		h := parseHeader(hdr)
		if _, err := io.CopyN(io.Discard, conn, int64(h.length)-packetHeader); err != nil {
			return
		}
		proc := binary.BigEndian.Uint32(hdr[12:])
		var out [][]byte
		switch {
		case !h.call():
		case proc == procAuthList:
			out = [][]byte{packet(proc, typeReply, h.serial, 0, []byte{0, 0, 0, 0})} // no auth
		case proc == procConnectOpen || proc == procConnectClose:
			out = [][]byte{packet(proc, typeReply, h.serial, 0, nil)}
		case proc == procConnectGetLibVersion:
			out = [][]byte{packet(proc, typeReply, h.serial, 0, []byte{0, 0, 0, 0, 0, 0x89, 0x54, 0x40})} // 9.0.0
		default:
			out = answer(proc, h.serial)
		}
		if _, err := conn.Write(bytes.Join(out, nil)); err != nil {
			return
		}
	}
}

// TestStreamBeforeReply: a host whose download sends the volume's data,
// and the stream's end, before the reply (as libvirtd does when its
// event loop is quicker than the worker that made the call) gives all
// the data, and its connection goes on answering. go-libvirt alone
// takes the first data for the reply: the download lost "hello " and
// the connection hung.
func TestStreamBeforeReply(t *testing.T) {
	h := fakeHost(t, func(proc, serial uint32) [][]byte {
		if proc != procStorageVolDownload {
			return [][]byte{packet(proc, typeReply, serial, statusError, nil)}
		}
		return [][]byte{
			packet(proc, typeStream, serial, 2, []byte("hello ")),
			packet(proc, typeStream, serial, 2, []byte("world\n")),
			packet(proc, typeStream, serial, 2, nil), // the end
			packet(proc, typeReply, serial, 0, nil),
		}
	})
	c, err := Connect(h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		for range 3 {
			var got bytes.Buffer
			if err := c.l.StorageVolDownload(golibvirt.StorageVol{Pool: "paddock", Name: "v", Key: "k"}, &got, 0, 12, 0); err != nil {
				done <- err
				return
			}
			if got.String() != "hello world\n" {
				done <- fmt.Errorf("downloaded %q, want %q", got.String(), "hello world\n")
				return
			}
			if v, err := c.l.ConnectGetLibVersion(); err != nil || v != 9000000 {
				done <- fmt.Errorf("the call after the download: %d, %v", v, err)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangTimeout):
		c.raw.Close()
		t.Fatalf("no answer in %v: the connection hangs", hangTimeout)
	}
}

// hangTimeout is how long a test waits for calls that take milliseconds
// before it says they hang.
const hangTimeout = time.Minute

// TestHostBreaksProtocol: a host that sends a packet libvirt cannot
// have sent loses its connection with one error saying so; go-libvirt
// alone panics on a packet shorter than its header.
func TestHostBreaksProtocol(t *testing.T) {
	h := fakeHost(t, func(proc, serial uint32) [][]byte {
		bad := packet(proc, typeReply, serial, 0, nil)
		binary.BigEndian.PutUint32(bad, 4)
		return [][]byte{bad}
	})
	c, err := Connect(h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.DomainNames()
	want := "libvirt host fake (" + h.URI + "): list domains: lost the connection to the libvirt host " +
		"(the host does not speak libvirt's protocol: a packet of 4 bytes (libvirt's have 28 to 33554436))"
	if !errors.Is(err, ErrConnectionLost) || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("not one sentence: %q", err)
	}
}

// TestNotLibvirt: a server that is not libvirtd where the host was (on
// this machine, an HTTP proxy answers for an address nobody has) fails
// Connect with what it said; go-libvirt alone took "HTTP" for the length
// of a packet, allocated 1.2 GB for it, and waited for it for ever.
func TestNotLibvirt(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "libvirt-sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
		io.Copy(io.Discard, conn)
	}()
	h := Host{Name: "gone", URI: "qemu:///system?socket=" + sock}
	done := make(chan error, 1)
	go func() {
		c, err := Connect(h)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(hangTimeout):
		t.Fatalf("no answer in %v: Connect hangs", hangTimeout)
	}
	want := "libvirt host gone (" + h.URI + `): cannot connect: the host does not speak libvirt's protocol: it sent "HTTP/1.1 503 Service Unavail"`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}
