package storetest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
)

// RunQueue runs the transport queue and live-session registry conformance
// tests.
func RunQueue(t *testing.T, newFixture NewQueueFixture) {
	tests := []struct {
		name string
		fn   func(*testing.T, NewQueueFixture)
	}{
		{"EnqueueForward", testEnqueueForward},
		{"EnqueueForwardUnknownRecipient", testEnqueueForwardUnknown},
		{"EnqueueForwardConcurrent", testEnqueueForwardConcurrent},
		{"EnqueueForwardMixedOutcomes", testEnqueueForwardMixed},
		{"EnqueueNotUTF8", testEnqueueNotUTF8},
		{"Enqueue", testEnqueue},
		{"PayloadRoundTrip", testPayloadRoundTrip},
		{"OldestFirst", testOldestFirst},
		{"Limit", testLimit},
		{"Filter", testFilter},
		{"ClaimTwice", testClaimTwice},
		{"ConcurrentClaims", testConcurrentClaims},
		{"LeaseExpiry", testLeaseExpiry},
		{"Ack", testAck},
		{"Release", testRelease},
		{"ReleaseByForeignHolder", testReleaseForeignHolder},
		{"ReleaseAfterReclaim", testReleaseAfterReclaim},
		{"Stats", testStats},
		{"AckStats", testAckStats},
		{"LiveInstance", testLiveInstance},
		{"UnregisterRemovesOnlyItsSession", testUnregisterOnlyOwn},
		{"UnregisterReleasesItsMessages", testUnregisterReleases},
		{"RegisterSessionRejectsBadInput", testRegisterBadInput},
		{"QueueCaps", testQueueCaps},
		{"QueueCapConcurrent", testQueueCapConcurrent},
		{"Expire", testExpire},
		{"ExpireLapsedLease", testExpireLapsedLease},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newFixture)
		})
	}
}

var (
	holderA = queue.Holder{Instance: "instance-a", Session: "session-a"}
	holderB = queue.Holder{Instance: "instance-b", Session: "session-b"}
)

// mediation creates a connection in s with the given recipient keys routed
// to it and returns its id.
func mediation(t *testing.T, s mediator.Store, keys ...string) string {
	t.Helper()
	ctx := t.Context()
	id := newID()
	err := s.InsertConnection(ctx, record.Connection{
		ID: id, State: record.StateCompleted, OurKey: newKey(t), TheirKey: newKey(t),
		Mediation: record.MediationGranted,
	})
	if err != nil {
		t.Fatalf("InsertConnection: %v", err)
	}
	for _, k := range keys {
		if res, err := s.AddRoute(ctx, id, k); err != nil || res != record.RouteAdded {
			t.Fatalf("AddRoute(%s) = %q, %v; want %q", k, res, err, record.RouteAdded)
		}
	}
	return id
}

func forward(t *testing.T, q Queue, key string, payload []byte) queue.Message {
	t.Helper()
	m, err := q.EnqueueForward(t.Context(), key, payload)
	if err != nil {
		t.Fatalf("EnqueueForward(%s): %v", key, err)
	}
	return m.Message
}

func claim(t *testing.T, q Queue, f queue.Filter, limit int, h queue.Holder) []queue.Message {
	t.Helper()
	msgs, err := q.Claim(t.Context(), f, limit, h)
	if err != nil {
		t.Fatalf("Claim(%+v, %d): %v", f, limit, err)
	}
	return msgs
}

func stats(t *testing.T, q Queue, f queue.Filter) queue.Stats {
	t.Helper()
	s, err := q.Stats(t.Context(), f)
	if err != nil {
		t.Fatalf("Stats(%+v): %v", f, err)
	}
	return s
}

