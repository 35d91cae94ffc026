package virtio

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzMem is guest memory for the fuzz target: one mapping at address 0.
type fuzzMem struct{ b []byte }

func (m *fuzzMem) Slice(gpa, n uint64) ([]byte, error) {
	size := uint64(len(m.b))
	if gpa >= size || n > size-gpa {
		return nil, fmt.Errorf("[%#x, +%#x) is not RAM", gpa, n)
	}
	return m.b[gpa : gpa+n : gpa+n], nil
}

// Fuzz layout: the input is copied to guest memory at fuzzData; the
// descriptor table (8 entries) and the available ring come from its first
// bytes, so descriptors can point into the rest of the input (indirect
// tables, buffers) or anywhere else.
const (
	fuzzMemSize = 1 << 16
	fuzzDesc    = 0x0
	fuzzAvail   = 0x80
	fuzzUsed    = 0x100
	fuzzData    = 0x0
	fuzzQSize   = 8
)

func desc(addr uint64, length uint32, flags, next uint16) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	return b
}

// seed builds an input from descriptors and the available ring's heads.
func seed(descs [][]byte, heads []uint16, extra ...[]byte) []byte {
	b := make([]byte, 0x200)
	for i, d := range descs {
		copy(b[16*i:], d)
	}
	binary.LittleEndian.PutUint16(b[fuzzAvail+2:], uint16(len(heads)))
	for i, h := range heads {
		binary.LittleEndian.PutUint16(b[fuzzAvail+4+2*i:], h)
	}
	for _, e := range extra {
		b = append(b, e...)
	}
	return b
}

// FuzzQueue feeds arbitrary descriptor tables, available rings and
// indirect tables to Pop: it must return chains or errors, never panic or
// loop, and every buffer it returns must lie in guest memory.
func FuzzQueue(f *testing.F) {
	f.Add(seed([][]byte{desc(0x1000, 16, descFlagNext, 1), desc(0x2000, 1, descFlagWrite, 0)}, []uint16{0}))
	f.Add(seed([][]byte{desc(0x200, 32, descFlagIndirect, 0)}, []uint16{0},
		desc(0x1000, 16, descFlagNext, 1), desc(0x2000, 512, descFlagWrite, 0)))
	f.Add(seed([][]byte{desc(0x1000, 4, descFlagNext, 1), desc(0x1000, 4, descFlagNext, 0)}, []uint16{0, 1, 0}))
	f.Add(seed([][]byte{desc(0xffff_ffff_ffff_fff0, 32, 0, 0)}, []uint16{7, 0}))
	f.Add(seed(nil, []uint16{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := unix.Mmap(-1, 0, fuzzMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(b)
		copy(b[fuzzData:], data)
		mem := &fuzzMem{b: b}
		q, err := newQueue(0, fuzzQSize, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer q.close()
		features := FeatureIndirectDesc | FeatureEventIdx
		if len(data) > 0 && data[len(data)-1]&1 == 1 {
			features = 0
		}
		cfg := QueueConfig{Size: fuzzQSize, Desc: fuzzDesc, Driver: fuzzAvail, Device: fuzzUsed, Ready: true}
		if err := q.activate(mem, cfg, features); err != nil {
			t.Fatal(err)
		}
		var c Chain
		for i := 0; i < 2*fuzzQSize; i++ {
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				return
			}
			if n := len(c.Readable) + len(c.Writable); n > fuzzQSize+MaxIndirect {
				t.Fatalf("chain of %d buffers", n)
			}
			var total uint64
			for _, s := range append(append([][]byte(nil), c.Readable...), c.Writable...) {
				if len(s) == 0 {
					t.Fatal("empty buffer in a chain")
				}
				total += uint64(len(s))
			}
			if total != c.ReadLen()+c.WriteLen() {
				t.Fatalf("lengths %d+%d, buffers %d", c.ReadLen(), c.WriteLen(), total)
			}
			q.Push(c.Head, uint32(c.WriteLen()))
			q.needInterrupt()
			q.EnableNotifications()
			q.DisableNotifications()
		}
	})
}
