package virtio

import (
	"errors"
	"sync"
)

// Next takes the next chain of q into c, blocking until the driver makes
// one available. Before it blocks it calls idle (if not nil): the place
// to Notify the driver of the work completed so far, so interrupts are
// coalesced per batch. While chains keep coming, driver notifications
// stay suppressed. Next returns false once Stop has been called, and an
// error for a malformed ring or chain.
func (q *Queue) Next(c *Chain, idle func()) (bool, error) {
	for {
		if q.stopped.Load() {
			return false, nil
		}
		ok, err := q.Pop(c)
		if err != nil || ok {
			return ok, err
		}
		if idle != nil {
			idle()
		}
		if q.EnableNotifications() {
			q.DisableNotifications()
			continue
		}
		if err := q.Wait(); err != nil {
			if errors.Is(err, ErrStopped) {
				return false, nil
			}
			return false, err
		}
		q.DisableNotifications()
	}
}

// Stop makes Next (and Wait) return at once, now and until the queue is
// activated again. Safe from any goroutine.
func (q *Queue) Stop() {
	q.stopped.Store(true)
	q.stopMu.Lock()
	if q.stopCh == nil {
		q.stopCh = make(chan struct{})
	}
	if !q.stopClosed {
		close(q.stopCh)
		q.stopClosed = true
	}
	q.stopMu.Unlock()
	q.kick.Interrupt()
}

// Stopping returns a channel that is closed when Stop is called: for a
// device goroutine that waits on something else than the queue (a rate
// limiter's timer) and must give up when the queue stops. Take it again
// after the queue is activated anew.
func (q *Queue) Stopping() <-chan struct{} {
	q.stopMu.Lock()
	defer q.stopMu.Unlock()
	if q.stopCh == nil {
		q.stopCh = make(chan struct{})
	}
	return q.stopCh
}

// Stopped reports whether Stop was called (and the queue not activated
// again since).
func (q *Queue) Stopped() bool { return q.stopped.Load() }

// restart undoes Stop when the queue is activated.
func (q *Queue) restart() {
	q.stopMu.Lock()
	if q.stopClosed {
		q.stopCh, q.stopClosed = make(chan struct{}), false
	}
	q.stopMu.Unlock()
	q.stopped.Store(false)
	q.kick.Rearm()
}

// Group runs a device's goroutines and stops them with Stop.
type Group struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	queues []*Queue
}

// Go runs fn on a new goroutine that Stop will wait for; q is the queue
// it serves (nil for none), which Stop stops.
func (g *Group) Go(q *Queue, fn func()) {
	if q != nil {
		g.mu.Lock()
		g.queues = append(g.queues, q)
		g.mu.Unlock()
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
}

// Stop stops the queues and waits for every goroutine to return.
func (g *Group) Stop() {
	g.mu.Lock()
	qs := g.queues
	g.queues = nil
	g.mu.Unlock()
	for _, q := range qs {
		q.Stop()
	}
	g.wg.Wait()
}
