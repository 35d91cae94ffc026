package net_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// hostRig is a virtio-net device on a real tap in a private network
// namespace: tap and veth ve0 are ports of bridge br0, and the test
// plays the host on ve0's peer ve1 with a packet socket.
type hostRig struct {
	*rig
	ns   *netnstest.NS
	sock *netnstest.PacketSocket
}

func newHostRig(t *testing.T) *hostRig {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	ns.Veth(t, "ve0", "ve1", "br0")
	var tap *netdev.Tap
	err := ns.Do(func() error {
		var err error
		if tap, err = netdev.CreateTap("pdnet%d"); err != nil {
			return err
		}
		return netdev.AddToBridge(tap.Name(), "br0")
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	r := newRig(t, tap, vnet.Offered|virtio.FeatureVersion1|virtio.FeatureEventIdx|virtio.FeatureIndirectDesc)
	return &hostRig{rig: r, ns: ns, sock: ns.OpenPacketSocket(t, "ve1", 10000)}
}

// receiveMatching posts buffers and returns the first received frame
// (header stripped) for which match is true; other traffic (IPv6
// neighbour discovery and the like) is skipped.
func (h *hostRig) receiveMatching(t *testing.T, match func([]byte) bool) []byte {
	t.Helper()
	q := h.drv.Queues[0]
	for i := 0; i < 100; i++ {
		a := h.post(t, 1, 2048)
		u, err := q.WaitUsed()
		if err != nil {
			t.Fatal(err)
		}
		got := h.mem.Read(a[0], uint64(u.Len))
		if binary.LittleEndian.Uint16(got[10:]) != 1 {
			t.Fatalf("num_buffers %d for a 2 KiB buffer", binary.LittleEndian.Uint16(got[10:]))
		}
		if f := got[vnet.HdrLen:]; match(f) {
			return f
		}
	}
	t.Fatal("the frame never arrived")
	return nil
}

func TestHostTapFrames(t *testing.T) {
	h := newHostRig(t)
	host := netdev.GenerateMAC("host side")

	// Host -> guest.
	in := ethFrame(600, 7)
	copy(in[6:], host[:])
	if err := h.sock.Send(in); err != nil {
		t.Fatal(err)
	}
	got := h.receiveMatching(t, func(f []byte) bool { return bytes.Equal(f[6:12], host[:]) })
	if !bytes.Equal(got, in) {
		t.Fatalf("guest received %d bytes, want the %d-byte frame", len(got), len(in))
	}

	// Guest -> host.
	out := ethFrame(1000, 11)
	copy(out, host[:])
	copy(out[6:], guestMAC[:])
	h.send(t, hdr(0, 0, 0), out)
	rcv, err := h.sock.Recv(func(f []byte) bool { return bytes.Equal(f[6:12], guestMAC[:]) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rcv, out) {
		t.Fatalf("host received %d bytes, want the %d-byte frame", len(rcv), len(out))
	}
	if s := h.dev.Stats(); s.TxFrames != 1 || s.RxFrames < 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHostTapTSO transmits one 20000-byte TCP segment with a partial
// checksum (VIRTIO_NET_HDR_GSO_TCPV4): the host side receives all of its
// payload, as one GSO frame or as segments.
func TestHostTapTSO(t *testing.T) {
	h := newHostRig(t)
	host := netdev.GenerateMAC("tso host")
	const payload = 20000
	f := make([]byte, 14+20+20+payload)
	copy(f, host[:])
	copy(f[6:], guestMAC[:])
	f[12], f[13] = 0x08, 0x00
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+payload))
	ip[8], ip[9] = 64, 6
	copy(ip[12:], []byte{10, 0, 0, 2})
	copy(ip[16:], []byte{10, 0, 0, 1})
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5001)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12], tcp[13] = 5<<4, 0x18 // header length, PSH|ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	for i := 54; i < len(f); i++ {
		f[i] = byte(i * 13)
	}
	// The partial checksum: the pseudo-header sum, not inverted.
	var ph [12]byte
	copy(ph[0:], ip[12:20])
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:], uint16(20+payload))
	binary.BigEndian.PutUint16(tcp[16:], ^ipChecksum(ph[:]))
	hd := make([]byte, vnet.HdrLen)
	hd[0], hd[1] = 1, 1 // NEEDS_CSUM, GSO_TCPV4
	binary.LittleEndian.PutUint16(hd[2:], 54)
	binary.LittleEndian.PutUint16(hd[4:], 1448)
	binary.LittleEndian.PutUint16(hd[6:], 34)
	binary.LittleEndian.PutUint16(hd[8:], 16)
	h.send(t, hd, f)
	var got []byte
	for len(got) < payload {
		seg, err := h.sock.Recv(func(g []byte) bool {
			return len(g) > 54 && bytes.Equal(g[6:12], guestMAC[:]) && g[23] == 6 && binary.BigEndian.Uint16(g[34:]) == 40000
		})
		if err != nil {
			t.Fatalf("after %d payload bytes: %v", len(got), err)
		}
		got = append(got, seg[54:]...)
	}
	if !bytes.Equal(got, f[54:]) {
		t.Fatal("the host received a different TCP payload")
	}
	if s := h.dev.Stats(); s.TxDropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// BenchmarkHostTx transmits 1514-byte frames from the Go driver through a
// real tap onto a bridge, one kick per 32 frames: the device's per-frame
// cost on the transmit path.
func BenchmarkHostTx(b *testing.B) {
	ns := netnstest.New(b)
	ns.Bridge(b, "br0")
	var tap *netdev.Tap
	if err := ns.Do(func() error {
		var err error
		if tap, err = netdev.CreateTap("pdbench%d"); err != nil {
			return err
		}
		return netdev.AddToBridge(tap.Name(), "br0")
	}); err != nil {
		b.Fatal(err)
	}
	defer tap.Close()
	r := newRig(b, tap, vnet.Offered|virtio.FeatureVersion1|virtio.FeatureEventIdx|virtio.FeatureIndirectDesc)
	q := r.drv.Queues[1]
	h := r.mem.Put(hdr(0, 0, 0))
	f := ethFrame(1514, 1)
	nobody := netdev.GenerateMAC("nobody")
	copy(f, nobody[:])
	fa := r.mem.Put(f)
	b.SetBytes(1514)
	b.ReportAllocs()
	sent := 0
	for sent < b.N {
		batch := min(32, b.N-sent)
		for i := 0; i < batch; i++ {
			if _, err := q.Add([]virtiotest.Buf{{Addr: h, Len: vnet.HdrLen}, {Addr: fa, Len: 1514}}); err != nil {
				b.Fatal(err)
			}
		}
		r.drv.Kick(1)
		for i := 0; i < batch; i++ {
			if _, err := q.WaitUsed(); err != nil {
				b.Fatal(err)
			}
		}
		sent += batch
	}
}
