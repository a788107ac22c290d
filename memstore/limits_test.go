package memstore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/queue"
)

// RunExpiry on the in-memory queue: a pass at once removes what is older
// than the TTL on the store's clock and reports it.
func TestRunExpiry(t *testing.T) {
	clock := newFakeClock()
	m := memstore.New(memstore.Options{Now: clock.Now})
	conn := "0f8c1a52-3a55-4c1f-9c0e-6d2b1f1e2a10"
	key := "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K"
	for range 3 {
		if _, err := m.Enqueue(t.Context(), conn, key, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Hour)
	young, err := m.Enqueue(t.Context(), conn, key, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	expired := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- m.RunExpiry(ctx, queue.ExpiryOptions{TTL: time.Hour, Every: time.Hour, Batch: 2,
			OnExpired: func(n int) { expired <- n }, Logger: slog.New(slog.DiscardHandler)})
	}()
	select {
	case n := <-expired:
		if n != 3 {
			t.Errorf("OnExpired(%d), want 3", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pass reported")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, _ := m.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 10, queue.Holder{})
	if len(got) != 1 || got[0].ID != young.ID {
		t.Errorf("left %d messages, want the young one", len(got))
	}
}
