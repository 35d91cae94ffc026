package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Split virtqueue layout (virtio v1.2 section 2.7).
const (
	// MaxQueueSize is the largest split queue.
	MaxQueueSize = 32768
	// MaxIndirect bounds the descriptors of one indirect table, as QEMU
	// does: no driver needs more, and it bounds the work one chain costs.
	MaxIndirect = 1024

	descSize = 16

	descFlagNext     = 1
	descFlagWrite    = 2
	descFlagIndirect = 4

	availFlagNoInterrupt = 1
	usedFlagNoNotify     = 1

	// Offsets in the rings.
	ringFlags = 0
	ringIdx   = 2
	ringStart = 4
)

// ErrChain is wrapped by every error about a malformed descriptor chain
// or ring, for errors.Is.
var ErrChain = errors.New("malformed virtqueue")

// QueueConfig is what the driver programs for one queue through the
// transport before it sets DRIVER_OK.
type QueueConfig struct {
	Size   uint16
	Desc   uint64 // descriptor table
	Driver uint64 // available ("driver") ring
	Device uint64 // used ("device") ring
	Ready  bool
}

// Queue is one split virtqueue as the device sees it. The transport
// creates it and maps its rings when the driver sets DRIVER_OK; the device
// then takes chains with Pop, returns them with Push and interrupts the
// driver with Notify.
//
// Pop, Push and the notification methods are safe for concurrent use, so
// a device may complete requests from several goroutines; taking chains
// is normally done by one goroutine per queue.
type Queue struct {
	index   int
	maxSize uint16
	kick    *EventFD // the guest's notifications for this queue
	signal  func()   // injects this queue's interrupt (set by the transport)
	stopped atomic.Bool
	// stopCh is closed by Stop (stopClosed) and made anew by restart:
	// Stopping.
	stopMu     sync.Mutex
	stopCh     chan struct{}
	stopClosed bool
	// Counters since the queue was created, for WriteDebug: the driver's
	// notifications the device woke for, and the interrupts it sent.
	wakeups, interrupts atomic.Uint64

	mu       sync.Mutex
	mem      GuestMemory
	size     uint16
	eventIdx bool
	indirect bool
	desc     []byte // size descriptors
	avail    []byte // flags, idx, ring[size], used_event
	used     []byte // flags, idx, ring[size], avail_event

	lastAvail uint16 // next available-ring slot to take
	usedIdx   uint16 // next used-ring slot to fill
	// lastSignal is the used index when Notify last decided whether to
	// interrupt.
	lastSignal uint16
	usedFlags  uint16
}

// newQueue returns queue index with its kick eventfd.
func newQueue(index int, maxSize uint16, signal func()) (*Queue, error) {
	kick, err := NewEventFD()
	if err != nil {
		return nil, err
	}
	return &Queue{index: index, maxSize: maxSize, kick: kick, signal: signal}, nil
}

// Index is the queue's number within its device.
func (q *Queue) Index() int { return q.index }

// Size is the queue size the driver chose.
func (q *Queue) Size() uint16 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// Kick is the eventfd the guest's notifications for this queue signal.
func (q *Queue) Kick() *EventFD { return q.kick }

