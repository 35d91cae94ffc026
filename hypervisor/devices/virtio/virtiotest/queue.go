package virtiotest

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

// Queue is the driver's side of one split virtqueue.
type Queue struct {
	d                 *Driver
	Index             int
	Size              uint16
	Desc, Avail, Used uint64
	vector            uint16
	notifyOff         uint64

	free     []uint16            // free descriptor indices (a stack)
	chains   map[uint16][]uint16 // head -> descriptors it holds
	availIdx uint16
	lastUsed uint16
}

// Buf is one buffer of a chain: Len bytes at guest address Addr,
// device-writable when Write is set.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Used is one used-ring element.
type Used struct {
	ID  uint16
	Len uint32
}

// Descriptor flags.
const (
	FlagNext     = 1
	FlagWrite    = 2
	FlagIndirect = 4
)

// PutDesc writes descriptor i of the table at table.
func (q *Queue) PutDesc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	b := q.d.Mem.Bytes(table+16*uint64(i), 16)
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// Add lays bufs out as a chain of direct descriptors and makes it
// available. It returns the chain's head.
func (q *Queue) Add(bufs []Buf) (uint16, error) {
	head, err := q.chain(bufs)
	if err != nil {
		return 0, err
	}
	q.Publish(head)
	return head, nil
}

// chain writes bufs as a chain of direct descriptors and returns its head.
func (q *Queue) chain(bufs []Buf) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > len(q.free) {
		return 0, fmt.Errorf("virtiotest: queue %d: %d buffers, %d free descriptors", q.Index, len(bufs), len(q.free))
	}
	ids := q.take(len(bufs))
	for i, b := range bufs {
		var flags, next uint16
		if i+1 < len(bufs) {
			flags, next = FlagNext, ids[i+1]
		}
		if b.Write {
			flags |= FlagWrite
		}
		q.PutDesc(q.Desc, ids[i], b.Addr, b.Len, flags, next)
	}
	q.chains[ids[0]] = ids
	return ids[0], nil
}

// AddIndirect lays bufs out in an indirect table referenced by one
// descriptor and makes it available.
func (q *Queue) AddIndirect(bufs []Buf) (uint16, error) {
	head, err := q.indirect(bufs)
	if err != nil {
		return 0, err
	}
	q.Publish(head)
	return head, nil
}

// indirect writes bufs as an indirect table referenced by one descriptor
// and returns that descriptor.
func (q *Queue) indirect(bufs []Buf) (uint16, error) {
	if len(q.free) == 0 {
		return 0, fmt.Errorf("virtiotest: queue %d: no free descriptor", q.Index)
	}
	table := q.d.Mem.Alloc(16*uint64(len(bufs)), 16)
	for i, b := range bufs {
		var flags uint16
		if i+1 < len(bufs) {
			flags = FlagNext
		}
		if b.Write {
			flags |= FlagWrite
		}
		q.PutDesc(table, uint16(i), b.Addr, b.Len, flags, uint16(i+1))
	}
	ids := q.take(1)
	q.PutDesc(q.Desc, ids[0], table, uint32(16*len(bufs)), FlagIndirect, 0)
	q.chains[ids[0]] = ids
	return ids[0], nil
}

// Stage lays bufs out as a chain of direct descriptors and puts it in
// the available ring, but leaves the ring's index for someone else to
// publish (a guest program, in the machine's tests): it returns the
// address of the index and the value that makes the chain available.
func (q *Queue) Stage(bufs []Buf) (head uint16, idxAddr uint64, idx uint16, err error) {
	if head, err = q.chain(bufs); err != nil {
		return 0, 0, 0, err
	}
	idxAddr, idx = q.stage(head)
	return head, idxAddr, idx, nil
}

// StageIndirect is Stage with bufs in an indirect table, as AddIndirect.
func (q *Queue) StageIndirect(bufs []Buf) (head uint16, idxAddr uint64, idx uint16, err error) {
	if head, err = q.indirect(bufs); err != nil {
		return 0, 0, 0, err
	}
	idxAddr, idx = q.stage(head)
	return head, idxAddr, idx, nil
}

