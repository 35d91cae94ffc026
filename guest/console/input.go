package console

import (
	"io"
	"sync"
)

// Input carries keystrokes to the guest's serial port: every attached
// client writes into it, and the running machine reads from it (through
// Reader, one per boot), so input from several clients is merged and a
// reboot does not leave a stale reader behind. Safe for concurrent use.
type Input struct {
	ch   chan []byte
	done chan struct{}
	once sync.Once
}

// NewInput returns an open Input.
func NewInput() *Input {
	return &Input{ch: make(chan []byte), done: make(chan struct{})}
}

// Write hands p to the guest. It blocks until the current machine's serial
// port takes it (flow control: a guest that reads slowly slows the
// writer), and fails with ErrClosed once the Input is closed.
func (in *Input) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b := append([]byte(nil), p...)
	select {
	case in.ch <- b:
		return len(p), nil
	case <-in.done:
		return 0, ErrClosed
	}
}

// Close ends the input: blocked and later Writes fail, readers get EOF.
func (in *Input) Close() {
	in.once.Do(func() { close(in.done) })
}

// Feed copies r into the Input from its own goroutine until r ends or the
// Input closes. A read blocked in r (a terminal) cannot be interrupted,
// so the goroutine ends with r, not with the Input.
func (in *Input) Feed(r io.Reader) {
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if _, werr := in.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

// Reader returns the reader one machine consumes; it ends (io.EOF) when
// stop is closed or the Input closes.
func (in *Input) Reader(stop <-chan struct{}) io.Reader {
	return &inputReader{in: in, stop: stop}
}

type inputReader struct {
	in   *Input
	stop <-chan struct{}
	rest []byte
}

func (r *inputReader) Read(p []byte) (int, error) {
	if len(r.rest) == 0 {
		select {
		case b := <-r.in.ch:
			r.rest = b
		case <-r.stop:
			return 0, io.EOF
		case <-r.in.done:
			return 0, io.EOF
		}
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}
