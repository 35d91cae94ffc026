package virtio

import "testing"

// TestStopping checks that Stop closes the channel Stopping returns, and
// that a queue activated again has an open one.
func TestStopping(t *testing.T) {
	q, err := newQueue(0, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	first := q.Stopping()
	if closed(first) {
		t.Fatal("Stopping is closed on a queue never stopped")
	}
	q.Stop()
	q.Stop() // twice is fine
	if !closed(first) || !closed(q.Stopping()) {
		t.Fatal("Stopping is open after Stop")
	}
	q.restart()
	if closed(q.Stopping()) {
		t.Fatal("Stopping is closed after the queue was activated again")
	}
	if !closed(first) {
		t.Fatal("the channel of the earlier activation opened again")
	}
}
