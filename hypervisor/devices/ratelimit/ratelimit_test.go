package ratelimit_test

import (
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit/ratelimittest"
)

func TestUnlimitedIsNil(t *testing.T) {
	if l := ratelimit.New(ratelimit.Limits{}); l != nil {
		t.Fatalf("New of no limits = %p, want nil", l)
	}
	// Bursts alone limit nothing.
	if l := ratelimit.New(ratelimit.Limits{Bytes: ratelimit.Rate{Burst: 10}}); l != nil {
		t.Fatalf("New of a burst without a rate = %p, want nil", l)
	}
	var l *ratelimit.Limiter
	l.Consume(1<<40, 1<<40)
	if d := l.Delay(); d != 0 {
		t.Fatalf("nil limiter: Delay = %v, want 0", d)
	}
	if !l.Wait(nil, func() { t.Fatal("nil limiter called idle") }) {
		t.Fatal("nil limiter: Wait = false")
	}
}

// TestBucket follows one bucket's arithmetic step by step: it starts
// full, goes into debt, repays it at its rate, and never holds more than
// its burst.
func TestBucket(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		advance time.Duration
		consume uint64        // taken after advancing
		delay   time.Duration // then Delay
	}
	tests := []struct {
		name  string
		rate  ratelimit.Rate
		steps []step
	}{
		{
			// 1000 a second, a bucket of 500.
			name: "burst then debt",
			rate: ratelimit.Rate{PerSecond: 1000, Burst: 500},
			steps: []step{
				{0, 400, 0},              // 100 left
				{0, 300, 200 * ms},       // -200: the request ran, the next waits
				{150 * ms, 0, 50 * ms},   // repaid at the rate
				{50 * ms, 0, 0},          // at 0
				{0, 1000, 1000 * ms},     // larger than the bucket: runs, costs its time
				{10 * time.Second, 0, 0}, // idle: refills to 500, no more
				{0, 500, 0},
				{0, 1, 1 * ms},
			},
		},
		{
			// Default burst: 100 ms worth, 100 tokens.
			name: "default burst",
			rate: ratelimit.Rate{PerSecond: 1000},
			steps: []step{
				{time.Hour, 100, 0},
				{0, 100, 100 * ms},
			},
		},
		{
			// A tiny rate still holds one token.
			name: "tiny rate",
			rate: ratelimit.Rate{PerSecond: 2},
			steps: []step{
				{0, 1, 0},
				{0, 1, 500 * ms},
			},
		},
	}
	for _, tt := range tests {
		for _, kind := range []string{"bytes", "ops"} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				clock := ratelimittest.New()
				lim := ratelimit.Limits{Bytes: tt.rate}
				if kind == "ops" {
					lim = ratelimit.Limits{Ops: tt.rate}
				}
				l := ratelimit.NewWithClock(lim, clock)
				for i, s := range tt.steps {
					clock.Advance(s.advance)
					if kind == "bytes" {
						l.Consume(s.consume, 1)
					} else {
						l.Consume(1<<30, s.consume)
					}
					if d := l.Delay(); !near(d, s.delay) {
						t.Fatalf("step %d: Delay = %v, want %v", i, d, s.delay)
					}
				}
			})
		}
	}
}

// near allows Delay's rounding up (a nanosecond) and float arithmetic.
func near(got, want time.Duration) bool {
	return got >= want && got <= want+time.Microsecond
}

// TestBothBuckets checks that the slower bucket decides.
func TestBothBuckets(t *testing.T) {
	clock := ratelimittest.New()
	l := ratelimit.NewWithClock(ratelimit.Limits{
		Bytes: ratelimit.Rate{PerSecond: 1 << 20, Burst: 1 << 20},
		Ops:   ratelimit.Rate{PerSecond: 10, Burst: 1},
	}, clock)
	l.Consume(4096, 1)
	l.Consume(4096, 1) // ops: -1, 100 ms; bytes: plenty
	if d := l.Delay(); !near(d, 100*time.Millisecond) {
		t.Fatalf("ops in debt: Delay = %v, want 100ms", d)
	}
	clock.Advance(100 * time.Millisecond)
	l.Consume(3<<20, 1) // bytes: refilled to 1 MiB, minus 3 MiB: 2 s of debt
	if d, want := l.Delay(), 2*time.Second; !near(d, want) {
		t.Fatalf("bytes in debt: Delay = %v, want %v", d, want)
	}
}

