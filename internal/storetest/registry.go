package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/openmediator/mediator/queue"
)

// Tests of the holder rule of Release and of the live-session registry
// (pickup.Registry and Enqueued.LiveInstance), run by RunQueue.

func register(t *testing.T, q Queue, s queue.Session) {
	t.Helper()
	if err := q.RegisterSession(t.Context(), s); err != nil {
		t.Fatalf("RegisterSession(%+v): %v", s, err)
	}
}

func unregister(t *testing.T, q Queue, sessionID string) {
	t.Helper()
	if err := q.UnregisterSession(t.Context(), sessionID); err != nil {
		t.Fatalf("UnregisterSession(%s): %v", sessionID, err)
	}
}

// liveInstance queues a message for key and returns where the queue says
// its connection is live.
func liveInstance(t *testing.T, q Queue, key string) string {
	t.Helper()
	res, err := q.EnqueueForward(t.Context(), key, envelope(0))
	if err != nil {
		t.Fatalf("EnqueueForward(%s): %v", key, err)
	}
	return res.LiveInstance
}

func wantLive(t *testing.T, what string, q Queue, key, want string) {
	t.Helper()
	if got := liveInstance(t, q, key); got != want {
		t.Errorf("%s: LiveInstance = %q, want %q", what, got, want)
	}
}

func testReleaseForeignHolder(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	m1 := forward(t, f.Queue, key, envelope(1))
	m2 := forward(t, f.Queue, key, envelope(2))
	all := queue.Filter{ConnectionID: conn}
	sameIDs(t, "claim", claim(t, f.Queue, all, 10, holderA), []queue.Message{m1, m2})

	for _, h := range []queue.Holder{
		holderB,
		{Instance: holderA.Instance, Session: "another-session"},
		{Instance: "another-instance", Session: holderA.Session},
		{},
	} {
		if err := f.Queue.Release(ctx, h, conn, []string{m1.ID, m2.ID}); err != nil {
			t.Fatalf("Release by %+v: %v", h, err)
		}
		if s := stats(t, f.Queue, all); s.Count != 0 {
			t.Errorf("Release by foreign holder %+v released %d messages, want none", h, s.Count)
		}
	}
	sameIDs(t, "claim after foreign releases", claim(t, f.Queue, all, 10, holderB), nil)

	if err := f.Queue.Release(ctx, holderA, conn, []string{m2.ID}); err != nil {
		t.Fatalf("Release by holder: %v", err)
	}
	sameIDs(t, "claim after the holder's release", claim(t, f.Queue, all, 10, holderB), []queue.Message{m2})
}

// A release that comes after the lease ran out and someone else claimed the
// message again must leave the new claim alone.
func testReleaseAfterReclaim(t *testing.T, newFixture NewQueueFixture) {
	const lease = 50 * time.Millisecond
	f := newFixture(t, lease)
	ctx := t.Context()
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	sent := forward(t, f.Queue, key, envelope(1))
	all := queue.Filter{ConnectionID: conn}
	sameIDs(t, "first claim", claim(t, f.Queue, all, 10, holderA), []queue.Message{sent})

	deadline := time.Now().Add(10 * time.Second)
	for stats(t, f.Queue, all).Count == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("message still leased %v after a %v lease", 10*time.Second, lease)
		}
		f.Advance(lease / 5)
	}
	// Re-claim for the rest of the test: advance no more.
	sameIDs(t, "claim after expiry", claim(t, f.Queue, all, 10, holderB), []queue.Message{sent})

	if err := f.Queue.Release(ctx, holderA, conn, []string{sent.ID}); err != nil {
		t.Fatalf("late Release: %v", err)
	}
	if s := stats(t, f.Queue, all); s.Count != 0 {
		t.Errorf("late Release by the first holder un-claimed the second holder's message: Stats = %+v", s)
	}
	if err := f.Queue.Release(ctx, holderB, conn, []string{sent.ID}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if s := stats(t, f.Queue, all); s.Count != 1 {
		t.Errorf("Release by the current holder: Stats = %+v, want the message", s)
	}
}

func testLiveInstance(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	key, otherKey := newKey(t), newKey(t)
	conn := mediation(t, f.Store, key)
	mediation(t, f.Store, otherKey)

	wantLive(t, "no session", f.Queue, key, "")

	s1 := queue.Session{ID: newID(), ConnectionID: conn, Instance: "instance-a", Protocol: queue.ProtocolLiveV2}
	register(t, f.Queue, s1)
	wantLive(t, "one session", f.Queue, key, "instance-a")
	res, err := f.Queue.Enqueue(ctx, conn, key, envelope(1))
	if err != nil || res.LiveInstance != "instance-a" {
		t.Errorf("Enqueue: LiveInstance = %q, %v; want instance-a", res.LiveInstance, err)
	}
	wantLive(t, "another connection", f.Queue, otherKey, "")

	// The newest session wins.
	s2 := queue.Session{ID: newID(), ConnectionID: strings.ToUpper(conn), Instance: "instance-b", Protocol: queue.ProtocolImplicit}
	register(t, f.Queue, s2)
	wantLive(t, "second session", f.Queue, key, "instance-b")
	// Registering s1 again (a mode change) updates it but keeps its age.
	s1.Protocol = queue.ProtocolImplicit
	register(t, f.Queue, s1)
	wantLive(t, "first session registered again", f.Queue, key, "instance-b")

	unregister(t, f.Queue, s2.ID)
	wantLive(t, "newest unregistered", f.Queue, key, "instance-a")
	unregister(t, f.Queue, s1.ID)
	wantLive(t, "all unregistered", f.Queue, key, "")
	// Again, or an unknown id: not an error.
	unregister(t, f.Queue, s1.ID)
	unregister(t, f.Queue, newID())
	unregister(t, f.Queue, "")
	wantLive(t, "after unknown unregisters", f.Queue, key, "")
}