// stage puts head in the available ring without publishing the index,
// and returns the index's address and the value that publishes it.
func (q *Queue) stage(head uint16) (uint64, uint16) {
	q.d.Mem.PutU16(q.Avail+4+2*uint64(q.availIdx%q.Size), head)
	q.availIdx++
	return q.Avail + 2, q.availIdx
}

// take pops n free descriptors.
func (q *Queue) take(n int) []uint16 {
	ids := append([]uint16(nil), q.free[len(q.free)-n:]...)
	q.free = q.free[:len(q.free)-n]
	return ids
}

// Publish puts head in the available ring and advances its index.
func (q *Queue) Publish(head uint16) {
	slot := q.Avail + 4 + 2*uint64(q.availIdx%q.Size)
	q.d.Mem.PutU16(slot, head)
	q.availIdx++
	virtio.StoreIndex(q.d.Mem.Bytes(q.Avail+2, 2), q.availIdx)
}

// SetAvailIdx sets the available index directly (for malformed-ring tests).
func (q *Queue) SetAvailIdx(v uint16) {
	q.availIdx = v
	virtio.StoreIndex(q.d.Mem.Bytes(q.Avail+2, 2), v)
}

// PopUsed takes the next used element, if the device has returned one,
// and frees its descriptors.
func (q *Queue) PopUsed() (Used, bool) {
	idx := virtio.LoadIndex(q.d.Mem.Bytes(q.Used+2, 2))
	if idx == q.lastUsed {
		return Used{}, false
	}
	e := q.Used + 4 + 8*uint64(q.lastUsed%q.Size)
	u := Used{ID: uint16(q.d.Mem.U32(e)), Len: q.d.Mem.U32(e + 4)}
	q.lastUsed++
	if ids, ok := q.chains[u.ID]; ok {
		q.free = append(q.free, ids...)
		delete(q.chains, u.ID)
	}
	return u, true
}

// UsedIdx reads the device's used index.
func (q *Queue) UsedIdx() uint16 { return virtio.LoadIndex(q.d.Mem.Bytes(q.Used+2, 2)) }

// WaitUsed returns the next used element, waiting for the queue's
// interrupts as long as needed (up to the driver's timeout).
func (q *Queue) WaitUsed() (Used, error) {
	deadline := time.Now().Add(q.d.Timeout)
	for {
		if u, ok := q.PopUsed(); ok {
			return u, nil
		}
		if time.Now().After(deadline) {
			return Used{}, fmt.Errorf("virtiotest: queue %d: nothing used within %v", q.Index, q.d.Timeout)
		}
		if q.d.Features&virtio.FeatureEventIdx != 0 {
			// Ask for an interrupt at the next used chain, as Linux's
			// virtqueue_enable_cb does, then look again.
			q.SetUsedEvent(q.lastUsed)
			if u, ok := q.PopUsed(); ok {
				return u, nil
			}
		}
		if err := q.d.WaitInterrupt(q.Index); err != nil {
			if u, ok := q.PopUsed(); ok {
				return u, nil
			}
			return Used{}, err
		}
	}
}

// SetNoInterrupt sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT.
func (q *Queue) SetNoInterrupt(on bool) {
	var v uint16
	if on {
		v = 1
	}
	virtio.StoreIndex(q.d.Mem.Bytes(q.Avail, 2), v)
}

// SetUsedEvent sets used_event (EVENT_IDX).
func (q *Queue) SetUsedEvent(v uint16) {
	virtio.StoreIndex(q.d.Mem.Bytes(q.Avail+4+2*uint64(q.Size), 2), v)
}

// UsedFlags reads the device's used-ring flags (VIRTQ_USED_F_NO_NOTIFY).
func (q *Queue) UsedFlags() uint16 { return virtio.LoadIndex(q.d.Mem.Bytes(q.Used, 2)) }

// AvailEvent reads avail_event (EVENT_IDX).
func (q *Queue) AvailEvent() uint16 {
	return virtio.LoadIndex(q.d.Mem.Bytes(q.Used+4+8*uint64(q.Size), 2))
}

// Vector is the queue's MSI-X vector (NoVector with INTx).
func (q *Queue) Vector() int { return int(q.vector) }
