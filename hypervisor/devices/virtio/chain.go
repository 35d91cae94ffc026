package virtio

// Chain is one descriptor chain taken from a queue: the guest buffers it
// names, as host slices that alias guest memory. Readable buffers (the
// driver's data for the device) come first in the chain, writable ones
// (room for the device's answer) after them.
type Chain struct {
	// Head is the index of the chain's first descriptor, which Push
	// returns to the driver.
	Head     uint16
	Readable [][]byte
	Writable [][]byte

	readLen, writeLen uint64
}

// NewChain builds a chain from buffers directly, for device tests and
// fuzzing that bypass a queue.
func NewChain(head uint16, readable, writable [][]byte) *Chain {
	c := &Chain{Head: head, Readable: readable, Writable: writable}
	for _, b := range readable {
		c.readLen += uint64(len(b))
	}
	for _, b := range writable {
		c.writeLen += uint64(len(b))
	}
	return c
}

// reset empties c for reuse, keeping its slices' capacity.
func (c *Chain) reset(head uint16) {
	clear(c.Readable)
	clear(c.Writable)
	c.Head = head
	c.Readable, c.Writable = c.Readable[:0], c.Writable[:0]
	c.readLen, c.writeLen = 0, 0
}

// ReadLen is the total size of the readable buffers.
func (c *Chain) ReadLen() uint64 { return c.readLen }

// WriteLen is the total size of the writable buffers.
func (c *Chain) WriteLen() uint64 { return c.writeLen }

// ReadAt copies readable bytes from offset off (counted across the
// readable buffers) into p and returns how many it copied: fewer than
// len(p) when the buffers end first.
func (c *Chain) ReadAt(p []byte, off uint64) int {
	return gather(p, c.Readable, off)
}

// WriteAt copies p into the writable buffers at offset off and returns
// how many bytes fit.
func (c *Chain) WriteAt(p []byte, off uint64) int {
	return scatter(c.Writable, p, off)
}

// gather copies from bufs, starting off bytes in, into p.
func gather(p []byte, bufs [][]byte, off uint64) int { return copyBufs(bufs, p, off, false) }

// scatter copies p into bufs, starting off bytes in.
func scatter(bufs [][]byte, p []byte, off uint64) int { return copyBufs(bufs, p, off, true) }

// copyBufs copies between p and the bytes of bufs from offset off:
// into bufs when toBufs is set, else out of them.
func copyBufs(bufs [][]byte, p []byte, off uint64, toBufs bool) int {
	n := 0
	for _, b := range bufs {
		if len(p) == n {
			break
		}
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		if toBufs {
			n += copy(b[off:], p[n:])
		} else {
			n += copy(p[n:], b[off:])
		}
		off = 0
	}
	return n
}

// Slices returns the part [off, off+n) of bufs as sub-slices of them
// (appended to dst), for I/O straight into or out of guest memory. It
// returns fewer than n bytes' worth when bufs end first.
func Slices(dst [][]byte, bufs [][]byte, off, n uint64) [][]byte {
	for _, b := range bufs {
		if n == 0 {
			break
		}
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		s := b[off:]
		if uint64(len(s)) > n {
			s = s[:n]
		}
		dst = append(dst, s)
		n -= uint64(len(s))
		off = 0
	}
	return dst
}