func ids(msgs []queue.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func sameIDs(t *testing.T, what string, got, want []queue.Message) {
	t.Helper()
	if g, w := ids(got), ids(want); !slices.Equal(g, w) {
		t.Errorf("%s: got ids %v, want %v", what, g, w)
	}
}

func testEnqueueForward(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	payload := envelope(1)

	m := forward(t, f.Queue, key, payload)
	if !isCanonicalUUID(m.ID) {
		t.Errorf("ID %q is not a canonical UUID", m.ID)
	}
	if m.ConnectionID != conn || m.RecipientKey != key || m.Attempts != 0 || m.ReceivedAt.IsZero() {
		t.Errorf("EnqueueForward = %+v; want connection %s, key %s, attempts 0, ReceivedAt set", m, conn, key)
	}
	if !bytes.Equal(m.Payload, payload) {
		t.Errorf("payload = %s, want %s", m.Payload, payload)
	}
	if d := time.Since(m.ReceivedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("ReceivedAt %v is not about now", m.ReceivedAt)
	}

	got := claim(t, f.Queue, queue.Filter{ConnectionID: conn}, 10, holderA)
	if len(got) != 1 || got[0].ID != m.ID || got[0].ConnectionID != conn || got[0].RecipientKey != key ||
		!got[0].ReceivedAt.Equal(m.ReceivedAt) || got[0].Attempts != 1 {
		t.Errorf("Claim = %+v; want the enqueued message with attempts 1", got)
	}

	if _, err := f.Queue.EnqueueForward(t.Context(), key, []byte(`{"truncated":`)); !errors.Is(err, queue.ErrInvalidPayload) {
		t.Errorf("EnqueueForward of a payload that is not JSON: %v, want ErrInvalidPayload", err)
	}
}

func isCanonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

func testEnqueueForwardUnknown(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	routed := newKey(t)
	conn := mediation(t, f.Store, routed)
	if ok, err := f.Store.RemoveRoute(t.Context(), conn, routed); err != nil || !ok {
		t.Fatalf("RemoveRoute = %v, %v", ok, err)
	}
	for _, tc := range []struct{ name, key string }{
		{"never registered", newKey(t)},
		{"route removed", routed},
		{"not base58", "0OIl-not-base58"},
		{"not 32 bytes", "3mJr7AoUXx2Wqd"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Queue.EnqueueForward(t.Context(), tc.key, envelope(1))
			if !errors.Is(err, queue.ErrUnknownRecipient) {
				t.Errorf("EnqueueForward(%q) error = %v, want ErrUnknownRecipient", tc.key, err)
			}
		})
	}
	if s := stats(t, f.Queue, queue.Filter{ConnectionID: conn}); s.Count != 0 {
		t.Errorf("Stats after failed forwards = %+v, want empty", s)
	}
}

func testEnqueue(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	// Enqueue needs no route: the caller knows the connection.
	conn := newID()
	key := newKey(t)
	m, err := f.Queue.Enqueue(ctx, strings.ToUpper(conn), key, envelope(1))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if m.ConnectionID != conn || m.RecipientKey != key || m.ID == "" || m.ReceivedAt.IsZero() {
		t.Errorf("Enqueue = %+v; want connection %s (canonical), key %s", m, conn, key)
	}
	sameIDs(t, "Claim", claim(t, f.Queue, queue.Filter{ConnectionID: conn}, 10, holderA), []queue.Message{m.Message})

	for _, tc := range []struct {
		name, conn, key string
		payload         []byte
	}{
		{"connection id not a UUID", "conn-1", key, envelope(1)},
		{"bad recipient key", conn, "not a key", envelope(1)},
		{"payload not JSON", conn, key, []byte("not json")},
		{"nil payload", conn, key, nil},
	} {
		if _, err := f.Queue.Enqueue(ctx, tc.conn, tc.key, tc.payload); err == nil {
			t.Errorf("%s: Enqueue succeeded, want an error", tc.name)
		}
	}
}

// Payloads come back byte for byte, on both enqueue paths, including JSON
// that a jsonb column refuses (NUL, a lone surrogate, a number beyond
// numeric) or would print differently (1e131071 as 131,072 digits).
func testPayloadRoundTrip(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	payloads := [][]byte{
		envelope(1),
		[]byte(`{"b":1,"a":[1,2,{"c":null}],"unicode":"wallet ✓ \u00e9","n":1.5e3}`),
		[]byte("{\n  \"protected\" : \"x\" ,\n  \"recipients\" : [ ]\n}\n"),
		[]byte(`{"nested":{"deep":{"deeper":[true,false]}}}`),
		[]byte(`{"nul":"\u0000","surrogate":"\ud800"}`),
		[]byte(`{"big":[1e131071,1e1000000,-1e-1000000]}`),
	}
	var sent []queue.Message
	for _, enqueue := range []func(p []byte) queue.Message{
		func(p []byte) queue.Message { return forward(t, f.Queue, key, p) },
		func(p []byte) queue.Message {
			res, err := f.Queue.Enqueue(t.Context(), conn, key, p)
			if err != nil {
				t.Fatalf("Enqueue(%s): %v", p, err)
			}
			return res.Message
		},
	} {
		for _, p := range payloads {
			in := slices.Clone(p)
			m := enqueue(in)
			clear(in) // the queue must have kept its own copy
			if !bytes.Equal(m.Payload, p) {
				t.Errorf("enqueue returned payload %s, want %s", m.Payload, p)
			}
			sent = append(sent, m)
		}
	}
	got := claim(t, f.Queue, queue.Filter{ConnectionID: conn}, 2*len(payloads), holderA)
	sameIDs(t, "Claim", got, sent)
	for i := range min(len(got), len(sent)) {
		if want := payloads[i%len(payloads)]; !bytes.Equal(got[i].Payload, want) {
			t.Errorf("message %d payload = %.80s, want %s", i, got[i].Payload, want)
		}
	}
}

