package ratelimit_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openmediator/mediator/internal/ratelimit"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClock() *clock { return &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestDisabled(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rate: 0})
	if l != nil {
		t.Fatal("Rate 0 gave a limiter")
	}
	for range 1000 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatal("nil limiter refused")
		}
	}
	if d, ok := l.Reserve("k", 0); !ok || d != 0 {
		t.Fatal("nil limiter reserved with a wait")
	}
}

// Rate 5/s burst 5: five at once pass, the sixth waits 200ms; a token comes
// back every 200ms.
func TestAllow(t *testing.T) {
	c := newClock()
	l := ratelimit.New(ratelimit.Options{Rate: 5, Burst: 5, Now: c.Now})
	for i := range 5 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d refused", i+1)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 200*time.Millisecond {
		t.Fatalf("6th = %v, wait %v; want refused, 200ms", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key was refused")
	}
	c.Advance(199 * time.Millisecond)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("allowed before the token was back")
	}
	c.Advance(time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused once the token was back")
	}
	// A long idle time refills only up to the burst.
	c.Advance(time.Hour)
	n := 0
	for {
		if ok, _ := l.Allow("a"); !ok {
			break
		}
		n++
	}
	if n != 5 {
		t.Fatalf("after an hour idle %d passed, want the burst of 5", n)
	}
}

func TestDefaultBurst(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want int
	}{{0.5, 1}, {1, 1}, {2.5, 3}, {10, 10}} {
		if got := ratelimit.New(ratelimit.Options{Rate: tc.rate}).Burst(); got != tc.want {
			t.Errorf("rate %v: burst %d, want %d", tc.rate, got, tc.want)
		}
	}
}

// Reserve goes into debt up to maxDebt and tells how long to wait.
func TestReserve(t *testing.T) {
	c := newClock()
	l := ratelimit.New(ratelimit.Options{Rate: 10, Burst: 2, Now: c.Now})
	var waits []time.Duration
	for {
		d, ok := l.Reserve("a", 2)
		if !ok {
			break
		}
		waits = append(waits, d)
	}
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	c.Advance(100 * time.Millisecond)
	if d, ok := l.Reserve("a", 2); !ok || d != 200*time.Millisecond {
		t.Fatalf("after 100ms: %v, %v; want a 200ms wait", d, ok)
	}
}

// Idle buckets are swept, and the table never exceeds MaxKeys.
func TestMemoryBounded(t *testing.T) {
	c := newClock()
	l := ratelimit.New(ratelimit.Options{Rate: 1, Burst: 2, MaxKeys: 100, SweepEvery: time.Second, Now: c.Now})
	for i := range 1000 {
		l.Allow(fmt.Sprint("k", i))
		if n := l.Len(); n > 100 {
			t.Fatalf("%d buckets, more than MaxKeys", n)
		}
	}
	// Two seconds later every bucket is full again, hence swept.
	c.Advance(2 * time.Second)
	l.Allow("fresh")
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets after the idle ones refilled, want 1", n)
	}
	// A bucket in use is not swept.
	l.Allow("busy")
	l.Allow("busy")
	c.Advance(time.Second)
	l.Allow("other")
	if ok, _ := l.Allow("busy"); !ok {
		t.Fatal("busy: a token should be back after 1s")
	}
	if ok, _ := l.Allow("busy"); ok {
		t.Fatal("busy was swept and started over with a full bucket")
	}
}

func TestConcurrent(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rate: 1, Burst: 100})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := l.Allow("shared"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	// 100 from the burst, plus at most a few refilled while the test ran.
	if allowed < 100 || allowed > 105 {
		t.Fatalf("%d of 800 allowed, want about the burst of 100", allowed)
	}
}
