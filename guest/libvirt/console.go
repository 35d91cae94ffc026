package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// ErrConsoleBusy: another client holds the domain's console; libvirt
// gives a console to one client at a time.
var ErrConsoleBusy = errors.New("another console is attached to it (libvirt allows one at a time)")

// Console attaches to the serial console of the domain of the VM called
// name (UUID id) on host h, over a connection of its own: reads from the
// returned conn are the guest's output, writes are keystrokes, Close
// detaches. When the domain stops, reads end (io.EOF).
func Console(h Host, name, id string) (net.Conn, error) {
	c, err := Connect(h)
	if err != nil {
		return nil, err
	}
	d, err := c.Domain(name, id)
	if err != nil {
		c.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Lifecycle events tell when the domain stops: libvirt then ends the
	// console stream, but go-libvirt's call returns only once our input
	// ends too, so a stop must end the input.
	events, err := c.l.LifecycleEvents(ctx)
	if err != nil {
		cancel()
		c.Close()
		return nil, c.fail("watch domain "+name, err)
	}
	user, mine := net.Pipe()
	keysR, keysW := io.Pipe()
	out := newOutputQueue(mine, consoleBacklog)
	opened := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		in := &signalReader{r: keysR, first: opened}
		done <- c.l.DomainOpenConsoleBidirectional(d.d, nil, in, out, 0)
	}()
	finish := func() {
		keysW.Close()
		out.Close() // then mine, once what came was passed on
		cancel()
		for range events {
		}
		c.Close()
	}
	select {
	case <-opened:
	case err := <-done:
		finish()
		switch {
		case err == nil:
			return nil, fmt.Errorf("%s: domain %s: the console closed at once", c.where(), name)
		case code(err) == golibvirt.ErrOperationUnsupported || strings.Contains(err.Error(), "Active console session"):
			return nil, fmt.Errorf("%s: domain %s: %w", c.where(), name, ErrConsoleBusy)
		}
		return nil, c.fail("open the console of domain "+name, err)
	}
	var once sync.Once
	endInput := func() { once.Do(func() { keysW.Close() }) }
	go func() { // keystrokes
		_, _ = io.Copy(keysW, mine)
		endInput()
	}()
	go func() { // the domain stops: end the stream
		for ev := range events {
			if ev.Dom.UUID == d.d.UUID && golibvirt.DomainEventType(ev.Event) == golibvirt.DomainEventStopped {
				endInput()
			}
		}
	}()
	go func() {
		<-done
		finish()
	}()
	return user, nil
}

// signalReader closes first on its first Read: go-libvirt starts reading
// a stream's input only once libvirt accepted the stream.
type signalReader struct {
	r     io.Reader
	first chan struct{}
	once  sync.Once
}

func (s *signalReader) Read(p []byte) (int, error) {
	s.once.Do(func() { close(s.first) })
	return s.r.Read(p)
}

// consoleBacklog bounds the console output a reader that does not keep up
// leaves waiting; past it, output is dropped.
const consoleBacklog = 1 << 20

// outputQueue passes console output on to w from a goroutine of its own,
// so that go-libvirt's connection never waits for the reader of a
// console: while it waited it would route no other reply on the
// connection (its heartbeat included, which would then give the
// connection up). At most max bytes wait; more are dropped. Write never
// fails: once the reader left, output has nowhere to go, and a failed
// write would stall go-libvirt's stream for good.
type outputQueue struct {
	w    io.WriteCloser
	max  int
	mu   sync.Mutex
	cond *sync.Cond
	buf  []byte
	done bool
}