func testOldestFirst(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	k1, k2 := newKey(t), newKey(t)
	conn := mediation(t, f.Store, k1, k2)
	var sent []queue.Message
	for i := range 6 {
		sent = append(sent, forward(t, f.Queue, []string{k1, k2}[i%2], envelope(i)))
	}
	all := queue.Filter{ConnectionID: conn}
	sameIDs(t, "first claim", claim(t, f.Queue, all, 2, holderA), sent[:2])
	sameIDs(t, "second claim", claim(t, f.Queue, all, 3, holderA), sent[2:5])
	sameIDs(t, "third claim", claim(t, f.Queue, all, 10, holderA), sent[5:])
	for i := 1; i < len(sent); i++ {
		if sent[i].ReceivedAt.Before(sent[i-1].ReceivedAt) {
			t.Errorf("message %d received at %v, before message %d at %v", i, sent[i].ReceivedAt, i-1, sent[i-1].ReceivedAt)
		}
	}
}

func testLimit(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	var sent []queue.Message
	for i := range 5 {
		sent = append(sent, forward(t, f.Queue, key, envelope(i)))
	}
	all := queue.Filter{ConnectionID: conn}
	for _, tc := range []struct{ limit, want int }{
		{-1, 0}, {0, 0}, {1, 1}, {3, 3}, {5, 5}, {6, 5}, {1 << 30, 5},
	} {
		got := claim(t, f.Queue, all, tc.limit, holderA)
		sameIDs(t, "Claim limit "+itoa(tc.limit), got, sent[:tc.want])
		// Put them back for the next case.
		if err := f.Queue.Release(t.Context(), holderA, conn, ids(got)); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
}

// filterSetup queues, for connection A, messages to keys a1 and a2, and for
// connection B one to key b.
type filterSetup struct {
	a, b      string // connection ids
	a1, a2, k string // recipient keys; k is B's
	toA1      []queue.Message
	toA2      []queue.Message
	toB       []queue.Message
}

func newFilterSetup(t *testing.T, f QueueFixture) filterSetup {
	t.Helper()
	s := filterSetup{a1: newKey(t), a2: newKey(t), k: newKey(t)}
	s.a = mediation(t, f.Store, s.a1, s.a2)
	s.b = mediation(t, f.Store, s.k)
	for i := range 3 {
		s.toA1 = append(s.toA1, forward(t, f.Queue, s.a1, envelope(i)))
		s.toA2 = append(s.toA2, forward(t, f.Queue, s.a2, envelope(10+i)))
	}
	s.toB = append(s.toB, forward(t, f.Queue, s.k, envelope(20)))
	return s
}

// filterCases are the filters every filter-taking method is tested with, and
// the messages each must select (oldest first).
func (s filterSetup) cases() []struct {
	name   string
	filter queue.Filter
	want   []queue.Message
} {
	interleaved := func(x, y []queue.Message) []queue.Message {
		var out []queue.Message
		for i := range x {
			out = append(out, x[i], y[i])
		}
		return out
	}
	return []struct {
		name   string
		filter queue.Filter
		want   []queue.Message
	}{
		{"connection", queue.Filter{ConnectionID: s.a}, interleaved(s.toA1, s.toA2)},
		{"connection upper case", queue.Filter{ConnectionID: strings.ToUpper(s.a)}, interleaved(s.toA1, s.toA2)},
		{"connection and key", queue.Filter{ConnectionID: s.a, RecipientKey: s.a1}, s.toA1},
		{"connection and other key", queue.Filter{ConnectionID: s.a, RecipientKey: s.a2}, s.toA2},
		// AND, not the seed's OR: another connection's key selects nothing.
		{"connection and foreign key", queue.Filter{ConnectionID: s.a, RecipientKey: s.k}, nil},
		{"other connection", queue.Filter{ConnectionID: s.b}, s.toB},
		{"unknown connection", queue.Filter{ConnectionID: newID()}, nil},
		{"connection id not a UUID", queue.Filter{ConnectionID: "nope"}, nil},
		{"empty filter", queue.Filter{}, nil},
	}
}

func testFilter(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	setup := newFilterSetup(t, f)
	for _, tc := range setup.cases() {
		t.Run(tc.name, func(t *testing.T) {
			got := claim(t, f.Queue, tc.filter, 100, holderA)
			sameIDs(t, "Claim", got, tc.want)
			if err := f.Queue.Release(t.Context(), holderA, tc.filter.ConnectionID, ids(got)); err != nil {
				t.Fatalf("Release: %v", err)
			}
		})
	}
}

func testClaimTwice(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	var sent []queue.Message
	for i := range 3 {
		sent = append(sent, forward(t, f.Queue, key, envelope(i)))
	}
	all := queue.Filter{ConnectionID: conn}
	sameIDs(t, "first claim", claim(t, f.Queue, all, 2, holderA), sent[:2])
	// The same holder asking again gets only what is left: a claim is not
	// re-entrant, or a retried request would deliver twice.
	sameIDs(t, "second claim", claim(t, f.Queue, all, 10, holderA), sent[2:])
	sameIDs(t, "third claim", claim(t, f.Queue, all, 10, holderB), nil)
	if s := stats(t, f.Queue, all); s.Count != 0 {
		t.Errorf("Stats with everything in flight = %+v, want empty", s)
	}
}

func testConcurrentClaims(t *testing.T, newFixture NewQueueFixture) {
	const (
		messages = 200
		workers  = 8
		batch    = 7
	)
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	sent := map[string]bool{}
	for i := range messages {
		sent[forward(t, f.Queue, key, envelope(i)).ID] = true
	}

	ctx := t.Context()
	all := queue.Filter{ConnectionID: conn}
	deadline := time.Now().Add(30 * time.Second)
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			h := queue.Holder{Instance: "instance", Session: "worker-" + itoa(w)}
			for time.Now().Before(deadline) {
				msgs, err := f.Queue.Claim(ctx, all, batch, h)
				if err != nil {
					t.Errorf("worker %d: Claim: %v", w, err)
					return
				}
				if len(msgs) > batch {
					t.Errorf("worker %d: Claim returned %d messages, limit %d", w, len(msgs), batch)
				}
				mu.Lock()
				for _, m := range msgs {
					counts[m.ID]++
				}
				mu.Unlock()
				if len(msgs) > 0 {
					continue
				}
				// Empty can mean "others hold the row locks right now";
				// stop only once nothing is claimable.
				s, err := f.Queue.Stats(ctx, all)
				if err != nil {
					t.Errorf("worker %d: Stats: %v", w, err)
					return
				}
				if s.Count == 0 {
					return
				}
			}
			t.Errorf("worker %d: still claiming at the deadline", w)
		})
	}
	wg.Wait()

	if len(counts) != messages {
		t.Errorf("%d distinct messages claimed, want %d", len(counts), messages)
	}
	for id, n := range counts {
		if n != 1 {
			t.Errorf("message %s claimed %d times", id, n)
		}
		if !sent[id] {
			t.Errorf("claimed message %s was never sent", id)
		}
	}
}

