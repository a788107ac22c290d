package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
)

// Hard cap 3: the fourth message for a connection is refused with
// ErrQueueFull, on both enqueue paths; the three queued stay, are handed
// out and, once one is acknowledged, there is room again. Depth and
// OverSoftCap report the soft cap (2).
func testQueueCaps(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	f.Queue.SetCaps(queue.Caps{Soft: 2, Hard: 3})
	key, otherKey := newKey(t), newKey(t)
	conn := mediation(t, f.Store, key)
	other := mediation(t, f.Store, otherKey)
	ctx := t.Context()

	var sent []queue.Message
	for i := range 3 {
		res, err := f.Queue.EnqueueForward(ctx, key, envelope(i))
		if err != nil {
			t.Fatalf("forward %d: %v", i+1, err)
		}
		if res.Depth != i || res.OverSoftCap != (i >= 2) {
			t.Errorf("forward %d: Depth %d, OverSoftCap %v; want %d, %v", i+1, res.Depth, res.OverSoftCap, i, i >= 2)
		}
		sent = append(sent, res.Message)
	}
	if _, err := f.Queue.EnqueueForward(ctx, key, envelope(4)); !errors.Is(err, queue.ErrQueueFull) {
		t.Fatalf("4th forward: error %v, want ErrQueueFull", err)
	}
	if _, err := f.Queue.Enqueue(ctx, conn, key, envelope(5)); !errors.Is(err, queue.ErrQueueFull) {
		t.Fatalf("Enqueue at the cap: error %v, want ErrQueueFull", err)
	}
	// Unknown recipients are still unknown, not full.
	if _, err := f.Queue.EnqueueForward(ctx, newKey(t), envelope(6)); !errors.Is(err, queue.ErrUnknownRecipient) {
		t.Errorf("forward to an unknown key: %v, want ErrUnknownRecipient", err)
	}
	// Another connection is not affected.
	if res, err := f.Queue.EnqueueForward(ctx, otherKey, envelope(7)); err != nil || res.Depth != 0 || res.OverSoftCap {
		t.Errorf("forward to another connection = %+v, %v", res, err)
	}

	all := queue.Filter{ConnectionID: conn}
	if s := stats(t, f.Queue, all); s.Count != 3 {
		t.Errorf("Stats = %+v, want the 3 queued", s)
	}
	got := claim(t, f.Queue, all, 10, holderA)
	sameIDs(t, "claim at the cap", got, sent)
	// In-flight messages still count.
	if _, err := f.Queue.EnqueueForward(ctx, key, envelope(8)); !errors.Is(err, queue.ErrQueueFull) {
		t.Errorf("forward with the 3 in flight: %v, want ErrQueueFull", err)
	}
	if n, err := f.Queue.Ack(ctx, conn, ids(got[:1])); err != nil || n != 1 {
		t.Fatalf("Ack = %d, %v", n, err)
	}
	res, err := f.Queue.Enqueue(ctx, conn, key, envelope(9))
	if err != nil || res.Depth != 2 || !res.OverSoftCap {
		t.Errorf("Enqueue after an ack = Depth %d, OverSoftCap %v, %v; want 2, true, nil", res.Depth, res.OverSoftCap, err)
	}

	// Caps off: nothing counted, nothing refused.
	f.Queue.SetCaps(queue.Caps{})
	for i := range 3 {
		res, err := f.Queue.EnqueueForward(ctx, key, envelope(10+i))
		if err != nil || res.Depth != 0 || res.OverSoftCap {
			t.Errorf("forward without caps = Depth %d, OverSoftCap %v, %v", res.Depth, res.OverSoftCap, err)
		}
	}
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: other}); s.Count != 1 {
		t.Errorf("other connection Stats = %+v, want 1", s)
	}
}

