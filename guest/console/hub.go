package console

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Sizes of a Hub's buffers.
const (
	// DefaultHistory is how much recent output a Hub keeps in memory for
	// late readers (paddock logs -f, the API's console stream).
	DefaultHistory = 1 << 20
	// SubscriberBuffer bounds the output queued for one reader that does
	// not keep up; beyond it output is dropped for that reader only, and
	// the reader is told how much.
	SubscriberBuffer = 1 << 20
)

// Hub receives the guest's console output (it is the machine's console
// writer) and passes it on: to its history ring, to its sinks (log files)
// and to every subscriber. Write never blocks on a reader: the guest must
// not stall because a client is slow. Safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	ring    *Ring
	sinks   []io.Writer
	sinkErr error
	subs    map[*Subscriber]struct{}
	closed  bool
}

// NewHub returns a hub keeping history bytes of output and copying all of
// it to sinks. A sink that fails is dropped; Err reports the first error.
func NewHub(history int, sinks ...io.Writer) *Hub {
	return &Hub{ring: NewRing(history), sinks: sinks, subs: map[*Subscriber]struct{}{}}
}

// Write takes guest output. It always reports success: a failing sink is
// dropped (see Err), slow subscribers lose output (and are told).
func (h *Hub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring.Write(p)
	kept := h.sinks[:0]
	for _, s := range h.sinks {
		if _, err := s.Write(p); err != nil {
			if h.sinkErr == nil {
				h.sinkErr = err
			}
			continue
		}
		kept = append(kept, s)
	}
	h.sinks = kept
	for s := range h.subs {
		s.push(p)
	}
	return len(p), nil
}

// Err returns the first error a sink returned, if any.
func (h *Hub) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sinkErr
}

// History returns a copy of the output the hub remembers.
func (h *Hub) History() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ring.Bytes()
}

// Subscribe returns a reader of the output written from now on. With
// history, it first reads the remembered output (its last tail lines when
// tail > 0), with nothing lost or repeated between the two. After Close
// of the hub, the reader returns what is queued and then io.EOF.
func (h *Hub) Subscribe(history bool, tail int) *Subscriber {
	s := &Subscriber{h: h, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if history {
		if b := TailBytes(h.ring.Bytes(), tail); len(b) > 0 {
			s.queue = append(s.queue, b)
			s.queued = len(b)
		}
	}
	if h.closed {
		s.ended = true
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// Subscribers returns how many readers are subscribed.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close ends every subscription (readers drain what is queued, then get
// io.EOF); later subscribers get the history and io.EOF. Output written
// after Close still reaches the history and the sinks, which Close does
// not close.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.end()
	}
	clear(h.subs)
}

func (h *Hub) unsubscribe(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// ErrClosed is returned by reads of a closed Subscriber and writes to a
// closed Input.
var ErrClosed = errors.New("console: closed")

// Subscriber reads a Hub's output. Read blocks until output arrives.
type Subscriber struct {
	h      *Hub
	notify chan struct{} // has a token when the queue changed

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	dropped int
	ended   bool // the hub closed: EOF once drained
	closed  bool // Close was called: EOF now
}

// push queues p, or counts it as dropped if the queue is full.
// Precondition: the hub's mu is held.
func (s *Subscriber) push(p []byte) {
	s.mu.Lock()
	if s.queued+len(p) > SubscriberBuffer {
		s.dropped += len(p)
	} else {
		s.queue = append(s.queue, append([]byte(nil), p...))
		s.queued += len(p)
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Subscriber) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.wake()
}

func (s *Subscriber) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Read returns queued output, blocking until there is some. When output
// was dropped because the reader fell behind, a notice saying how much is
// read first.
func (s *Subscriber) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return 0, io.EOF
		case s.dropped > 0:
			notice := fmt.Sprintf("\r\n[paddock: %d bytes of console output dropped: this reader fell behind]\r\n", s.dropped)
			s.dropped = 0
			s.queue = append([][]byte{[]byte(notice)}, s.queue...)
			s.queued += len(notice)
		}
		if len(s.queue) > 0 {
			n := copy(p, s.queue[0])
			if n == len(s.queue[0]) {
				s.queue = s.queue[1:]
			} else {
				s.queue[0] = s.queue[0][n:]
			}
			s.queued -= n
			s.mu.Unlock()
			return n, nil
		}
		if s.ended {
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		<-s.notify
	}
}

// Close unsubscribes; a blocked Read returns io.EOF. Safe to call more
// than once, from any goroutine.
func (s *Subscriber) Close() error {
	s.h.unsubscribe(s)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wake()
	return nil
}