func testLeaseExpiry(t *testing.T, newFixture NewQueueFixture) {
	const lease = 50 * time.Millisecond
	f := newFixture(t, lease)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	sent := forward(t, f.Queue, key, envelope(1))
	all := queue.Filter{ConnectionID: conn}

	first := claim(t, f.Queue, all, 10, holderA)
	sameIDs(t, "first claim", first, []queue.Message{sent})

	// Wait, on the queue's clock, until the lease has run out: the message
	// then counts as claimable again, without any sweeper.
	deadline := time.Now().Add(10 * time.Second)
	for stats(t, f.Queue, all).Count == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("message still leased %v after a %v lease", 10*time.Second, lease)
		}
		f.Advance(lease / 5)
	}
	s := stats(t, f.Queue, all)
	if s.Count != 1 || s.TotalBytes != int64(len(envelope(1))) || !s.Oldest.Equal(sent.ReceivedAt) {
		t.Errorf("Stats after expiry = %+v, want the expired message", s)
	}

	again := claim(t, f.Queue, all, 10, holderB)
	sameIDs(t, "claim after expiry", again, first)
	if len(again) == 1 && again[0].Attempts != 2 {
		t.Errorf("attempts after redelivery = %d, want 2", again[0].Attempts)
	}
	// The first holder's late ack still removes it: the wallet has it.
	n, err := f.Queue.Ack(t.Context(), conn, ids(first))
	if err != nil || n != 1 {
		t.Errorf("Ack after redelivery = %d, %v; want 1", n, err)
	}
}

