package queue_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/openmediator/mediator/queue"
)

func TestCaps(t *testing.T) {
	c := queue.Caps{Soft: 2, Hard: 3}
	if c.CountLimit() != 3 || (queue.Caps{Soft: 5}).CountLimit() != 5 || (queue.Caps{}).CountLimit() != 0 {
		t.Error("CountLimit is not the larger cap")
	}
	for depth, want := range []struct{ over, full bool }{{false, false}, {false, false}, {true, false}, {true, true}} {
		if c.OverSoft(depth) != want.over || c.Full(depth) != want.full {
			t.Errorf("depth %d: OverSoft %v Full %v, want %v %v", depth, c.OverSoft(depth), c.Full(depth), want.over, want.full)
		}
	}
	if (queue.Caps{}).Full(1 << 30) {
		t.Error("no hard cap, yet full")
	}
	for _, bad := range []queue.Caps{{Soft: -1}, {Hard: -1}, {Soft: 4, Hard: 3}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	for _, good := range []queue.Caps{{}, {Soft: 3, Hard: 3}, {Soft: 10}, {Hard: 10}} {
		if err := good.Validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
}

func TestRunExpiryDisabled(t *testing.T) {
	called := false
	err := queue.RunExpiry(context.Background(), queue.ExpiryOptions{}, func(context.Context, time.Duration, int) (int, error) {
		called = true
		return 0, nil
	})
	if err != nil || called {
		t.Fatalf("TTL 0: err %v, called %v; want an immediate return", err, called)
	}
}

// RunExpiry runs a pass at once and then every Every, with the TTL and
// batch it was given, reports passes that removed something, and survives
// errors.
func TestRunExpiry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu       sync.Mutex
		calls    int
		reported []int
	)
	results := []struct {
		n   int
		err error
	}{{3, nil}, {0, nil}, {0, errors.New("database away")}, {2, nil}}
	done := make(chan error, 1)
	go func() {
		done <- queue.RunExpiry(ctx, queue.ExpiryOptions{
			TTL: time.Hour, Every: 5 * time.Millisecond, Batch: 7,
			Logger:    slog.New(slog.DiscardHandler),
			OnExpired: func(n int) { mu.Lock(); reported = append(reported, n); mu.Unlock() },
		}, func(_ context.Context, ttl time.Duration, batch int) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if ttl != time.Hour || batch != 7 {
				t.Errorf("expire(%v, %d), want (1h, 7)", ttl, batch)
			}
			r := results[min(calls, len(results)-1)]
			calls++
			if calls == len(results) {
				cancel()
			}
			return r.n, r.err
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunExpiry did not stop")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != len(results) || len(reported) != 2 || reported[0] != 3 || reported[1] != 2 {
		t.Errorf("%d passes, OnExpired %v; want 4 passes, [3 2]", calls, reported)
	}
}
