package libvirt

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// libvirt's RPC packets (libvirt's src/rpc/virnetprotocol.x): a length,
// which counts the whole packet, itself included; a header of six 4-byte
// fields (program, version, procedure, type, serial, status); then the
// payload.
const (
	// packetHeader is the length and the header.
	packetHeader = 4 + 24
	// maxPacket is the longest packet libvirt sends or takes:
	// VIR_NET_MESSAGE_MAX, plus the length field it does not count.
	maxPacket = 32<<20 + 4
	// maxHeld bounds the stream packets replyFirst holds on one
	// connection. libvirtd sends a volume's data in packets of 256 KiB,
	// and only a few of them can overtake a reply.
	maxHeld = 32 << 20
)

// The packet types and statuses replyFirst tells apart.
const (
	typeCall         = 0
	typeReply        = 1
	typeStream       = 3
	typeCallWithFDs  = 4
	typeReplyWithFDs = 5
	typeStreamHole   = 6
	statusError      = 1
)

// errBadPacket: what the host sent is not libvirt's protocol (a broken
// libvirtd, or another server on its port).
var errBadPacket = errors.New("the host does not speak libvirt's protocol")

// header is what replyFirst reads of a packet's header.
type header struct {
	length, typ, serial, status uint32
}

// parseHeader reads the header of the packet whose first packetHeader
// bytes are b.
func parseHeader(b []byte) header {
	be := binary.BigEndian
	return header{length: be.Uint32(b), typ: be.Uint32(b[16:]), serial: be.Uint32(b[20:]), status: be.Uint32(b[24:])}
}

func (h header) stream() bool { return h.typ == typeStream || h.typ == typeStreamHole }
func (h header) reply() bool  { return h.typ == typeReply || h.typ == typeReplyWithFDs }
func (h header) call() bool   { return h.typ == typeCall || h.typ == typeCallWithFDs }

// replyFirst is the connection go-libvirt speaks over, with what the host
// sends put in the order go-libvirt needs: the reply to a call before the
// packets of the call's stream.
//
// libvirtd starts a stream it sends from (a volume download, a console)
// inside the call, and its event loop sends the stream's packets while
// the worker that ran the call is still to send the reply; so a packet
// of the stream, even its end, can come first. libvirt's own client
// queues stream packets apart from replies. go-libvirt takes the first
// packet with the call's serial for the reply: it loses data, ends the
// stream early, and then blocks for ever handing the late packets to a
// caller that has gone, holding the lock every call needs: the
// connection then answers nothing more, and a process left with only
// that connection hangs, or dies with "all goroutines are asleep" once
// nothing else is left to wait for. replyFirst
// holds a stream packet that comes before its call's reply until the
// reply came, and drops it if the call failed (a failed call has no
// stream). Everything else passes as it comes.
//
// It also refuses what go-libvirt would choke on: a packet shorter than
// a header (go-libvirt panics) or longer than libvirt allows (go-libvirt
// would allocate up to 4 GiB for it), and more held stream data than
// maxHeld. Reading then ends, go-libvirt gives up the connection, and
// broken tells why.
//
// Read may be called by one goroutine at a time (go-libvirt's reader);
// Write by any.
type replyFirst struct {
	net.Conn
	r *bufio.Reader

	mu sync.Mutex
	// waiting holds, for each call sent and not yet answered, the stream
	// packets that came before its reply; held counts their bytes.
	waiting map[uint32][][]byte
	held    int
	// sent follows what go-libvirt sends, to learn the calls' serials.
	sent packetScanner
	// bad is the protocol error that ended reading, or why the
	// connection was given up (giveUp).
	bad error
	// handshake gives the connection up unless shook stops it first;
	// expired says it did.
	handshake *time.Timer
	expired   bool

	// out is what Read returns next; then through bytes of the packet
	// being read pass from r unbuffered; err ends reading after them.
	out     []byte
	through int
	err     error
}

// newReplyFirst wraps c, the connection to a host.
func newReplyFirst(c net.Conn) *replyFirst {
	return &replyFirst{Conn: c, r: bufio.NewReader(c), waiting: map[uint32][][]byte{}}
}

// Write notes the serial of each call in p before sending it, so that no
// packet of the call can come back before replyFirst knows of it.
func (c *replyFirst) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.sent.scan(p, func(h header) {
		if h.call() {
			c.waiting[h.serial] = nil
		}
	})
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Read returns what the host sent, replies before their streams' packets.
func (c *replyFirst) Read(p []byte) (int, error) {
	for len(c.out) == 0 && c.through == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.err = c.next()
	}
	if len(c.out) > 0 {
		n := copy(p, c.out)
		c.out = c.out[n:]
		return n, nil
	}
	n, err := c.r.Read(p[:min(len(p), c.through)])
	c.through -= n
	if err != nil {
		c.through, c.err = 0, err
	}
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// broken returns the protocol error that ended the connection, or nil
// (also for no connection).
func (c *replyFirst) broken() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}

