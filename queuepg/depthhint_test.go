package queuepg

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/queue"
)

func forwardDepth(t *testing.T, q *Queue, key string, i int) queue.Enqueued {
	t.Helper()
	res, err := q.EnqueueForward(t.Context(), key, payload(i))
	if err != nil {
		t.Fatalf("forward %d: %v", i, err)
	}
	return res
}

func ackSome(t *testing.T, q *Queue, conn string, n int) {
	t.Helper()
	msgs, err := q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, n, queue.Holder{Instance: "i", Session: "s"})
	if err != nil || len(msgs) != n {
		t.Fatalf("Claim = %d, %v", len(msgs), err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if got, err := q.Ack(t.Context(), conn, ids); err != nil || got != n {
		t.Fatalf("Ack = %d, %v", got, err)
	}
}

// After a first count, a connection's batches start from the remembered
// depth (so acknowledged messages still count in the reported Depth, an
// upper bound) while clearly below the caps; near the soft cap they count
// again, so OverSoftCap and refusals are exactly what full counts give.
func TestDepthHintsKeepCapsExact(t *testing.T) {
	f := newBatchFixture(t, 1, Options{Caps: queue.Caps{Soft: 12, Hard: 14}})
	key, conn := f.keys[0], f.conns[0]
	for i := range 10 {
		if res := forwardDepth(t, f.q, key, i); res.Depth != i || res.OverSoftCap {
			t.Fatalf("forward %d: Depth %d, OverSoftCap %v", i, res.Depth, res.OverSoftCap)
		}
	}
	ackSome(t, f.q, conn, 5) // 5 queued now; the hint still says 10
	var depths []int
	for i := range 3 {
		res := forwardDepth(t, f.q, key, 10+i)
		if res.OverSoftCap {
			t.Fatalf("forward with 5+%d queued flagged over the soft cap (Depth %d)", i, res.Depth)
		}
		depths = append(depths, res.Depth)
	}
	// 10 and 11 are the hint's estimate (5 and 6 queued); at 12 the batch
	// would reach the soft cap on the estimate, so it counted: 7.
	if !slices.Equal(depths, []int{10, 11, 7}) {
		t.Errorf("Depths %v, want [10 11 7]: the estimate, then a count near the soft cap", depths)
	}
	// From 8 queued up to the caps: exact decisions.
	for depth := 8; depth < 14; depth++ {
		res, err := f.q.EnqueueForward(t.Context(), key, payload(100+depth))
		if err != nil || res.OverSoftCap != (depth >= 12) {
			t.Fatalf("forward with %d queued: %+v, %v; want OverSoftCap %v", depth, res, err, depth >= 12)
		}
		if depth >= 12 && res.Depth != depth {
			t.Errorf("forward with %d queued, over the soft cap: Depth %d, want the exact count", depth, res.Depth)
		}
	}
	if _, err := f.q.EnqueueForward(t.Context(), key, payload(200)); err == nil {
		t.Fatal("forward beyond the hard cap accepted")
	}
	if n := f.count(t, conn); n != 14 {
		t.Errorf("%d queued, want the hard cap 14", n)
	}
}

// With another instance alive, its inserts cannot be seen coming: every
// batch counts in full.
func TestDepthHintsNotUsedWithOtherInstances(t *testing.T) {
	f := newBatchFixture(t, 1, Options{Instance: "me", Caps: queue.Caps{Soft: 100, Hard: 200}})
	if _, err := f.q.pool.Exec(t.Context(), `INSERT INTO mediator_instance (instance) VALUES ('other')`); err != nil {
		t.Fatal(err)
	}
	key, conn := f.keys[0], f.conns[0]
	for i := range 6 {
		forwardDepth(t, f.q, key, i)
	}
	ackSome(t, f.q, conn, 4)
	if res := forwardDepth(t, f.q, key, 6); res.Depth != 2 {
		t.Errorf("Depth %d with another instance alive, want the exact 2", res.Depth)
	}
	if n := f.q.hints.byConn.len(); n != 0 {
		t.Errorf("%d hints recorded with another instance alive", n)
	}
}

// Changing the caps drops the hints.
func TestDepthHintsForgottenOnSetCaps(t *testing.T) {
	f := newBatchFixture(t, 1, Options{Caps: queue.Caps{Soft: 100, Hard: 200}})
	forwardDepth(t, f.q, f.keys[0], 0)
	if n := f.q.hints.byConn.len(); n != 1 {
		t.Fatalf("%d hints after a forward, want 1", n)
	}
	f.q.SetCaps(queue.Caps{Soft: 50, Hard: 60})
	if n := f.q.hints.byConn.len(); n != 0 {
		t.Errorf("%d hints after SetCaps, want 0", n)
	}
	f.q.SetCaps(queue.Caps{})
	forwardDepth(t, f.q, f.keys[0], 1)
	if n := f.q.hints.byConn.len(); n != 0 {
		t.Errorf("%d hints recorded without caps, want 0", n)
	}
}

// A batch records no hint for a connection that a batch running beside it
// queued to (or may have: its keys' connections are not known), nor while
// a reply (Enqueue) is being queued: an insert running concurrently with
// the statement could be missed by them. Batches beside each other on
// different, known connections do record theirs.
func TestDepthHintsOnlyFromUncontestedStatements(t *testing.T) {
	f := newBatchFixture(t, 2, Options{MaxBatch: 2, Flushers: 2, Caps: queue.Caps{Soft: 100, Hard: 200}})
	hold := func(keys []string) {
		t.Helper()
		release := make(chan struct{})
		var once sync.Once
		started := make(chan struct{})
		f.q.batch.beforeFlush = func([]*forwardReq) { once.Do(func() { close(started); <-release }) }
		before := f.q.batch.batches.Load()
		var wg sync.WaitGroup
		for i, key := range keys {
			wg.Go(func() {
				if _, err := f.q.EnqueueForward(context.Background(), key, payload(i)); err != nil {
					t.Error(err)
				}
			})
			if i == 0 {
				<-started // the first batch is held; the next two make a full batch beside it
			}
		}
		waitFor(t, func() bool { return f.q.batch.batches.Load() == before+2 })
		close(release)
		wg.Wait()
		f.q.batch.beforeFlush = nil
	}

	hold([]string{f.keys[0], f.keys[0], f.keys[0]}) // keys not known yet, same connection
	if n := f.q.hints.byConn.len(); n != 0 {
		t.Errorf("%d hints recorded by overlapping batches for one connection, want 0", n)
	}
	// A reply in flight during the batch: no hint either.
	f.q.hints.replyStarted()
	forwardDepth(t, f.q, f.keys[0], 10)
	f.q.hints.replyDone()
	if n := f.q.hints.byConn.len(); n != 0 {
		t.Errorf("%d hints recorded while a reply was in flight, want 0", n)
	}
	forwardDepth(t, f.q, f.keys[1], 11) // now both keys' connections are known
	if n := f.q.hints.byConn.len(); n != 1 {
		t.Errorf("%d hints after a lone batch, want 1", n)
	}
	f.q.hints.forget()
	hold([]string{f.keys[0], f.keys[1], f.keys[1]})
	if n := f.q.hints.byConn.len(); n != 2 {
		t.Errorf("%d hints after overlapping batches on two known connections, want 2", n)
	}
}

func TestGenMapBounded(t *testing.T) {
	m := newGenMap[int, int](10)
	for i := range 100 {
		m.put(i, i)
		if _, ok := m.get(0); !ok {
			t.Fatalf("entry in use evicted after %d puts", i+1)
		}
		if m.len() > 10 {
			t.Fatalf("%d entries, want at most 10", m.len())
		}
	}
	if v, ok := m.get(99); !ok || v != 99 {
		t.Errorf("get(99) = %d, %v", v, ok)
	}
	m.clear()
	if m.len() != 0 {
		t.Error("clear left entries")
	}
}

func TestHintTTL(t *testing.T) {
	h := newHintCache()
	c := uuid.New()
	h.learn([]string{"k"}, []uuid.UUID{c})
	now := time.Now()
	h.record(0, []uuid.UUID{c}, []depthHint{{base: 3, setAt: now}})
	if conns, _, _ := h.forBatch([]string{"k", "k"}, now); len(conns) != 1 {
		t.Errorf("fresh hint: %d, want 1 (once per connection)", len(conns))
	}
	if conns, _, _ := h.forBatch([]string{"k"}, now.Add(hintTTL)); len(conns) != 0 {
		t.Error("a hint older than hintTTL was used")
	}
	h.forget()
	h.record(0, []uuid.UUID{c}, []depthHint{{base: 3, setAt: now}}) // read before forget: dropped
	if conns, _, _ := h.forBatch([]string{"k"}, now); len(conns) != 0 {
		t.Error("a hint read before forget was recorded after it")
	}
}

// Many senders over a batcher that runs several small batches at once, to
// several connections near their caps: every forward gets an outcome, the
// hints recorded by overlapping batches stay upper bounds (no connection
// ends above its hard cap by more than concurrent batches allow, and every
// accepted forward is queued).
func TestDepthHintsUnderOverlappingBatches(t *testing.T) {
	const conns, senders, each = 4, 24, 30
	f := newBatchFixture(t, conns, Options{MaxBatch: 4, Flushers: 3, Caps: queue.Caps{Soft: 40, Hard: 60}})
	f.q.batch.parallelAt = 2
	var (
		mu       sync.Mutex
		accepted = map[string]int{}
	)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				key := f.keys[(s+i)%conns]
				res, err := f.q.EnqueueForward(context.Background(), key, payload(s*1000+i))
				switch {
				case err == nil:
					mu.Lock()
					accepted[res.ConnectionID]++
					mu.Unlock()
				case !errors.Is(err, queue.ErrQueueFull):
					t.Errorf("forward: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for i, c := range f.conns {
		n := f.count(t, c)
		if n != accepted[c] {
			t.Errorf("connection %d holds %d messages, %d forwards accepted", i, n, accepted[c])
		}
		// Batches of up to 4 may run 3 at a time, each counting what was
		// committed when it started: at most 2×4 beyond the cap.
		if n < 60 || n > 60+8 {
			t.Errorf("connection %d holds %d messages, want the hard cap 60 (+ at most 8)", i, n)
		}
	}
	t.Logf("%d forwards in %d statements; %d hints", f.q.batch.requests.Load(), f.q.batch.batches.Load(), f.q.hints.byConn.len())
}
