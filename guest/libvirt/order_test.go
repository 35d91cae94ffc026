package libvirt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"testing"
)

// remoteProgram is libvirt's REMOTE_PROGRAM, the program of its calls.
const remoteProgram = 0x20008086

// typeMessage is an event's packet type.
const typeMessage = 2

// packet is one packet of libvirt's protocol.
func packet(proc, typ, serial, status uint32, payload []byte) []byte {
	b := make([]byte, packetHeader+len(payload))
	be := binary.BigEndian
	be.PutUint32(b, uint32(len(b)))
	be.PutUint32(b[4:], remoteProgram)
	be.PutUint32(b[8:], 1)
	be.PutUint32(b[12:], proc)
	be.PutUint32(b[16:], typ)
	be.PutUint32(b[20:], serial)
	be.PutUint32(b[24:], status)
	copy(b[packetHeader:], payload)
	return b
}

// Packets of the call serial 7 and others, as a host sends them.
var (
	reply7   = packet(209, typeReply, 7, 0, nil)
	failed7  = packet(209, typeReply, 7, statusError, []byte("error"))
	data7    = packet(209, typeStream, 7, 2, []byte("hello"))
	end7     = packet(209, typeStream, 7, 2, nil) // libvirtd's end of a download
	finish7  = packet(209, typeReply, 7, 0, []byte("finished"))
	reply8   = packet(157, typeReply, 8, 0, []byte("version!"))
	event    = packet(207, typeMessage, 0, 0, []byte("lifecycle"))
	stream5  = packet(201, typeStream, 5, 2, []byte("not ours"))
	bigData7 = packet(209, typeStream, 7, 2, make([]byte, 16<<20))
)

// hostBytes is a connection on which the host sends b and takes what is
// written.
type hostBytes struct {
	net.Conn // nil: replyFirst uses only Read and Write
	r        io.Reader
}

func (h *hostBytes) Read(p []byte) (int, error)  { return h.r.Read(p) }
func (h *hostBytes) Write(p []byte) (int, error) { return len(p), nil }

// readThrough makes the calls (written in pieces of 5 bytes, as a
// buffered writer may cut them) on a replyFirst over a host that sends
// host, and returns what go-libvirt reads.
func readThrough(calls []uint32, host []byte) (*replyFirst, []byte, error) {
	c := newReplyFirst(&hostBytes{r: bytes.NewReader(host)})
	for _, s := range calls {
		for p := range slices.Chunk(packet(209, typeCall, s, 0, []byte("args")), 5) {
			c.Write(p)
		}
	}
	out, err := io.ReadAll(c)
	return c, out, err
}

// TestReplyFirstOrder: a stream packet that comes before its call's
// reply comes after it, and nothing else moves.
func TestReplyFirstOrder(t *testing.T) {
	for _, tc := range []struct {
		name       string
		calls      []uint32
		host, want [][]byte
	}{
		{"the stream and its end before the reply", []uint32{7},
			[][]byte{data7, end7, reply7}, [][]byte{reply7, data7, end7}},
		{"in order", []uint32{7},
			[][]byte{reply7, data7, end7}, [][]byte{reply7, data7, end7}},
		{"a reply to another call and an event pass", []uint32{7, 8},
			[][]byte{data7, reply8, event, reply7, end7}, [][]byte{reply8, event, reply7, data7, end7}},
		{"a failed call has no stream", []uint32{7, 8},
			[][]byte{data7, failed7, reply8}, [][]byte{failed7, reply8}},
		{"the stream of a call not made passes", nil,
			[][]byte{stream5, data7, reply7}, [][]byte{stream5, data7, reply7}},
		{"the reply that ends a two-way stream passes", []uint32{7},
			[][]byte{data7, reply7, data7, finish7}, [][]byte{reply7, data7, data7, finish7}},
		{"a stream whose reply never comes stays held", []uint32{7, 8},
			[][]byte{data7, reply8}, [][]byte{reply8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, out, err := readThrough(tc.calls, bytes.Join(tc.host, nil))
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.Join(tc.want, nil); !bytes.Equal(out, want) {
				t.Errorf("read\n%q\nwant\n%q", out, want)
			}
			checkHeld(t, c)
			for _, p := range tc.host {
				if h := parseHeader(p); h.reply() && c.waiting[h.serial] != nil {
					t.Errorf("call %d answered, yet packets are held for it", h.serial)
				}
			}
		})
	}
}