// Concurrent forwards to a full-ish queue only ever fail with
// ErrQueueFull, and every success is queued. (PostgreSQL may overshoot the
// cap by concurrent enqueues; see queue.Caps.)
func testQueueCapConcurrent(t *testing.T, newFixture NewQueueFixture) {
	const hard, senders = 5, 20
	f := newFixture(t, 0)
	f.Queue.SetCaps(queue.Caps{Hard: hard})
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for i := range senders {
		wg.Go(func() {
			_, err := f.Queue.EnqueueForward(t.Context(), key, envelope(i))
			switch {
			case err == nil:
				mu.Lock()
				ok++
				mu.Unlock()
			case !errors.Is(err, queue.ErrQueueFull):
				t.Errorf("forward %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d of %d concurrent forwards queued under a hard cap of %d", ok, senders, hard)
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: conn}); s.Count != ok || ok < hard {
		t.Errorf("%d forwards succeeded, %d queued; want them equal and at least the cap %d", ok, s.Count, hard)
	}
}

// The TTL deletes exactly the expired messages: not the young ones, not
// one in flight under a live lease (however old), but one whose lease ran
// out. Several batches of one.
func testExpire(t *testing.T, newFixture NewQueueFixture) {
	const ttl = time.Second
	f := newFixture(t, 0) // leases outlive the test
	ctx := t.Context()
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	var old []queue.Message
	for i := range 3 {
		old = append(old, forward(t, f.Queue, key, envelope(i)))
	}
	inFlight := claim(t, f.Queue, queue.Filter{ConnectionID: conn}, 1, holderA)
	sameIDs(t, "claim", inFlight, old[:1])
	f.Advance(ttl + ttl/2)
	young := forward(t, f.Queue, key, envelope(9))

	if n, err := f.Queue.ExpireMessages(ctx, 0, 1); err != nil || n != 0 {
		t.Errorf("ExpireMessages with TTL 0 = %d, %v; want 0", n, err)
	}
	n, err := f.Queue.ExpireMessages(ctx, ttl, 1)
	if err != nil || n != 2 {
		t.Fatalf("ExpireMessages = %d, %v; want the 2 expired pending messages", n, err)
	}
	if n, err := f.Queue.ExpireMessages(ctx, ttl, 1); err != nil || n != 0 {
		t.Errorf("second pass = %d, %v; want 0", n, err)
	}
	// Left: the young one (claimable) and the one in flight (acked below).
	sameIDs(t, "claimable after expiry", claim(t, f.Queue, queue.Filter{ConnectionID: conn}, 10, holderB),
		[]queue.Message{young})
	if n, err := f.Queue.Ack(ctx, conn, ids(inFlight)); err != nil || n != 1 {
		t.Errorf("Ack of the in-flight message = %d, %v; want 1 (it was spared)", n, err)
	}
	for _, m := range old[1:] {
		if n, _ := f.Queue.Ack(ctx, conn, []string{m.ID}); n != 0 {
			t.Errorf("expired message %s still there", m.ID)
		}
	}
}

// A message in flight whose lease ran out is being delivered by no one:
// the TTL takes it.
func testExpireLapsedLease(t *testing.T, newFixture NewQueueFixture) {
	const ttl, lease = time.Second, 200 * time.Millisecond
	f := newFixture(t, lease)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	forward(t, f.Queue, key, envelope(1))
	claim(t, f.Queue, queue.Filter{ConnectionID: conn}, 1, holderA)
	f.Advance(ttl + ttl/2)
	if n, err := f.Queue.ExpireMessages(t.Context(), ttl, 0); err != nil || n != 1 {
		t.Errorf("ExpireMessages = %d, %v; want 1", n, err)
	}
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: conn}); s.Count != 0 {
		t.Errorf("Stats = %+v, want empty", s)
	}
}

// ConnectionByRoute finds the connection that registered a key, and
// nothing once it is removed.
func testConnectionByRoute(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	a, b := fullConnection(t, base), fullConnection(t, base)
	a.TheirEndpoint = "https://agent.example/didcomm"
	insertConnection(t, s, a)
	insertConnection(t, s, b)
	ka, kb := newKey(t), newKey(t)
	for _, r := range []struct{ conn, key string }{{a.ID, ka}, {b.ID, kb}} {
		if res, err := s.AddRoute(ctx, r.conn, r.key); err != nil || res != record.RouteAdded {
			t.Fatalf("AddRoute = %v, %v", res, err)
		}
	}
	got, err := s.ConnectionByRoute(ctx, ka)
	if err != nil || !connEqual(got, a) {
		t.Errorf("ConnectionByRoute(ka) = %+v, %v; want %+v", got, err, a)
	}
	if got, err := s.ConnectionByRoute(ctx, kb); err != nil || got.ID != b.ID {
		t.Errorf("ConnectionByRoute(kb) = %s, %v; want %s", got.ID, err, b.ID)
	}
	_, err = s.ConnectionByRoute(ctx, newKey(t))
	isNotFound(t, "ConnectionByRoute(unknown)", err)
	if _, err := s.RemoveRoute(ctx, a.ID, ka); err != nil {
		t.Fatal(err)
	}
	_, err = s.ConnectionByRoute(ctx, ka)
	isNotFound(t, "ConnectionByRoute(removed)", err)
}