// activate validates the driver's configuration and maps the rings.
// It is called by the transport when the driver sets DRIVER_OK.
func (q *Queue) activate(mem GuestMemory, cfg QueueConfig, features uint64) error {
	n := uint64(cfg.Size)
	switch {
	case cfg.Size == 0 || bits.OnesCount16(cfg.Size) != 1:
		return fmt.Errorf("queue %d: size %d is not a power of two: %w", q.index, cfg.Size, ErrChain)
	case cfg.Size > q.maxSize:
		return fmt.Errorf("queue %d: size %d is above the maximum %d: %w", q.index, cfg.Size, q.maxSize, ErrChain)
	case cfg.Desc%16 != 0:
		return fmt.Errorf("queue %d: descriptor table %#x is not 16-byte aligned: %w", q.index, cfg.Desc, ErrChain)
	case cfg.Driver%2 != 0:
		return fmt.Errorf("queue %d: available ring %#x is not 2-byte aligned: %w", q.index, cfg.Driver, ErrChain)
	case cfg.Device%4 != 0:
		return fmt.Errorf("queue %d: used ring %#x is not 4-byte aligned: %w", q.index, cfg.Device, ErrChain)
	}
	desc, err := mem.Slice(cfg.Desc, descSize*n)
	if err != nil {
		return fmt.Errorf("queue %d: descriptor table: %w: %w", q.index, ErrChain, err)
	}
	avail, err := mem.Slice(cfg.Driver, ringStart+2*n+2)
	if err != nil {
		return fmt.Errorf("queue %d: available ring: %w: %w", q.index, ErrChain, err)
	}
	used, err := mem.Slice(cfg.Device, ringStart+8*n+2)
	if err != nil {
		return fmt.Errorf("queue %d: used ring: %w: %w", q.index, ErrChain, err)
	}
	if !aligned2(avail) || !aligned2(used) {
		return fmt.Errorf("queue %d: guest memory maps the rings at odd host addresses: %w", q.index, ErrChain)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mem, q.size = mem, cfg.Size
	q.desc, q.avail, q.used = desc, avail, used
	q.eventIdx = features&FeatureEventIdx != 0
	q.indirect = features&FeatureIndirectDesc != 0
	q.lastAvail, q.usedIdx, q.lastSignal, q.usedFlags = 0, 0, 0, 0
	q.restart()
	return nil
}

// restore sets the ring positions of an activated queue (snapshots).
// Every interrupt owed for the used chains was delivered before the save
// (Quiesce), so none is owed now. The used ring's flags are the device's
// but live in guest memory: they are read back, so a NO_NOTIFY the saved
// device had set is cleared when the device next waits.
func (q *Queue) restore(lastAvail, usedIdx uint16) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lastAvail, q.usedIdx, q.lastSignal = lastAvail, usedIdx, usedIdx
	q.usedFlags = load16(q.used[ringFlags:])
}

// positions returns the ring positions (snapshots).
func (q *Queue) positions() (lastAvail, usedIdx uint16) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastAvail, q.usedIdx
}

// reset forgets the rings. Precondition: the device has stopped using
// the queue.
func (q *Queue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mem, q.size, q.desc, q.avail, q.used = nil, 0, nil, nil, nil
	q.lastAvail, q.usedIdx, q.lastSignal, q.usedFlags = 0, 0, 0, 0
	q.kick.Consume()
}

// close releases the kick eventfd.
func (q *Queue) close() error { return q.kick.Close() }

// HasAvailable reports whether the driver has made a chain available that
// Pop has not taken yet.
func (q *Queue) HasAvailable() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.desc != nil && load16(q.avail[ringIdx:]) != q.lastAvail
}

// Pop takes the next available descriptor chain into c (reusing c's
// slices). It returns false when the driver has made nothing new
// available. An error means the ring or the chain is malformed: the
// caller should fail the device (Env.Fail).
func (q *Queue) Pop(c *Chain) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.desc == nil {
		return false, fmt.Errorf("queue %d is not active: %w", q.index, ErrChain)
	}
	idx := load16(q.avail[ringIdx:])
	if idx == q.lastAvail {
		return false, nil
	}
	if pending := idx - q.lastAvail; pending > q.size {
		return false, fmt.Errorf("queue %d: available index %d is %d entries ahead of the device, more than the queue's %d: %w",
			q.index, idx, pending, q.size, ErrChain)
	}
	// load16's barrier orders this read after the index read.
	slot := ringStart + 2*int(q.lastAvail&(q.size-1))
	head := binary.LittleEndian.Uint16(q.avail[slot:])
	if err := q.walk(head, c); err != nil {
		return false, err
	}
	q.lastAvail++
	return true, nil
}

// Unpop gives back the last n chains Pop took, which the device has not
// used (a receive that did not fit): the next Pop returns them again.
func (q *Queue) Unpop(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lastAvail -= uint16(n)
}