// TestReplyFirstRefuses: a packet libvirt cannot have sent, or more
// stream data before a reply than any host sends, ends reading with one
// error saying what; nothing panics and nothing is allocated for a
// length that cannot be.
func TestReplyFirstRefuses(t *testing.T) {
	length := func(n uint32) []byte {
		b := packet(1, typeReply, 1, 0, nil)
		binary.BigEndian.PutUint32(b, n)
		return b
	}
	// streamHeader starts a stream packet of call 7 of n bytes.
	streamHeader := func(n uint32) []byte {
		b := length(n)[:packetHeader]
		binary.BigEndian.PutUint32(b[16:], typeStream)
		binary.BigEndian.PutUint32(b[20:], 7)
		return b
	}
	for _, tc := range []struct {
		name string
		host []byte
		want string
	}{
		{"an empty packet", length(0), "the host does not speak libvirt's protocol: a packet of 0 bytes (libvirt's have 28 to 33554436)"},
		{"a packet shorter than its header", length(27), "the host does not speak libvirt's protocol: a packet of 27 bytes (libvirt's have 28 to 33554436)"},
		{"a packet longer than libvirt's", length(maxPacket + 1), "the host does not speak libvirt's protocol: a packet of 33554437 bytes (libvirt's have 28 to 33554436)"},
		{"a 4 GiB packet", length(1<<32 - 1), "the host does not speak libvirt's protocol: a packet of 4294967295 bytes (libvirt's have 28 to 33554436)"},
		{"another protocol", []byte("HTTP/1.1 503 Service Unavailable\r\n\r\n"),
			`the host does not speak libvirt's protocol: it sent "HTTP/1.1 503 Service Unavail"`},
		{"too much stream before its reply", bytes.Join([][]byte{bigData7, bigData7, reply7}, nil),
			"the host does not speak libvirt's protocol: more than 32 MiB of a stream came before the reply to its call"},
		{"the header of a stream packet too long to hold", bytes.Join([][]byte{data7, streamHeader(maxHeld - uint32(len(data7)) + 1)}, nil),
			"the host does not speak libvirt's protocol: more than 32 MiB of a stream came before the reply to its call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, out, err := readThrough([]uint32{7}, append(slices.Clone(reply8), tc.host...))
			if !errors.Is(err, errBadPacket) || err.Error() != tc.want {
				t.Fatalf("read: %v, want %s", err, tc.want)
			}
			if !bytes.Equal(out, reply8) {
				t.Errorf("read %q before the error, want only the packet before it", out)
			}
			if c.broken() != err {
				t.Errorf("broken() = %v, want %v", c.broken(), err)
			}
			if _, err := c.Read(make([]byte, 1)); err != c.broken() {
				t.Errorf("read after the error: %v", err)
			}
		})
	}
}

// TestReplyFirstHoldsUpToMax: stream packets that fill maxHeld exactly
// before their call's reply are held, not refused: reading ends only
// because the host's bytes do, in the middle of the last packet.
func TestReplyFirstHoldsUpToMax(t *testing.T) {
	hdr := slices.Clone(data7[:packetHeader])
	binary.BigEndian.PutUint32(hdr, maxHeld-uint32(len(data7)))
	c, out, err := readThrough([]uint32{7}, bytes.Join([][]byte{data7, hdr}, nil))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read: %v, want the host's bytes to end", err)
	}
	if len(out) != 0 || c.broken() != nil {
		t.Errorf("read %q, broken %v: want nothing read and nothing refused", out, c.broken())
	}
}

// checkHeld checks c's count of the bytes it holds.
func checkHeld(t *testing.T, c *replyFirst) {
	t.Helper()
	n := 0
	for _, pkts := range c.waiting {
		for _, p := range pkts {
			n += len(p)
		}
	}
	if n != c.held || n > maxHeld {
		t.Errorf("holds %d bytes, counts %d (at most %d)", n, c.held, maxHeld)
	}
}