func newOutputQueue(w io.WriteCloser, max int) *outputQueue {
	q := &outputQueue{w: w, max: max}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

// Write queues p (what fits).
func (q *outputQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.done {
		q.buf = append(q.buf, p[:min(len(p), q.max-len(q.buf))]...)
		q.cond.Signal()
	}
	return len(p), nil
}

// Close lets the queue pass on what waits, then closes w.
func (q *outputQueue) Close() error {
	q.mu.Lock()
	q.done = true
	q.cond.Signal()
	q.mu.Unlock()
	return nil
}

// run writes what is queued to w until Close, then closes w.
func (q *outputQueue) run() {
	defer q.w.Close()
	for {
		q.mu.Lock()
		for len(q.buf) == 0 && !q.done {
			q.cond.Wait()
		}
		chunk, done := q.buf, q.done
		q.buf = nil
		q.mu.Unlock()
		if len(chunk) > 0 {
			if _, err := q.w.Write(chunk); err != nil {
				q.discard()
				return
			}
		}
		if done && len(chunk) == 0 {
			return
		}
	}
}

// discard drops all output from now on: the reader is gone.
func (q *outputQueue) discard() {
	q.mu.Lock()
	q.done, q.buf = true, nil
	q.max = 0
	q.mu.Unlock()
}

// ReadLog returns the console log of pl's VM: the files libvirt's
// virtlogd rotated (NAME.N ... NAME.1), oldest first, then NAME; and the
// length of NAME, from where FollowLog goes on.
func (p *Pool) ReadLog(pl *Placement) ([]byte, uint64, error) {
	if err := p.Refresh(); err != nil {
		return nil, 0, err
	}
	names, err := p.Names(pl.ConsoleLogName())
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(names, func(a, b string) int { return logAge(b, pl) - logAge(a, pl) })
	var out bytes.Buffer
	var current uint64
	for _, n := range names {
		age := logAge(n, pl)
		if age < 0 {
			continue
		}
		got, _, err := p.download(n, &out, 0)
		if err != nil {
			return nil, 0, err
		}
		if age == 0 {
			current = got
		}
	}
	return out.Bytes(), current, nil
}

// logAge is 0 for the console log, N for its rotated NAME.N, and -1 for
// anything else.
func logAge(name string, pl *Placement) int {
	rest, ok := strings.CutPrefix(name, pl.ConsoleLogName())
	if !ok {
		return -1
	}
	if rest == "" {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimPrefix(rest, "."))
	if err != nil || n < 1 || !strings.HasPrefix(rest, ".") {
		return -1
	}
	return n
}

// download writes the named volume's bytes from offset on to w and
// returns how many it wrote and the volume's size (0 for a volume that is
// not there, or went while it was read: another client deleted it).
func (p *Pool) download(name string, w io.Writer, offset uint64) (n, size uint64, err error) {
	vol, err := p.c.l.StorageVolLookupByName(p.p, name)
	if code(err) == golibvirt.ErrNoStorageVol {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, p.c.fail("look up volume "+name, err)
	}
	_, size, _, err = p.c.l.StorageVolGetInfo(vol)
	if code(err) == golibvirt.ErrNoStorageVol {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, p.c.fail("read volume "+name, err)
	}
	if size <= offset {
		return 0, size, nil
	}
	cw := &countWriter{w: w}
	err = p.c.l.StorageVolDownload(vol, cw, offset, size-offset, 0)
	if code(err) == golibvirt.ErrNoStorageVol {
		return cw.n, 0, nil
	}
	if err != nil {
		return cw.n, size, p.c.fail("download volume "+name, err)
	}
	return cw.n, size, nil
}

// countWriter counts what it passes on.
type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// FollowInterval is how often FollowLog looks for new console output.
const FollowInterval = 250 * time.Millisecond

// FollowLog writes the console output pl's VM logs from offset on (an
// offset into the current log file) to w as it comes, until the domain
// d is no longer running and everything it logged was written, or ctx
// ends. libvirt has no way to wait for a volume to grow, so it looks
// every FollowInterval.
func (p *Pool) FollowLog(ctx context.Context, pl *Placement, d *Dom, offset uint64, w io.Writer) error {
	tick := time.NewTicker(FollowInterval)
	defer tick.Stop()
	for {
		st, err := d.State()
		if err != nil {
			return err
		}
		if err := p.Refresh(); err != nil {
			return err
		}
		// Downloaded into memory first: go-libvirt's connection must not
		// wait for the reader (see outputQueue).
		var chunk bytes.Buffer
		n, size, err := p.download(pl.ConsoleLogName(), &chunk, offset)
		if err != nil {
			return err
		}
		if _, err := w.Write(chunk.Bytes()); err != nil {
			return err
		}
		offset += n
		if size < offset {
			// virtlogd rotated the log: what it wrote since the last look
			// and before the rotation is at the end of NAME.1. Then go on
			// in the new file.
			chunk.Reset()
			if _, _, err := p.download(pl.ConsoleLogName()+".1", &chunk, offset); err != nil {
				return err
			}
			if _, err := w.Write(chunk.Bytes()); err != nil {
				return err
			}
			offset = 0
		}
		if !st.Active() {
			return nil // it had stopped before this last read
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Download writes the named volume's content to w.
func (p *Pool) Download(name string, w io.Writer) error {
	_, _, err := p.download(name, w, 0)
	return err
}
