package pickup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// sizedPayload is a distinct JSON object of exactly n bytes.
func sizedPayload(i, n int) []byte {
	head := fmt.Sprintf(`{"protected":"p%d","ciphertext":"`, i)
	const tail = `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

// spyQueue is a pickup.Queue that records what the service asks of it.
type spyQueue struct {
	*memstore.Memory
	mu       sync.Mutex
	claims   []int // limit of each Claim
	released int   // ids passed to Release
	acks     []int // ids per Ack
}

func (q *spyQueue) Claim(ctx context.Context, f queue.Filter, limit int, h queue.Holder) ([]queue.Message, error) {
	q.mu.Lock()
	q.claims = append(q.claims, limit)
	q.mu.Unlock()
	return q.Memory.Claim(ctx, f, limit, h)
}

func (q *spyQueue) Release(ctx context.Context, h queue.Holder, connectionID string, ids []string) error {
	q.mu.Lock()
	q.released += len(ids)
	q.mu.Unlock()
	return q.Memory.Release(ctx, h, connectionID, ids)
}

func (q *spyQueue) Ack(ctx context.Context, connectionID string, ids []string) (int, error) {
	q.mu.Lock()
	q.acks = append(q.acks, len(ids))
	q.mu.Unlock()
	return q.Memory.Ack(ctx, connectionID, ids)
}

func (q *spyQueue) AckStats(ctx context.Context, connectionID string, ids []string) (int, queue.Stats, error) {
	q.mu.Lock()
	q.acks = append(q.acks, len(ids))
	q.mu.Unlock()
	return q.Memory.AckStats(ctx, connectionID, ids)
}

func (q *spyQueue) take() (claims []int, released int, acks []int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	claims, released, acks = q.claims, q.released, q.acks
	q.claims, q.released, q.acks = nil, 0, nil
	return claims, released, acks
}

// newSpyFixture is newFixture with the service's queue spied on.
func newSpyFixture(t *testing.T, opts pickup.Options) (*fixture, *spyQueue) {
	t.Helper()
	c := &clock{now: t0}
	opts.Now = c.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st := memstore.New(memstore.Options{Now: c.Now, Lease: time.Minute})
	spy := &spyQueue{Memory: st}
	return &fixture{clock: c, store: st, svc: pickup.New(spy, opts)}, spy
}

const kib = 1024

func repeatSize(size, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = size
	}
	return out
}

func TestDeliveryRequestByteCap(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		maxBytes int64
		sizes    []int // queued payload sizes, oldest first
		limit    int
		want     int // the oldest want messages are delivered
		wantLeft int // claimable right after (released, not leased)
	}{
		{name: "1 KiB messages, cap 2,500", maxBytes: 2500, sizes: repeatSize(kib, 5), limit: 10, want: 2, wantLeft: 3},
		{name: "total exactly the cap", maxBytes: 2 * kib, sizes: repeatSize(kib, 3), limit: 10, want: 2, wantLeft: 1},
		{name: "one message over the cap goes alone", maxBytes: 2500, sizes: []int{5 * kib, kib}, limit: 10, want: 1, wantLeft: 1},
		{name: "only message over the cap", maxBytes: 2500, sizes: []int{5 * kib}, limit: 10, want: 1, wantLeft: 0},
		{name: "oldest first: a big one ends the batch", maxBytes: 2500, sizes: []int{kib, 5 * kib, 100}, limit: 10, want: 1, wantLeft: 2},
		{name: "limit reached before the cap", maxBytes: 2500, sizes: repeatSize(kib, 5), limit: 1, want: 1, wantLeft: 4},
		{name: "default cap 4 MiB", sizes: repeatSize(1536*kib, 3), limit: 10, want: 2, wantLeft: 1},
		{name: "cap reached in a later claim round", maxBytes: 1500, sizes: repeatSize(100, 30), limit: 100, want: 15, wantLeft: 15},
		{name: "everything fits across claim rounds", sizes: repeatSize(100, 25), limit: 25, want: 25, wantLeft: 0},
		{name: "more than fits in the rounds", maxBytes: 1 << 20, sizes: repeatSize(100, 120), limit: 100, want: 100, wantLeft: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, pickup.Options{MaxBatchBytes: tc.maxBytes})
			conn, k := uuid.NewString(), newVerkey(t)
			var queued []queue.Message
			for i, n := range tc.sizes {
				queued = append(queued, f.enqueue(t, conn, k, sizedPayload(i, n), time.Second))
			}
			w := newWallet(conn, newSession(transport.KindHTTP))
			if err := f.svc.Handle(ctx, w.conv, parseMsg(t, fmt.Sprintf(
				`{"@type":"https://didcomm.org/messagepickup/2.0/delivery-request","@id":"dr","limit":%d}`, tc.limit))); err != nil {
				t.Fatal(err)
			}
			got := w.take(t)
			checkType(t, got, pickup.TypeV2Delivery)
			att := attachments(t, got)
			if len(att) != tc.want {
				t.Fatalf("%d attachments, want %d", len(att), tc.want)
			}
			for i := range att {
				if att[i].ID != queued[i].ID || !jsonEqual(att[i].Data.JSON, queued[i].Payload) {
					t.Fatalf("attachment %d is %s, want queued message %d (%s)", i, att[i].ID, i, queued[i].ID)
				}
			}
			if n := f.count(t, conn, ""); n != tc.wantLeft {
				t.Fatalf("claimable right after = %d, want %d", n, tc.wantLeft)
			}
		})
	}
}

// The rest of a capped batch is claimable at once: the next requests get it.
func TestDeliveryRequestByteCapDrainsInOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pickup.Options{MaxBatchBytes: 2500})
	conn, k := uuid.NewString(), newVerkey(t)
	var queued []queue.Message
	for i := range 5 {
		queued = append(queued, f.enqueue(t, conn, k, sizedPayload(i, kib), time.Second))
	}
	w := newWallet(conn, newSession(transport.KindHTTP))
	for round, want := range [][]int{{0, 1}, {2, 3}, {4}} {
		if err := f.svc.Handle(ctx, w.conv, parseMsg(t,
			`{"@type":"https://didcomm.org/messagepickup/2.0/delivery-request","@id":"dr","limit":100}`)); err != nil {
			t.Fatal(err)
		}
		att := attachments(t, w.take(t))
		if len(att) != len(want) {
			t.Fatalf("request %d: %d attachments, want %d", round, len(att), len(want))
		}
		for i, idx := range want {
			if att[i].ID != queued[idx].ID {
				t.Fatalf("request %d attachment %d = %s, want message %d", round, i, att[i].ID, idx)
			}
		}
	}
}

// A backlog of large messages is not claimed (read into memory) whole just
// to be released: the first claim asks for a few.
func TestByteCapClaimsFewUpFront(t *testing.T) {
	ctx := context.Background()
	f, spy := newSpyFixture(t, pickup.Options{MaxBatchBytes: 4000})
	conn, k := uuid.NewString(), newVerkey(t)
	for i := range 60 {
		f.enqueue(t, conn, k, sizedPayload(i, 3500), time.Second)
	}
	w := newWallet(conn, newSession(transport.KindHTTP))
	if err := f.svc.Handle(ctx, w.conv, parseMsg(t,
		`{"@type":"https://didcomm.org/messagepickup/2.0/delivery-request","@id":"dr","limit":100}`)); err != nil {
		t.Fatal(err)
	}
	if att := attachments(t, w.take(t)); len(att) != 1 {
		t.Fatalf("%d attachments, want 1", len(att))
	}
	claims, released, _ := spy.take()
	if len(claims) != 1 || claims[0] != 10 || released != 9 {
		t.Fatalf("claims %v, released %d: want one claim of 10 with 9 released", claims, released)
	}
	if n := f.count(t, conn, ""); n != 59 {
		t.Fatalf("claimable = %d, want 59", n)
	}
}

// messages-received deletes what it names and answers with the count left,
// in one call to the queue.
func TestMessagesReceivedAcksAndCounts(t *testing.T) {
	ctx := context.Background()
	f, spy := newSpyFixture(t, pickup.Options{})
	conn, k := uuid.NewString(), newVerkey(t)
	var queued []queue.Message
	for i := range 3 {
		queued = append(queued, f.enqueue(t, conn, k, payload(i), time.Second))
	}
	w := newWallet(conn, newSession(transport.KindHTTP))
	if err := f.svc.Handle(ctx, w.conv, parseMsg(t, `{"@type":"https://didcomm.org/messagepickup/2.0/messages-received","@id":"mr",`+
		`"message_id_list":["`+queued[0].ID+`","`+queued[2].ID+`","not-an-id"]}`)); err != nil {
		t.Fatal(err)
	}
	got := w.take(t)
	checkType(t, got, pickup.TypeV2Status)
	checkThread(t, got, `{"thid":"mr"}`)
	if string(got["message_count"]) != "1" {
		t.Fatalf("message_count = %s, want 1", got["message_count"])
	}
	if _, _, acks := spy.take(); fmt.Sprint(acks) != "[3]" {
		t.Fatalf("acknowledgements %v, want one of 3 ids", acks)
	}
	if n := f.count(t, conn, ""); n != 1 {
		t.Fatalf("claimable = %d, want 1", n)
	}
}

func TestLivePushByteCap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pickup.Options{MaxBatchBytes: 2500})
	conn, k := uuid.NewString(), newVerkey(t)
	w := newWallet(conn, newSession(transport.KindWebSocket))
	if err := f.svc.Handle(ctx, w.conv, parseMsg(t,
		`{"@type":"https://didcomm.org/messagepickup/2.0/live-delivery-change","@id":"on","live_delivery":true}`)); err != nil {
		t.Fatal(err)
	}
	w.take(t)
	var queued []queue.Message
	for i := range 5 {
		queued = append(queued, f.enqueue(t, conn, k, sizedPayload(i, kib), time.Second))
	}
	f.svc.MessageQueued(ctx, conn)
	for round, want := range [][]int{{0, 1}, {2, 3}, {4}} {
		var push map[string]json.RawMessage
		if round == 0 {
			push = w.waitTake(t)
		} else {
			// messages-received answers with a status; the push follows.
			waitFor(t, func() bool { return len(w.messages()) >= 2 })
			for _, raw := range w.messages() {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				if str(t, m["@type"]) == pickup.TypeV2Delivery {
					push = m
				}
			}
			w.mu.Lock()
			w.sent = nil
			w.mu.Unlock()
		}
		checkType(t, push, pickup.TypeV2Delivery)
		att := attachments(t, push)
		if len(att) != len(want) {
			t.Fatalf("push %d: %d attachments, want %d", round, len(att), len(want))
		}
		ids := make([]string, len(att))
		for i, idx := range want {
			if att[i].ID != queued[idx].ID {
				t.Fatalf("push %d attachment %d = %s, want message %d", round, i, att[i].ID, idx)
			}
			ids[i] = att[i].ID
		}
		// The rest was released, not left leased.
		if n, wantLeft := f.count(t, conn, ""), 5-want[len(want)-1]-1; n != wantLeft {
			t.Fatalf("push %d: claimable = %d, want %d", round, n, wantLeft)
		}
		list, _ := json.Marshal(ids)
		if err := f.svc.Handle(ctx, w.conv, parseMsg(t,
			`{"@type":"https://didcomm.org/messagepickup/2.0/messages-received","@id":"mr","message_id_list":`+string(list)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBatchPickupByteCap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pickup.Options{MaxBatchBytes: 2500})
	conn, k := uuid.NewString(), newVerkey(t)
	var queued []queue.Message
	for i := range 5 {
		queued = append(queued, f.enqueue(t, conn, k, sizedPayload(i, kib), time.Second))
	}
	big := f.enqueue(t, conn, k, sizedPayload(9, 5*kib), time.Second)
	w := newWallet(conn, newSession(transport.KindHTTP))
	items := func() []batchItemOut {
		t.Helper()
		if err := f.svc.Handle(ctx, w.conv, parseMsg(t,
			`{"@type":"https://didcomm.org/messagepickup/1.0/batch-pickup","@id":"bp","batch_size":10}`)); err != nil {
			t.Fatal(err)
		}
		var out []batchItemOut
		if err := json.Unmarshal(w.take(t)["messages~attach"], &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := items()
	if len(got) != 2 || got[0].ID != queued[0].ID || got[1].ID != queued[1].ID {
		t.Fatalf("batch %+v, want messages 0 and 1", got)
	}
	// The two sent are deleted; the other four are claimable at once.
	if n := f.count(t, conn, ""); n != 4 {
		t.Fatalf("claimable = %d, want 4", n)
	}
	f.clock.Advance(2 * time.Minute)
	if n := f.count(t, conn, ""); n != 4 {
		t.Fatalf("claimable after the lease = %d, want 4", n)
	}
	got = items()
	if len(got) != 2 || got[0].ID != queued[2].ID || got[1].ID != queued[3].ID {
		t.Fatalf("second batch %+v, want messages 2 and 3", got)
	}
	got = items()
	if len(got) != 1 || got[0].ID != queued[4].ID {
		t.Fatalf("third batch %+v, want message 4 (the big one next does not fit)", got)
	}
	got = items()
	if len(got) != 1 || got[0].ID != big.ID {
		t.Fatalf("fourth batch %+v, want the 5 KiB message alone", got)
	}
}

type batchItemOut struct {
	ID string `json:"id"`
}

// recordingSession is a WebSocket-like session that records raw sends.
type recordingSession struct {
	*session
	mu   sync.Mutex
	sent [][]byte
}

func (s *recordingSession) Send(_ context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, b)
	return nil
}

func (s *recordingSession) payloads() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.sent...)
}

func TestImplicitPushByteCap(t *testing.T) {
	ctx := context.Background()
	f, spy := newSpyFixture(t, pickup.Options{Implicit: true, MaxBatchBytes: 2500})
	conn, k := uuid.NewString(), newVerkey(t)
	var queued []queue.Message
	for i := range 5 {
		queued = append(queued, f.enqueue(t, conn, k, sizedPayload(i, kib), time.Second))
	}
	sock := &recordingSession{session: newSession(transport.KindWebSocket)}
	f.svc.Implicit(ctx, newWallet(conn, sock).conv)
	waitFor(t, func() bool { return len(sock.payloads()) == 5 })
	for i, p := range sock.payloads() {
		if string(p) != string(queued[i].Payload) {
			t.Fatalf("raw push %d is not message %d", i, i)
		}
	}
	waitFor(t, func() bool { return f.count(t, conn, "") == 0 })
	_, _, acks := spy.take()
	if fmt.Sprint(acks) != "[2 2 1]" {
		t.Fatalf("deleted in batches of %v, want [2 2 1] (2,500 bytes of 1 KiB messages each)", acks)
	}
	sock.Close()
	waitFor(t, func() bool { return f.svc.LiveSessions() == 0 })
	if err := f.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