func testAck(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	ka, kb := newKey(t), newKey(t)
	a := mediation(t, f.Store, ka)
	b := mediation(t, f.Store, kb)
	var toA []queue.Message
	for i := range 4 {
		toA = append(toA, forward(t, f.Queue, ka, envelope(i)))
	}
	toB := forward(t, f.Queue, kb, envelope(9))
	claim(t, f.Queue, queue.Filter{ConnectionID: a}, 3, holderA) // toA[3] stays pending

	for _, tc := range []struct {
		name string
		conn string
		ids  []string
		want int
	}{
		{"nothing", a, nil, 0},
		{"junk only", a, []string{"", "not-a-uuid", "1234", newID()}, 0},
		{"another connection's message", a, []string{toB.ID}, 0},
		{"as another connection", b, []string{toA[0].ID}, 0},
		{"connection id not a UUID", "nope", []string{toA[0].ID}, 0},
		{"mixed batch", a, []string{toA[0].ID, "not-a-uuid", toB.ID, toA[1].ID, newID(), toA[0].ID}, 2},
		{"already acked", a, []string{toA[0].ID}, 0},
		{"upper case id", a, []string{strings.ToUpper(toA[2].ID)}, 1},
		{"pending message", a, []string{toA[3].ID}, 1},
	} {
		n, err := f.Queue.Ack(ctx, tc.conn, tc.ids)
		if err != nil || n != tc.want {
			t.Errorf("%s: Ack = %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
	// B's message is untouched.
	sameIDs(t, "B's claim", claim(t, f.Queue, queue.Filter{ConnectionID: b}, 10, holderA), []queue.Message{toB})
	if n, err := f.Queue.Ack(ctx, b, []string{toB.ID}); err != nil || n != 1 {
		t.Errorf("Ack of B's message = %d, %v; want 1", n, err)
	}
}

func testRelease(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	ka, kb := newKey(t), newKey(t)
	a := mediation(t, f.Store, ka)
	b := mediation(t, f.Store, kb)
	m1 := forward(t, f.Queue, ka, envelope(1))
	m2 := forward(t, f.Queue, ka, envelope(2))
	mb := forward(t, f.Queue, kb, envelope(3))
	fa, fb := queue.Filter{ConnectionID: a}, queue.Filter{ConnectionID: b}

	sameIDs(t, "claim A", claim(t, f.Queue, fa, 10, holderA), []queue.Message{m1, m2})
	sameIDs(t, "claim B", claim(t, f.Queue, fb, 10, holderA), []queue.Message{mb})

	// Junk and another connection's ids are ignored, not an error.
	if err := f.Queue.Release(ctx, holderA, a, []string{m1.ID, "junk", mb.ID, newID()}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := f.Queue.Release(ctx, holderA, "junk", []string{m2.ID}); err != nil {
		t.Fatalf("Release with a junk connection id: %v", err)
	}
	if s := stats(t, f.Queue, fa); s.Count != 1 || !s.Oldest.Equal(m1.ReceivedAt) {
		t.Errorf("Stats after release = %+v, want m1 only", s)
	}
	again := claim(t, f.Queue, fa, 10, holderB)
	sameIDs(t, "claim after release", again, []queue.Message{m1})
	if len(again) == 1 && again[0].Attempts != 2 {
		t.Errorf("attempts after release and claim = %d, want 2", again[0].Attempts)
	}
	sameIDs(t, "B after A's release", claim(t, f.Queue, fb, 10, holderB), nil)

	// Releasing a pending message changes nothing.
	m3 := forward(t, f.Queue, ka, envelope(4))
	if err := f.Queue.Release(ctx, holderA, a, []string{m3.ID}); err != nil {
		t.Fatalf("Release of a pending message: %v", err)
	}
	got := claim(t, f.Queue, fa, 10, holderB)
	sameIDs(t, "claim of pending", got, []queue.Message{m3})
	if len(got) == 1 && got[0].Attempts != 1 {
		t.Errorf("attempts = %d, want 1", got[0].Attempts)
	}
}

func testStats(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	setup := newFilterSetup(t, f)
	want, equal := statsOf, sameStats
	for _, tc := range setup.cases() {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := stats(t, f.Queue, tc.filter), want(tc.want); !equal(got, want) {
				t.Errorf("Stats = %+v, want %+v", got, want)
			}
		})
	}

	// In-flight messages do not count; released ones do again.
	fa := queue.Filter{ConnectionID: setup.a, RecipientKey: setup.a1}
	claimed := claim(t, f.Queue, fa, 2, holderA)
	if got, want := stats(t, f.Queue, fa), want(setup.toA1[2:]); !equal(got, want) {
		t.Errorf("Stats with two in flight = %+v, want %+v", got, want)
	}
	if err := f.Queue.Release(t.Context(), holderA, setup.a, ids(claimed[:1])); err != nil {
		t.Fatal(err)
	}
	if got, want := stats(t, f.Queue, fa), want([]queue.Message{setup.toA1[0], setup.toA1[2]}); !equal(got, want) {
		t.Errorf("Stats after a release = %+v, want %+v", got, want)
	}
}

// statsOf is what Stats should report for msgs.
func statsOf(msgs []queue.Message) queue.Stats {
	var s queue.Stats
	for _, m := range msgs {
		if s.Count == 0 || m.ReceivedAt.Before(s.Oldest) {
			s.Oldest = m.ReceivedAt
		}
		if s.Count == 0 || m.ReceivedAt.After(s.Newest) {
			s.Newest = m.ReceivedAt
		}
		s.Count++
		s.TotalBytes += int64(len(m.Payload))
	}
	return s
}

func sameStats(a, b queue.Stats) bool {
	return a.Count == b.Count && a.TotalBytes == b.TotalBytes && a.Oldest.Equal(b.Oldest) && a.Newest.Equal(b.Newest)
}

// AckStats deletes as Ack does and then counts what is claimable for the
// connection, whatever the recipient key.
func testAckStats(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	ka, ka2, kb := newKey(t), newKey(t), newKey(t)
	a := mediation(t, f.Store, ka, ka2)
	b := mediation(t, f.Store, kb)
	var toA []queue.Message
	for i := range 4 {
		toA = append(toA, forward(t, f.Queue, []string{ka, ka2}[i%2], envelope(i)))
	}
	toB := forward(t, f.Queue, kb, envelope(9))
	claim(t, f.Queue, queue.Filter{ConnectionID: a}, 2, holderA) // toA[0] and toA[1] in flight

	for _, tc := range []struct {
		name string
		conn string
		ids  []string
		want int
		left []queue.Message // claimable afterwards
	}{
		{"nothing named", a, nil, 0, toA[2:]},
		{"junk and another connection's", a, []string{"not-a-uuid", toB.ID, newID()}, 0, toA[2:]},
		{"connection id not a UUID", "nope", []string{toA[0].ID}, 0, nil},
		{"one in flight, one pending", a, []string{toA[0].ID, toA[2].ID}, 2, toA[3:]},
		{"the rest", a, []string{toA[1].ID, toA[3].ID, toA[0].ID}, 2, nil},
	} {
		n, got, err := f.Queue.AckStats(ctx, tc.conn, tc.ids)
		if err != nil || n != tc.want || !sameStats(got, statsOf(tc.left)) {
			t.Errorf("%s: AckStats = %d, %+v, %v; want %d, %+v", tc.name, n, got, err, tc.want, statsOf(tc.left))
		}
	}
	if got := stats(t, f.Queue, queue.Filter{ConnectionID: b}); !sameStats(got, statsOf([]queue.Message{toB})) {
		t.Errorf("B's stats = %+v, want its one message", got)
	}
}