// giveUp closes the connection, which ends go-libvirt's reading and
// with it every call waiting for a reply; err says why, unless the
// connection broke already.
func (c *replyFirst) giveUp(err error) {
	c.mu.Lock()
	if c.bad == nil {
		c.bad = err
	}
	c.mu.Unlock()
	c.Conn.Close()
}

// bound gives the connection up if shook is not called within d.
func (c *replyFirst) bound(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handshake = time.AfterFunc(d, func() {
		c.mu.Lock()
		if c.handshake == nil {
			c.mu.Unlock()
			return // shook first
		}
		c.expired = true
		c.mu.Unlock()
		c.giveUp(fmt.Errorf("%w: libvirt's handshake did not end within %v", errSilent, d))
	})
}

// shook stops bound's timer; false if it gave the connection up
// already.
func (c *replyFirst) shook() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handshake != nil {
		c.handshake.Stop()
		c.handshake = nil
	}
	return !c.expired
}

// next reads the next packet's header and decides what Read returns: the
// packet as it comes (out and through), a reply with the stream packets
// held for it (out), or, for a stream packet whose reply is yet to come,
// nothing yet.
func (c *replyFirst) next() error {
	hdr := make([]byte, packetHeader)
	if _, err := io.ReadFull(c.r, hdr); err != nil {
		return err
	}
	h := parseHeader(hdr)
	if h.length < packetHeader || h.length > maxPacket {
		if line, ok := textLine(hdr); ok {
			return c.refuse(fmt.Errorf("%w: it sent %q", errBadPacket, line))
		}
		return c.refuse(fmt.Errorf("%w: a packet of %d bytes (libvirt's have %d to %d)", errBadPacket, h.length, packetHeader, maxPacket))
	}
	c.mu.Lock()
	held, waiting := c.waiting[h.serial]
	hold := waiting && h.stream()                    // its reply is yet to come
	release := waiting && h.reply() && len(held) > 0 // the reply, and what waits for it
	if waiting && h.reply() && !release {
		delete(c.waiting, h.serial)
	}
	full := hold && c.held+int(h.length) > maxHeld
	c.mu.Unlock()
	if full {
		return c.refuse(fmt.Errorf("%w: more than %d MiB of a stream came before the reply to its call", errBadPacket, maxHeld>>20))
	}
	if !hold && !release {
		c.out, c.through = hdr, int(h.length)-packetHeader
		return nil
	}
	pkt := make([]byte, h.length)
	copy(pkt, hdr)
	if _, err := io.ReadFull(c.r, pkt[packetHeader:]); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.stream() {
		c.waiting[h.serial] = append(held, pkt)
		c.held += len(pkt)
		return nil
	}
	delete(c.waiting, h.serial)
	c.out = pkt
	for _, s := range held {
		c.held -= len(s)
		if h.status != statusError {
			c.out = append(c.out, s...)
		}
	}
	return nil
}

// textLine returns b up to its first line end, when b starts with text
// (another protocol: an HTTP proxy answers "HTTP/1.1 ...").
func textLine(b []byte) (string, bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	for _, ch := range line[:min(len(line), 4)] {
		if ch < ' ' || ch > '~' {
			return "", false
		}
	}
	return string(line), len(line) >= 4
}

// refuse records err as why the connection ended and returns it.
func (c *replyFirst) refuse(err error) error {
	c.mu.Lock()
	c.bad = err
	c.mu.Unlock()
	return err
}

// packetScanner follows a stream of packets written in pieces of any
// size and reports the header of each.
type packetScanner struct {
	hdr  [packetHeader]byte
	have int // bytes of hdr filled
	skip int // payload bytes of the current packet still to come
}

// scan consumes p, calling found for each packet header completed.
func (s *packetScanner) scan(p []byte, found func(header)) {
	for len(p) > 0 {
		if s.skip > 0 {
			n := min(s.skip, len(p))
			s.skip, p = s.skip-n, p[n:]
			continue
		}
		n := copy(s.hdr[s.have:], p)
		s.have, p = s.have+n, p[n:]
		if s.have < packetHeader {
			return
		}
		h := parseHeader(s.hdr[:])
		found(h)
		s.have, s.skip = 0, max(int(h.length)-packetHeader, 0)
	}
}