// TestWait checks that Wait sleeps on a timer for exactly the debt,
// calls idle once before it sleeps, and gives up when stopped.
func TestWait(t *testing.T) {
	clock := ratelimittest.New()
	l := ratelimit.NewWithClock(ratelimit.Limits{Ops: ratelimit.Rate{PerSecond: 4, Burst: 1}}, clock)
	idles := 0
	idle := func() { idles++ }
	if !l.Wait(nil, idle) || idles != 0 {
		t.Fatalf("Wait on a full bucket: idles %d, want 0 and true", idles)
	}
	l.Consume(0, 3) // debt of 2 ops: 500 ms
	done := make(chan bool)
	go func() { done <- l.Wait(nil, idle) }()
	d, ok := clock.WaitTimer(10 * time.Second)
	if !ok || !near(d, 500*time.Millisecond) {
		t.Fatalf("Wait's timer: %v (%v), want 500ms", d, ok)
	}
	select {
	case <-done:
		t.Fatal("Wait returned before its timer fired")
	default:
	}
	clock.Advance(d)
	if !<-done {
		t.Fatal("Wait = false after the debt was repaid")
	}
	if idles != 1 {
		t.Fatalf("idle called %d times, want 1", idles)
	}

	l.Consume(0, 10)
	stop := make(chan struct{})
	go func() { done <- l.Wait(stop, nil) }()
	if _, ok := clock.WaitTimer(10 * time.Second); !ok {
		t.Fatal("Wait did not sleep on a timer")
	}
	close(stop)
	if <-done {
		t.Fatal("Wait = true after stop")
	}
	if n := clock.Pending(); n != 0 {
		t.Fatalf("%d timers left after a stopped Wait, want 0", n)
	}
}

// TestRealClock runs a few requests on the system clock: their long-run
// rate cannot exceed the limit (a lower bound on the time taken, which
// a loaded machine cannot break).
func TestRealClock(t *testing.T) {
	l := ratelimit.New(ratelimit.Limits{Ops: ratelimit.Rate{PerSecond: 100, Burst: 1}})
	start := time.Now()
	for range 6 {
		if !l.Wait(nil, nil) {
			t.Fatal("Wait = false")
		}
		l.Consume(0, 1)
	}
	// The first took the bucket's token, the second ran into debt,
	// and each of the other 4 waited 10 ms for the debt before it.
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Fatalf("6 ops at 100/s with a burst of 1 took %v, want at least 40ms", took)
	}
}

func TestRateOver(t *testing.T) {
	for _, tt := range []struct {
		perSecond uint64
		burst     time.Duration
		want      ratelimit.Rate
	}{
		{0, time.Second, ratelimit.Rate{}},
		{1000, 0, ratelimit.Rate{PerSecond: 1000, Burst: 100}},
		{10 << 20, 2 * time.Second, ratelimit.Rate{PerSecond: 10 << 20, Burst: 20 << 20}},
		{3, time.Millisecond, ratelimit.Rate{PerSecond: 3, Burst: 1}},
		{1 << 63, time.Hour, ratelimit.Rate{PerSecond: 1 << 63, Burst: 1<<64 - 1}},
	} {
		if got := ratelimit.RateOver(tt.perSecond, tt.burst); got != tt.want {
			t.Errorf("RateOver(%d, %v) = %+v, want %+v", tt.perSecond, tt.burst, got, tt.want)
		}
	}
}

// TestHugeDebt: a request far larger than a tiny rate repays in a
// lifetime waits in bounded, positive steps; converted whole, its debt
// overflowed into a negative duration, a timer that fired at once and a
// queue that spun.
func TestHugeDebt(t *testing.T) {
	clock := ratelimittest.New()
	l := ratelimit.NewWithClock(ratelimit.Limits{Bytes: ratelimit.Rate{PerSecond: 1, Burst: 1}}, clock)
	l.Consume(1<<62, 0)
	if d := l.Delay(); d <= 0 || d > 24*time.Hour {
		t.Fatalf("Delay after a 2^62-byte request at 1 B/s = %v, want a positive wait of at most a day", d)
	}
	stop := make(chan struct{})
	done := make(chan bool)
	go func() { done <- l.Wait(stop, nil) }()
	for range 3 {
		d, ok := clock.WaitTimer(10 * time.Second)
		if !ok || d <= 0 {
			t.Fatalf("Wait's timer: %v (%v), want a positive wait", d, ok)
		}
		clock.Advance(d)
	}
	close(stop)
	if <-done {
		t.Fatal("Wait = true with the debt unpaid")
	}
}