// walk follows the chain that starts at descriptor head into c.
// Precondition: q.mu is held and the queue is active.
func (q *Queue) walk(head uint16, c *Chain) error {
	c.reset(head)
	table, n := q.desc, int(q.size)
	i, limit, count := int(head), n, 0
	inIndirect := false
	for {
		if i >= n {
			return fmt.Errorf("queue %d, chain %d: descriptor index %d is outside a table of %d: %w", q.index, head, i, n, ErrChain)
		}
		if count++; count > limit {
			return fmt.Errorf("queue %d, chain %d: more than %d descriptors (a loop?): %w", q.index, head, limit, ErrChain)
		}
		d := table[descSize*i : descSize*(i+1)]
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&descFlagIndirect != 0 {
			switch {
			case !q.indirect:
				return fmt.Errorf("queue %d, chain %d: indirect descriptor without VIRTIO_F_INDIRECT_DESC: %w", q.index, head, ErrChain)
			case inIndirect:
				return fmt.Errorf("queue %d, chain %d: indirect descriptor inside an indirect table: %w", q.index, head, ErrChain)
			case flags&descFlagNext != 0:
				return fmt.Errorf("queue %d, chain %d: descriptor %d is both indirect and chained: %w", q.index, head, i, ErrChain)
			case length == 0 || length%descSize != 0:
				return fmt.Errorf("queue %d, chain %d: indirect table of %d bytes is not a whole number of descriptors: %w", q.index, head, length, ErrChain)
			case length/descSize > MaxIndirect:
				return fmt.Errorf("queue %d, chain %d: indirect table of %d descriptors is above the limit of %d: %w", q.index, head, length/descSize, MaxIndirect, ErrChain)
			}
			t, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return fmt.Errorf("queue %d, chain %d: indirect table: %w: %w", q.index, head, ErrChain, err)
			}
			table, n = t, int(length/descSize)
			i, limit, count = 0, n, 0
			inIndirect = true
			continue
		}
		if length > 0 {
			buf, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return fmt.Errorf("queue %d, chain %d: buffer: %w: %w", q.index, head, ErrChain, err)
			}
			if flags&descFlagWrite != 0 {
				c.Writable = append(c.Writable, buf)
				c.writeLen += uint64(length)
			} else {
				if len(c.Writable) > 0 {
					return fmt.Errorf("queue %d, chain %d: a device-readable buffer follows a device-writable one: %w", q.index, head, ErrChain)
				}
				c.Readable = append(c.Readable, buf)
				c.readLen += uint64(length)
			}
		}
		if flags&descFlagNext == 0 {
			return nil
		}
		i = int(next)
	}
}

// Push returns the chain with head index head to the driver, saying the
// device wrote written bytes into its writable buffers. The driver sees
// it at once; Notify decides whether to interrupt.
func (q *Queue) Push(head uint16, written uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.used == nil {
		return // reset under the device's feet; nothing to return to
	}
	slot := q.used[ringStart+8*int(q.usedIdx&(q.size-1)):]
	binary.LittleEndian.PutUint32(slot[0:], uint32(head))
	binary.LittleEndian.PutUint32(slot[4:], written)
	q.usedIdx++
	// The element is written before the index: store16 is a barrier.
	store16(q.used[ringIdx:], q.usedIdx)
}

// Notify interrupts the driver if it wants to hear about the chains
// pushed since the last Notify (its suppression flag, or with EVENT_IDX
// its used_event index).
func (q *Queue) Notify() {
	if q.needInterrupt() && q.signal != nil {
		q.interrupts.Add(1)
		q.signal()
	}
}

// needInterrupt decides whether the used chains published so far call for
// an interrupt.
func (q *Queue) needInterrupt() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	old, cur := q.lastSignal, q.usedIdx
	if q.avail == nil || old == cur {
		return false // nothing used since the last decision
	}
	q.lastSignal = cur
	if !q.eventIdx {
		return load16(q.avail[ringFlags:])&availFlagNoInterrupt == 0
	}
	// Push's store16 was a full barrier: used_event is read after the
	// used index became visible.
	event := load16(q.avail[ringStart+2*int(q.size):])
	// virtio v1.2 2.7.10: interrupt when used_event lies in [old, cur).
	return cur-event-1 < cur-old
}

// DisableNotifications asks the driver not to notify the queue while
// the device is busy with it anyway. It is a hint: the driver may still
// notify.
func (q *Queue) DisableNotifications() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.used == nil || q.eventIdx {
		// With EVENT_IDX the driver notifies only when it passes
		// avail_event, which EnableNotifications moves.
		return
	}
	if q.usedFlags&usedFlagNoNotify == 0 {
		q.usedFlags |= usedFlagNoNotify
		store16(q.used[ringFlags:], q.usedFlags)
	}
}

// EnableNotifications asks the driver to notify the queue for its next
// chain. It returns true when chains are already available, in which case
// the caller must process them rather than wait (the driver may have
// added them before it saw the request).
func (q *Queue) EnableNotifications() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.used == nil {
		return false
	}
	if q.eventIdx {
		store16(q.used[ringStart+8*int(q.size):], q.lastAvail)
	} else if q.usedFlags&usedFlagNoNotify != 0 {
		q.usedFlags &^= usedFlagNoNotify
		store16(q.used[ringFlags:], q.usedFlags)
	}
	// store16 is a full barrier: the index is read after the request
	// became visible.
	return load16(q.avail[ringIdx:]) != q.lastAvail
}

// Wait blocks until the driver notifies the queue (or Interrupt is called:
// then it returns ErrStopped).
func (q *Queue) Wait() error {
	_, err := q.kick.Wait()
	if err == nil {
		q.wakeups.Add(1)
	}
	return err
}
