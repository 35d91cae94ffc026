// Package console is a managed VM's serial console on the host side: a
// Hub that fans the guest's output out to a bounded in-memory history
// (Ring), a size-bounded rotating log file (LogFile) and any number of
// live readers (Subscriber), and an Input that merges the keystrokes of
// every attached client into the guest's serial port, across reboots.
package console

// Ring is a fixed-size byte history: writes beyond its size overwrite the
// oldest bytes. It is not safe for concurrent use (Hub guards it).
type Ring struct {
	buf   []byte
	start int // index of the oldest byte
	n     int // bytes held
}

// NewRing returns a ring that holds the last size bytes written.
func NewRing(size int) *Ring {
	return &Ring{buf: make([]byte, max(size, 1))}
}

// Write appends p, dropping the oldest bytes beyond the ring's size.
func (r *Ring) Write(p []byte) {
	size := len(r.buf)
	if len(p) >= size {
		copy(r.buf, p[len(p)-size:])
		r.start, r.n = 0, size
		return
	}
	end := (r.start + r.n) % size
	k := copy(r.buf[end:], p)
	copy(r.buf, p[k:])
	r.n += len(p)
	if r.n > size {
		r.start = (r.start + r.n - size) % size
		r.n = size
	}
}

// Bytes returns a copy of the history, oldest byte first.
func (r *Ring) Bytes() []byte {
	out := make([]byte, r.n)
	k := copy(out, r.buf[r.start:min(r.start+r.n, len(r.buf))])
	copy(out[k:], r.buf[:r.n-k])
	return out
}

// Len returns how many bytes the ring holds.
func (r *Ring) Len() int { return r.n }
