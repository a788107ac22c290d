package memstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/openmediator/mediator/internal/storetest"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
)

// Memory is every storage interface at once (checked here rather than in the
// package so that memstore does not depend on the mediator core).
var (
	_ mediator.Store  = (*memstore.Memory)(nil)
	_ mediator.Queue  = (*memstore.Memory)(nil)
	_ pickup.Queue    = (*memstore.Memory)(nil)
	_ pickup.Registry = (*memstore.Memory)(nil)
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestStore(t *testing.T) {
	storetest.RunStore(t, func(*testing.T) mediator.Store {
		return memstore.New(memstore.Options{})
	})
}

func TestQueue(t *testing.T) {
	storetest.RunQueue(t, func(_ *testing.T, lease time.Duration) storetest.QueueFixture {
		clock := newFakeClock()
		// The suite checks ReceivedAt is about now.
		clock.now = time.Now()
		m := memstore.New(memstore.Options{Lease: lease, Now: clock.Now})
		return storetest.QueueFixture{Store: m, Queue: m, Advance: clock.Advance}
	})
}

// The lease ends exactly Lease after the claim: not a tick before.
func TestLeaseBoundary(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	m := memstore.New(memstore.Options{Lease: time.Minute, Now: clock.Now})
	conn := "0f8c1a52-3a55-4c1f-9c0e-6d2b1f1e2a10"
	key := "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K"
	sent, err := m.Enqueue(ctx, conn, key, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	f := queue.Filter{ConnectionID: conn}
	h := queue.Holder{Instance: "i", Session: "s"}
	if got, _ := m.Claim(ctx, f, 1, h); len(got) != 1 {
		t.Fatalf("first claim got %d messages", len(got))
	}
	clock.Advance(time.Minute)
	if got, _ := m.Claim(ctx, f, 1, h); len(got) != 0 {
		t.Fatalf("claimed again at exactly the lease end")
	}
	if s, _ := m.Stats(ctx, f); s.Count != 0 {
		t.Fatalf("Stats at the lease end = %+v, want empty", s)
	}
	clock.Advance(time.Microsecond)
	got, _ := m.Claim(ctx, f, 1, h)
	if len(got) != 1 || got[0].ID != sent.ID || got[0].Attempts != 2 {
		t.Fatalf("claim after the lease = %+v, want the message with attempts 2", got)
	}
}

// A clock that goes backwards (NTP step) must not reorder or lose messages:
// they stay sorted by time and, within a time, by arrival.
func TestClockGoesBackwards(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	m := memstore.New(memstore.Options{Now: clock.Now})
	conn := "0f8c1a52-3a55-4c1f-9c0e-6d2b1f1e2a10"
	key := "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K"
	var want []string
	enqueue := func() string {
		msg, err := m.Enqueue(ctx, conn, key, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return msg.ID
	}
	late := enqueue()
	clock.Advance(-time.Hour)
	early1 := enqueue()
	early2 := enqueue()
	want = append(want, early1, early2, late)
	got, err := m.Claim(ctx, queue.Filter{ConnectionID: conn}, 10, queue.Holder{})
	if err != nil || len(got) != 3 {
		t.Fatalf("Claim = %d messages, %v", len(got), err)
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Errorf("message %d = %s, want %s", i, got[i].ID, want[i])
		}
	}
	if n, _ := m.Ack(ctx, conn, want); n != 3 {
		t.Errorf("Ack = %d, want 3", n)
	}
	if s, _ := m.Stats(ctx, queue.Filter{ConnectionID: conn}); s.Count != 0 {
		t.Errorf("Stats after ack = %+v", s)
	}
}

// A connection's routes survive the connection record being looked up in
// another spelling of its id.
func TestRouteIDCanonical(t *testing.T) {
	ctx := t.Context()
	m := memstore.New(memstore.Options{})
	id := "0F8C1A52-3A55-4C1F-9C0E-6D2B1F1E2A10"
	if err := m.InsertConnection(ctx, record.Connection{ID: id, OurKey: "a", TheirKey: "b"}); err != nil {
		t.Fatal(err)
	}
	c, err := m.ConnectionByID(ctx, "0f8c1a52-3a55-4c1f-9c0e-6d2b1f1e2a10")
	if err != nil || c.ID != "0f8c1a52-3a55-4c1f-9c0e-6d2b1f1e2a10" {
		t.Fatalf("ConnectionByID = %q, %v; want the canonical id", c.ID, err)
	}
}
