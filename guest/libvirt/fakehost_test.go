package libvirt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"slices"
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
// others to answer, which returns the packets to send back. A nil
// packet among them hangs the host: it sends nothing more, ever, and
// reads on (a daemon stuck with its socket open).
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
		i := slices.IndexFunc(out, func(p []byte) bool { return p == nil })
		hang := i >= 0
		if hang {
			out = out[:i]
		}
		if _, err := conn.Write(bytes.Join(out, nil)); err != nil {
			return
		}
		if hang {
			io.Copy(io.Discard, conn)
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
	h := rawHost(t, "gone", []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
	want := "libvirt host gone (" + h.URI + `): cannot connect: the host does not speak libvirt's protocol: it sent "HTTP/1.1 503 Service Unavail"`
	if err := connectFails(t, h); err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// rawHost is a server on a unix socket that sends what to the first
// connection and then reads all that comes; it returns it as the host
// name.
func rawHost(t *testing.T, name string, what []byte) Host {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "libvirt-sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write(what)
		io.Copy(io.Discard, conn)
	}()
	return Host{Name: name, URI: "qemu:///system?socket=" + sock}
}

// connectFails returns Connect's error for h (nil if it connected); the
// test fails if Connect takes longer than hangTimeout.
func connectFails(t *testing.T, h Host) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := Connect(h)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(hangTimeout):
		t.Fatalf("no answer in %v: Connect hangs", hangTimeout)
	}
	return nil
}

// shortLimits makes the connections the test opens give up a host
// that does not answer within a fraction of a second.
func shortLimits(t *testing.T) limits {
	t.Helper()
	saved := defaultLimits
	t.Cleanup(func() { defaultLimits = saved })
	defaultLimits = limits{handshake: 300 * time.Millisecond, heartbeatEvery: 50 * time.Millisecond, silentFor: 300 * time.Millisecond}
	return defaultLimits
}

// TestHostHangs: a host that stops answering, however it does, fails
// the calls waiting on it within the heartbeat's limit, with one
// sentence saying so, and what it announced is never allocated beyond
// libvirt's bound: a call whose reply never comes, a packet of libvirt's
// largest size that never ends (go-libvirt alone waits for both for
// ever), and a length of 4 GiB (go-libvirt alone allocates it).
func TestHostHangs(t *testing.T) {
	lim := shortLimits(t)
	header := func(proc, serial, length uint32) []byte {
		b := packet(proc, typeReply, serial, 0, nil)
		binary.BigEndian.PutUint32(b, length)
		return b
	}
	silent := fmt.Sprintf("lost the connection to the libvirt host (the host stopped answering: it has not answered for %v)", lim.silentFor)
	for _, tc := range []struct {
		name   string
		answer func(proc, serial uint32) [][]byte
		want   string
		// alloc bounds what the failed call may allocate.
		alloc uint64
	}{
		{"a reply that never comes", func(proc, serial uint32) [][]byte { return [][]byte{nil} }, silent, 1 << 20},
		{"a packet of 32 MiB that never ends", func(proc, serial uint32) [][]byte {
			return [][]byte{header(proc, serial, maxPacket), nil}
		}, silent, maxPacket + 1<<20},
		{"a packet of 4 GiB", func(proc, serial uint32) [][]byte {
			return [][]byte{header(proc, serial, 1<<32-1), nil}
		}, "lost the connection to the libvirt host (the host does not speak libvirt's protocol: a packet of 4294967295 bytes (libvirt's have 28 to 33554436))", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHost(t, tc.answer)
			c, err := Connect(h)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan error, 1)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			go func() {
				_, err := c.DomainNames()
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(hangTimeout):
				t.Fatalf("no answer in %v: the call hangs", hangTimeout)
			}
			runtime.ReadMemStats(&after)
			want := "libvirt host fake (" + h.URI + "): list domains: " + tc.want
			if !errors.Is(err, ErrConnectionLost) || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > tc.alloc {
				t.Errorf("allocated %d bytes, more than %d", n, tc.alloc)
			}
		})
	}
}

// TestHandshakeHangs: a server that accepts the connection and never
// answers libvirt's handshake (a hung daemon) fails Connect within the
// handshake's limit; go-libvirt alone waits for ever.
func TestHandshakeHangs(t *testing.T) {
	lim := shortLimits(t)
	h := rawHost(t, "hung", nil)
	want := fmt.Sprintf("libvirt host hung (%s): cannot connect: the host stopped answering: libvirt's handshake did not end within %v", h.URI, lim.handshake)
	if err := connectFails(t, h); err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}
