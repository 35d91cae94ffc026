package virtiotest

import (
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

// Interrupts implements virtio.MSIX for tests: it records routes and
// counts deliveries per vector, and lets a test wait for one.
type Interrupts struct {
	mu     sync.Mutex
	routes map[int]virtio.MSIMessage
	counts []int
	ch     []chan struct{}
}

// NewInterrupts returns a sink for n vectors.
func NewInterrupts(n int) *Interrupts {
	i := &Interrupts{routes: map[int]virtio.MSIMessage{}, counts: make([]int, n), ch: make([]chan struct{}, n)}
	for v := range i.ch {
		i.ch[v] = make(chan struct{}, 1)
	}
	return i
}

// Route implements virtio.MSIX.
func (i *Interrupts) Route(v int, msg virtio.MSIMessage) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if v < 0 || v >= len(i.ch) {
		return fmt.Errorf("virtiotest: route of vector %d, have %d", v, len(i.ch))
	}
	i.routes[v] = msg
	return nil
}

// Fire implements virtio.MSIX. Firing a vector that was never routed is
// an error, as it would deliver nothing on a real machine.
func (i *Interrupts) Fire(v int) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if v < 0 || v >= len(i.ch) {
		return fmt.Errorf("virtiotest: fire of vector %d, have %d", v, len(i.ch))
	}
	if _, ok := i.routes[v]; !ok {
		return fmt.Errorf("virtiotest: vector %d fired before it was routed", v)
	}
	i.counts[v]++
	select {
	case i.ch[v] <- struct{}{}:
	default:
	}
	return nil
}

// Count returns how many times vector v fired.
func (i *Interrupts) Count(v int) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.counts[v]
}

// Route returns vector v's routed message.
func (i *Interrupts) Routed(v int) (virtio.MSIMessage, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	m, ok := i.routes[v]
	return m, ok
}

// C returns a channel that receives (coalesced) deliveries of vector v.
func (i *Interrupts) C(v int) <-chan struct{} { return i.ch[v] }
