package storetest

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/openmediator/mediator/queue"
)

// 50 goroutines forward at once, to keys of several connections: each gets
// its own message back (its connection, key, payload, a distinct id), and
// each connection holds exactly the messages reported queued for it.
// (queuepg groups concurrent forwards into shared statements; results must
// still go to the right callers.)
func testEnqueueForwardConcurrent(t *testing.T, newFixture NewQueueFixture) {
	const senders, conns = 50, 5
	f := newFixture(t, 0)
	var keys, connIDs []string
	for range conns {
		k1, k2 := newKey(t), newKey(t)
		connIDs = append(connIDs, mediation(t, f.Store, k1, k2))
		keys = append(keys, k1, k2)
	}
	connOf := func(i int) string { return connIDs[(i%len(keys))/2] }
	results := make([]queue.Enqueued, senders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			<-start
			res, err := f.Queue.EnqueueForward(t.Context(), keys[i%len(keys)], envelope(i))
			if err != nil {
				t.Errorf("forward %d: %v", i, err)
			}
			results[i] = res
		})
	}
	close(start)
	wg.Wait()
	seen := map[string]int{}
	want := map[string][]string{}
	for i, res := range results {
		if res.ConnectionID != connOf(i) || res.RecipientKey != keys[i%len(keys)] || !bytes.Equal(res.Payload, envelope(i)) ||
			!isCanonicalUUID(res.ID) || res.ReceivedAt.IsZero() {
			t.Errorf("forward %d = %+v; want connection %s, key %s, its payload, an id", i, res, connOf(i), keys[i%len(keys)])
		}
		if j, dup := seen[res.ID]; dup {
			t.Errorf("forwards %d and %d both got id %s", j, i, res.ID)
		}
		seen[res.ID] = i
		want[res.ConnectionID] = append(want[res.ConnectionID], res.ID)
	}
	for _, c := range connIDs {
		got := ids(claim(t, f.Queue, queue.Filter{ConnectionID: c}, 100, holderA))
		slices.Sort(got)
		slices.Sort(want[c])
		if !slices.Equal(got, want[c]) {
			t.Errorf("connection %s holds %v, want %v", c, got, want[c])
		}
	}
}

// Concurrent forwards to a known recipient, to an unknown key and to a
// connection at its hard cap each get their own outcome: one sender's
// refusal does not fail the others' forwards, whatever statement they
// share.
func testEnqueueForwardMixed(t *testing.T, newFixture NewQueueFixture) {
	const each = 8
	f := newFixture(t, 0)
	const hard = each + 2
	f.Queue.SetCaps(queue.Caps{Hard: hard})
	known, full := newKey(t), newKey(t)
	knownConn := mediation(t, f.Store, known)
	fullConn := mediation(t, f.Store, full)
	for i := range hard {
		forward(t, f.Queue, full, envelope(i))
	}
	unknown := newKey(t)
	type outcome struct {
		to  string
		res queue.Enqueued
		err error
	}
	out := make(chan outcome, 3*each)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 * each {
		to := []string{known, unknown, full}[i%3]
		wg.Go(func() {
			<-start
			res, err := f.Queue.EnqueueForward(t.Context(), to, envelope(100+i))
			out <- outcome{to, res, err}
		})
	}
	close(start)
	wg.Wait()
	close(out)
	for o := range out {
		switch o.to {
		case known:
			if o.err != nil || o.res.ConnectionID != knownConn {
				t.Errorf("forward to the known key: %+v, %v", o.res, o.err)
			}
		case unknown:
			if !errors.Is(o.err, queue.ErrUnknownRecipient) {
				t.Errorf("forward to the unknown key: %v, want ErrUnknownRecipient", o.err)
			}
		case full:
			if !errors.Is(o.err, queue.ErrQueueFull) {
				t.Errorf("forward to the full connection: %v, want ErrQueueFull", o.err)
			}
		}
	}
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: knownConn}); s.Count != each {
		t.Errorf("known connection holds %d messages, want %d", s.Count, each)
	}
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: fullConn}); s.Count != hard {
		t.Errorf("full connection holds %d messages, want %d", s.Count, hard)
	}
}

// A payload that is not UTF-8 is refused on both enqueue paths with
// queue.ErrInvalidPayload (pickup could not embed it in a delivery), and
// nothing is queued.
func testEnqueueNotUTF8(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	bad := []byte("{\"ciphertext\":\"\xff\xfe\"}")
	if _, err := f.Queue.EnqueueForward(t.Context(), key, bad); !errors.Is(err, queue.ErrInvalidPayload) {
		t.Errorf("EnqueueForward of a payload that is not UTF-8: %v, want ErrInvalidPayload", err)
	}
	if _, err := f.Queue.Enqueue(t.Context(), conn, key, bad); !errors.Is(err, queue.ErrInvalidPayload) {
		t.Errorf("Enqueue of a payload that is not UTF-8: %v, want ErrInvalidPayload", err)
	}
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: conn}); s.Count != 0 {
		t.Errorf("Stats = %+v, want empty", s)
	}
}