// FuzzReplyFirst reads what a host sends through replyFirst, after calls
// of serials 0-7: nothing panics, what comes out is whole packets the host
// sent (but for the tail of a cut one), no more of each than it sent, all
// of them but the streams of calls, and a call's stream never before its
// reply; what the host sends wrong ends reading with errBadPacket.
func FuzzReplyFirst(f *testing.F) {
	f.Add([]byte{7}, bytes.Join([][]byte{data7, end7, reply7}, nil))
	f.Add([]byte{7, 0}, bytes.Join([][]byte{data7, reply8, event, failed7, stream5}, nil))
	f.Add([]byte{}, append(slices.Clone(reply7), 0, 0, 0, 4))
	f.Fuzz(func(t *testing.T, calls, host []byte) {
		serials := make([]uint32, len(calls))
		called := map[uint32]bool{}
		for i, s := range calls {
			serials[i] = uint32(s % 8)
			called[serials[i]] = true
		}
		c, out, err := readThrough(serials, host)
		if err != nil && !errors.Is(err, errBadPacket) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read: %v", err)
		}
		checkHeld(t, c)
		sent, rest := splitPackets(host)
		if errors.Is(err, errBadPacket) != (len(rest) >= packetHeader && (!valid(rest) || holdsTooMuch(called, sent, rest))) {
			t.Errorf("read: %v, with %d bytes after the last whole packet", err, len(rest))
		}
		got, cut := splitPackets(out)
		if len(cut) > 0 && !bytes.HasPrefix(rest, cut) {
			t.Errorf("the tail read, %q, is not the tail sent, %q", cut, rest)
		}
		left := map[string]int{}
		for _, p := range sent {
			left[string(p)]++
		}
		answered := map[uint32]bool{}
		for _, p := range got {
			if left[string(p)]--; left[string(p)] < 0 {
				t.Fatalf("read %q more often than the host sent it", p)
			}
			switch h := parseHeader(p); {
			case h.reply():
				answered[h.serial] = true
			case h.stream() && called[h.serial] && !answered[h.serial]:
				t.Fatalf("read a packet of call %d's stream before its reply", h.serial)
			}
		}
		for _, p := range sent {
			if h := parseHeader(p); left[string(p)] > 0 && !(h.stream() && called[h.serial]) {
				t.Fatalf("lost %q", p)
			}
		}
	})
}

// holdsTooMuch reports whether replyFirst, reading the packets sent
// after calls of the serials called, then the header rest starts with,
// would have to hold more than maxHeld bytes of stream before the calls'
// replies: it refuses the packet that would cross the bound on its
// header, before its payload comes. Precondition: len(rest) >=
// packetHeader.
func holdsTooMuch(called map[uint32]bool, sent [][]byte, rest []byte) bool {
	waiting := maps.Clone(called)
	heldFor := map[uint32]int{}
	held := 0
	for _, p := range append(slices.Clone(sent), rest) {
		switch h := parseHeader(p); {
		case !waiting[h.serial]:
		case h.stream():
			if held+int(h.length) > maxHeld {
				return true
			}
			heldFor[h.serial] += int(h.length)
			held += int(h.length)
		case h.reply():
			held -= heldFor[h.serial]
			delete(heldFor, h.serial)
			delete(waiting, h.serial)
		}
	}
	return false
}

// splitPackets cuts b into packets at their lengths; rest is what follows
// the last whole one.
func splitPackets(b []byte) (pkts [][]byte, rest []byte) {
	for len(b) >= packetHeader && valid(b) && int(parseHeader(b).length) <= len(b) {
		n := parseHeader(b).length
		pkts, b = append(pkts, b[:n]), b[n:]
	}
	return pkts, b
}

// valid reports whether the packet b starts with has a length libvirt
// allows. Precondition: len(b) >= packetHeader.
func valid(b []byte) bool {
	n := parseHeader(b).length
	return n >= packetHeader && n <= maxPacket
}