func testUnregisterOnlyOwn(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key := newKey(t)
	conn := mediation(t, f.Store, key)
	older := queue.Session{ID: newID(), ConnectionID: conn, Instance: "instance-b", Protocol: queue.ProtocolLiveV2}
	sameInstance := queue.Session{ID: newID(), ConnectionID: conn, Instance: "instance-b", Protocol: queue.ProtocolLiveV2}
	newest := queue.Session{ID: newID(), ConnectionID: conn, Instance: "instance-a", Protocol: queue.ProtocolLiveV2}
	register(t, f.Queue, older)
	register(t, f.Queue, sameInstance)
	register(t, f.Queue, newest)
	wantLive(t, "three sessions", f.Queue, key, "instance-a")

	// Not by connection: the two other sockets' rows stay.
	unregister(t, f.Queue, newest.ID)
	wantLive(t, "newest unregistered", f.Queue, key, "instance-b")
	unregister(t, f.Queue, newest.ID)
	wantLive(t, "newest unregistered twice", f.Queue, key, "instance-b")
	// Not by instance either.
	unregister(t, f.Queue, older.ID)
	wantLive(t, "one of an instance's two sessions unregistered", f.Queue, key, "instance-b")
	unregister(t, f.Queue, sameInstance.ID)
	wantLive(t, "all unregistered", f.Queue, key, "")
}

func testUnregisterReleases(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	key, otherKey := newKey(t), newKey(t)
	conn := mediation(t, f.Store, key)
	other := mediation(t, f.Store, otherKey)
	var sent []queue.Message
	for i := range 4 {
		sent = append(sent, forward(t, f.Queue, key, envelope(i)))
	}
	toOther := forward(t, f.Queue, otherKey, envelope(9))
	s1 := queue.Session{ID: newID(), ConnectionID: conn, Instance: "instance-a", Protocol: queue.ProtocolLiveV2}
	s2 := queue.Session{ID: newID(), ConnectionID: conn, Instance: "instance-a", Protocol: queue.ProtocolLiveV2}
	register(t, f.Queue, s1)
	register(t, f.Queue, s2)
	h1 := queue.Holder{Instance: s1.Instance, Session: s1.ID}
	h2 := queue.Holder{Instance: s2.Instance, Session: s2.ID}
	all, allOther := queue.Filter{ConnectionID: conn}, queue.Filter{ConnectionID: other}
	sameIDs(t, "claim by s1", claim(t, f.Queue, all, 2, h1), sent[:2])
	sameIDs(t, "claim by s2", claim(t, f.Queue, all, 1, h2), sent[2:3])
	// A socket can fetch another connection's messages too.
	sameIDs(t, "claim of the other connection by s1", claim(t, f.Queue, allOther, 10, h1), []queue.Message{toOther})

	unregister(t, f.Queue, s1.ID)
	if s := stats(t, f.Queue, all); s.Count != 3 {
		t.Errorf("Stats after unregistering s1 = %+v, want 3 (its 2 and the pending one)", s)
	}
	got := claim(t, f.Queue, all, 10, holderB)
	sameIDs(t, "claim after unregistering s1", got, []queue.Message{sent[0], sent[1], sent[3]})
	if len(got) > 0 && got[0].Attempts != 2 {
		t.Errorf("attempts of a released message = %d, want 2", got[0].Attempts)
	}
	sameIDs(t, "other connection after unregistering s1", claim(t, f.Queue, allOther, 10, holderB), []queue.Message{toOther})

	// s2's message was left alone until s2 goes.
	unregister(t, f.Queue, s2.ID)
	sameIDs(t, "claim after unregistering s2", claim(t, f.Queue, all, 10, holderB), sent[2:3])
	wantLive(t, "both unregistered", f.Queue, key, "")
}

func testRegisterBadInput(t *testing.T, newFixture NewQueueFixture) {
	f := newFixture(t, 0)
	ctx := t.Context()
	for _, s := range []queue.Session{
		{ID: "", ConnectionID: newID(), Instance: "instance-a", Protocol: queue.ProtocolLiveV2},
		{ID: newID(), ConnectionID: "not-a-uuid", Instance: "instance-a", Protocol: queue.ProtocolLiveV2},
	} {
		if err := f.Queue.RegisterSession(ctx, s); err == nil {
			t.Errorf("RegisterSession(%+v) succeeded, want an error", s)
		}
	}
}
