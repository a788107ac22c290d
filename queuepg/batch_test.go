package queuepg

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

// batchFixture is a queue on a fresh database with a few routed keys.
type batchFixture struct {
	q     *Queue
	st    *storepg.Store
	conns []string // connection ids
	keys  []string // keys[i] is routed to conns[i]
}

func newBatchFixture(t *testing.T, n int, opts Options) batchFixture {
	t.Helper()
	pool := pgtest.NewPool(t)
	f := batchFixture{q: New(pool, opts), st: storepg.New(pool)}
	t.Cleanup(f.q.Close)
	for range n {
		conn, key := uuid.NewString(), randomKey(t)
		if err := f.st.InsertConnection(t.Context(), record.Connection{ID: conn, OurKey: randomKey(t), TheirKey: randomKey(t),
			State: record.StateCompleted, Mediation: record.MediationGranted}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.AddRoute(t.Context(), conn, key); err != nil {
			t.Fatal(err)
		}
		f.conns, f.keys = append(f.conns, conn), append(f.keys, key)
	}
	return f
}

func randomKey(t *testing.T) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base58.Encode(b[:])
}

func payload(i int) []byte { return fmt.Appendf(nil, `{"protected":"p","ciphertext":"c-%d"}`, i) }

// request builds what EnqueueForward hands the batcher.
func request(t *testing.T, key string, p []byte) *forwardReq {
	t.Helper()
	did, err := didKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &forwardReq{id: uuid.Must(uuid.NewV7()), key: key, did: did, payload: p, done: make(chan forwardResult, 1)}
}

func (f batchFixture) count(t *testing.T, conn string) int {
	t.Helper()
	s, err := f.q.Stats(t.Context(), queue.Filter{ConnectionID: conn})
	if err != nil {
		t.Fatal(err)
	}
	return s.Count
}

// One statement with rows for a known recipient, an unknown one and one at
// its hard cap: each row gets its own outcome, and the cap is exact within
// the batch (messages of the same batch count towards it, in order).
func TestBatchMixesKnownUnknownAndFull(t *testing.T) {
	f := newBatchFixture(t, 2, Options{Caps: queue.Caps{Soft: 1, Hard: 2}})
	known, capped := f.keys[0], f.keys[1]
	if _, err := f.q.EnqueueForward(t.Context(), capped, payload(0)); err != nil {
		t.Fatal(err)
	}
	unknown := randomKey(t)
	batch := []*forwardReq{
		request(t, known, payload(1)),
		request(t, unknown, payload(2)),
		request(t, capped, payload(3)), // the second: fits, over the soft cap
		request(t, known, payload(4)),
		request(t, capped, payload(5)), // the third: full
		request(t, capped, payload(6)), // full
	}
	f.q.flush(t.Context(), batch, nil)
	type want struct {
		conn     string
		depth    int
		overSoft bool
		err      error
	}
	for i, w := range []want{
		{f.conns[0], 0, false, nil},
		{"", 0, false, queue.ErrUnknownRecipient},
		{f.conns[1], 1, true, nil},
		{f.conns[0], 1, true, nil},
		{"", 0, false, queue.ErrQueueFull},
		{"", 0, false, queue.ErrQueueFull},
	} {
		got := <-batch[i].done
		if w.err != nil {
			if !errors.Is(got.err, w.err) {
				t.Errorf("row %d: error %v, want %v", i, got.err, w.err)
			}
			continue
		}
		m := got.res
		if got.err != nil || m.ID != batch[i].id.String() || m.ConnectionID != w.conn || m.RecipientKey != batch[i].key ||
			m.Depth != w.depth || m.OverSoftCap != w.overSoft || m.ReceivedAt.IsZero() || string(m.Payload) != string(batch[i].payload) {
			t.Errorf("row %d: %+v, %v; want id %s, connection %s, depth %d, over soft %v",
				i, m, got.err, batch[i].id, w.conn, w.depth, w.overSoft)
		}
	}
	if n := f.count(t, f.conns[0]); n != 2 {
		t.Errorf("known recipient holds %d messages, want 2", n)
	}
	if n := f.count(t, f.conns[1]); n != 2 {
		t.Errorf("capped recipient holds %d messages, want its hard cap 2", n)
	}
}

// A row the server refuses fails the statement; the batch is retried row by
// row, so only that row fails. No payload is refused any more (bytea takes
// any bytes), so a did with a NUL byte, which text refuses, stands in.
func TestBatchStatementErrorStaysWithItsRow(t *testing.T) {
	f := newBatchFixture(t, 1, Options{})
	key := f.keys[0]
	poison := request(t, key, payload(3))
	poison.did = "did:key:\x00"
	batch := []*forwardReq{request(t, key, payload(1)), poison, request(t, key, payload(2))}
	f.q.flush(t.Context(), batch, nil)
	for i, r := range batch {
		got := <-r.done
		if (got.err != nil) != (i == 1) {
			t.Errorf("row %d: %v", i, got.err)
		}
	}
	if n := f.count(t, f.conns[0]); n != 2 {
		t.Errorf("%d messages queued, want the 2 good ones", n)
	}
}

// 50 goroutines forwarding at once (to 5 connections) all get their own,
// distinct results, fewer statements than forwards run, and every message
// is queued once.
func TestBatchConcurrentForwards(t *testing.T) {
	const senders = 50
	f := newBatchFixture(t, 5, Options{})
	results := make([]queue.Enqueued, senders)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range senders {
		wg.Go(func() {
			<-start
			res, err := f.q.EnqueueForward(context.Background(), f.keys[i%5], payload(i))
			if err != nil {
				t.Errorf("forward %d: %v", i, err)
			}
			results[i] = res
		})
	}
	close(start)
	wg.Wait()
	ids := map[string]int{}
	for i, res := range results {
		if res.ConnectionID != f.conns[i%5] || res.RecipientKey != f.keys[i%5] || string(res.Payload) != string(payload(i)) {
			t.Errorf("forward %d: %+v; want connection %s, its own key and payload", i, res, f.conns[i%5])
		}
		if j, dup := ids[res.ID]; dup {
			t.Errorf("forwards %d and %d got the same id %s", j, i, res.ID)
		}
		ids[res.ID] = i
	}
	for c, conn := range f.conns {
		msgs, err := f.q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 100, queue.Holder{Instance: "i", Session: "s"})
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, m := range msgs {
			got = append(got, m.ID)
		}
		for i, res := range results {
			if i%5 == c {
				want = append(want, res.ID)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("connection %d holds %v, want %v", c, got, want)
		}
	}
	t.Logf("%d forwards in %d statements", f.q.batch.requests.Load(), f.q.batch.batches.Load())
	if f.q.batch.requests.Load() != senders {
		t.Errorf("%d requests went through the batcher, want %d", f.q.batch.requests.Load(), senders)
	}
}

// A forward that finds the batcher idle goes at once, alone: there is no
// timer waiting for company. (The bound is generous, for busy test
// machines; a batching timer on lone forwards would show in the median.)
func TestBatchLoneForwardIsNotDelayed(t *testing.T) {
	f := newBatchFixture(t, 1, Options{})
	var (
		mu      sync.Mutex
		started time.Time
		sizes   []int
	)
	f.q.batch.beforeFlush = func(batch []*forwardReq) {
		mu.Lock()
		started = time.Now()
		sizes = append(sizes, len(batch))
		mu.Unlock()
	}
	var delays []time.Duration
	for i := range 21 {
		t0 := time.Now()
		if _, err := f.q.EnqueueForward(t.Context(), f.keys[0], payload(i)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		delays = append(delays, started.Sub(t0))
		mu.Unlock()
	}
	slices.Sort(delays)
	if median := delays[len(delays)/2]; median > 5*time.Millisecond {
		t.Errorf("median delay from EnqueueForward to its statement %v, want no wait at all (all: %v)", median, delays)
	}
	t.Logf("delay from EnqueueForward to its statement: median %v, max %v", delays[len(delays)/2], delays[len(delays)-1])
	for _, n := range sizes {
		if n != 1 {
			t.Fatalf("lone forwards went in batches of %v, want 1 each", sizes)
		}
	}
}

// Close queues what was handed over, then stops the flushers; forwards
// after Close still work, each with its own statement.
func TestBatchCloseFlushesAndStops(t *testing.T) {
	f := newBatchFixture(t, 1, Options{Flushers: 1})
	release := make(chan struct{})
	first := make(chan struct{})
	var once sync.Once
	f.q.batch.beforeFlush = func([]*forwardReq) {
		once.Do(func() { close(first); <-release })
	}
	const n = 5
	errs := make(chan error, n)
	go func() {
		_, err := f.q.EnqueueForward(context.Background(), f.keys[0], payload(0))
		errs <- err
	}()
	<-first // the flusher holds the first forward; the others wait behind it
	for i := 1; i < n; i++ {
		go func() {
			_, err := f.q.EnqueueForward(context.Background(), f.keys[0], payload(i))
			errs <- err
		}()
	}
	waitFor(t, func() bool { f.q.batch.mu.Lock(); defer f.q.batch.mu.Unlock(); return len(f.q.batch.pending) == n-1 })
	closed := make(chan struct{})
	go func() { f.q.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a flush was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("forward handed over before Close: %v", err)
		}
	}
	if got := f.count(t, f.conns[0]); got != n {
		t.Errorf("%d messages queued, want %d", got, n)
	}
	before := f.q.batch.batches.Load()
	if _, err := f.q.EnqueueForward(t.Context(), f.keys[0], payload(9)); err != nil {
		t.Fatalf("forward after Close: %v", err)
	}
	if f.q.batch.batches.Load() != before {
		t.Error("a forward after Close went through the batcher")
	}
	if got := f.count(t, f.conns[0]); got != n+1 {
		t.Errorf("%d messages queued, want %d", got, n+1)
	}
	f.q.Close() // idempotent
}

// A caller that gives up while its forward still waits is never queued; one
// that gives up while its statement runs gets the statement's outcome.
func TestBatchCancellation(t *testing.T) {
	f := newBatchFixture(t, 1, Options{Flushers: 1})
	release := make(chan struct{})
	taken := make(chan struct{}, 10)
	f.q.batch.beforeFlush = func([]*forwardReq) { taken <- struct{}{}; <-release }

	// The first forward's statement is held; its caller gives up meanwhile.
	ctx1, cancel1 := context.WithCancel(context.Background())
	type outcome struct {
		res queue.Enqueued
		err error
	}
	out1 := make(chan outcome, 1)
	go func() {
		res, err := f.q.EnqueueForward(ctx1, f.keys[0], payload(1))
		out1 <- outcome{res, err}
	}()
	<-taken
	// The second waits behind it, and its caller gives up too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	out2 := make(chan error, 1)
	go func() {
		_, err := f.q.EnqueueForward(ctx2, f.keys[0], payload(2))
		out2 <- err
	}()
	waitFor(t, func() bool { f.q.batch.mu.Lock(); defer f.q.batch.mu.Unlock(); return len(f.q.batch.pending) == 1 })
	cancel2()
	if err := <-out2; !errors.Is(err, context.Canceled) {
		t.Fatalf("withdrawn forward: %v, want context.Canceled", err)
	}
	cancel1()
	select {
	case o := <-out1:
		t.Fatalf("forward whose statement runs returned early: %+v", o)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	o := <-out1
	if o.err != nil || o.res.ID == "" {
		t.Fatalf("forward cancelled during its statement: %+v, %v; want its message", o.res, o.err)
	}
	// Only the first is queued, and the withdrawn one never reached a
	// statement.
	msgs, err := f.q.Claim(t.Context(), queue.Filter{ConnectionID: f.conns[0]}, 10, queue.Holder{Instance: "i", Session: "s"})
	if err != nil || len(msgs) != 1 || msgs[0].ID != o.res.ID {
		t.Fatalf("queued: %+v, %v; want only %s", msgs, err, o.res.ID)
	}
	if n := f.q.batch.requests.Load(); n != 1 {
		t.Errorf("%d requests reached a statement, want 1", n)
	}
}

// Batches are bounded in rows and bytes, and a flush runs beside a running
// one only for a full batch.
func TestBatchBounds(t *testing.T) {
	f := newBatchFixture(t, 1, Options{MaxBatch: 3, Flushers: 2})
	release := make(chan struct{})
	var (
		mu    sync.Mutex
		sizes []int
	)
	f.q.batch.beforeFlush = func(batch []*forwardReq) {
		mu.Lock()
		sizes = append(sizes, len(batch))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
	}
	var wg sync.WaitGroup
	forward := func(i int) {
		wg.Go(func() {
			if _, err := f.q.EnqueueForward(context.Background(), f.keys[0], payload(i)); err != nil {
				t.Error(err)
			}
		})
	}
	forward(0)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	forward(1)
	forward(2)
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	if len(sizes) != 1 {
		t.Errorf("a batch of 2 started beside the running flush: %v", sizes)
	}
	mu.Unlock()
	forward(3) // now 3 wait: a full batch goes beside the held one
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 2 })
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sizes, []int{1, 3}) {
		t.Errorf("batch sizes %v, want [1 3]", sizes)
	}

	big := make([]byte, maxBatchBytes/2+1)
	copy(big, `{"x":"`)
	for i := 6; i < len(big)-2; i++ {
		big[i] = 'a'
	}
	copy(big[len(big)-2:], `"}`)
	b := f.q.batch
	b.mu.Lock() // the flushers wait while the line fills
	reqs := []*forwardReq{request(t, f.keys[0], big), request(t, f.keys[0], big), request(t, f.keys[0], payload(7))}
	b.pending = append(b.pending, reqs...)
	sizes = sizes[:0]
	b.ready.Broadcast()
	b.mu.Unlock()
	mu.Unlock()
	for _, r := range reqs {
		if res := <-r.done; res.err != nil {
			t.Fatal(res.err)
		}
	}
	mu.Lock()
	if !slices.Equal(sizes, []int{1, 2}) {
		t.Errorf("batch sizes with two %d-byte payloads: %v, want [1 2]", len(big), sizes)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// The batch statement runs on its generic plan (enqueuePlanSQL), planned
// once per connection: on a database of many routes, sessions and messages
// (analyzed, as autovacuum does; ANALYZE also makes PostgreSQL plan cached
// statements again) it must probe mediation_route by primary key, count a
// connection's queue and find its live session on their connection indexes,
// and never need JIT.
func TestBatchGenericPlan(t *testing.T) {
	for _, tc := range []struct {
		name              string
		connections, live int
		backlog           int
		want              []string
	}{
		{"large", 50_000, 20_000, 50_000, []string{"Index Scan using mediation_route_pkey",
			"Index Only Scan using queued_message_connection_created_idx", "live_session_connection_idx"}},
		// Analyzed while small and idle, as autovacuum finds a queue
		// table between bursts: the queue counts must still be index
		// probes when the burst comes, not scans of the whole table.
		// (Routes and sessions grow slowly enough for autovacuum's next
		// ANALYZE to catch up.)
		{"small and empty", 50, 0, 0, []string{"Index Only Scan using queued_message_connection_created_idx"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testBatchGenericPlan(t, tc.connections, tc.live, tc.backlog, tc.want) })
	}
}

func testBatchGenericPlan(t *testing.T, connections, live, backlogRows int, want []string) {
	f := newBatchFixture(t, 1, Options{})
	ctx := t.Context()
	pool := f.q.pool
	_, err := pool.Exec(ctx, `
		WITH c AS (
		    INSERT INTO didcomm_connection (id, our_key, their_key)
		    SELECT md5('c' || g)::uuid, 'o' || g, 't' || g FROM generate_series(1, $1::int) g
		    RETURNING id
		)
		INSERT INTO mediation_route (recipient_key, connection_id) SELECT 'k' || id, id FROM c`, connections)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO live_session (session_id, connection_id, protocol_version, instance)
		SELECT 's' || g, md5('c' || g)::uuid, 'v2', 'instance-' || (g % 3) FROM generate_series(1, $1::int) g`, live)
	if err != nil {
		t.Fatal(err)
	}
	backlog(t, pool, backlogRows)
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil { // as autovacuum does
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "PREPARE fwd(interval, text, uuid[], text[], text[], bytea[], int[], int, int, uuid[], int[], timestamptz[], uuid[], int) AS "+enqueueForwardsSQL); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "DEALLOCATE fwd")
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, enqueuePlanSQL); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `EXPLAIN EXECUTE fwd('1 minute', 'me', ARRAY[gen_random_uuid()], ARRAY['k1'], ARRAY['did'],
		ARRAY['{}'::bytea], ARRAY[2], 10000, 10000, ARRAY[md5('c1')::uuid], ARRAY[5], ARRAY[now()], ARRAY[gen_random_uuid()], 1000)`,
		pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	p := plan.String()
	for _, want := range want {
		if !strings.Contains(p, want) {
			t.Errorf("generic plan does not use %s:\n%s", want, p)
		}
	}
	for _, bad := range []string{"Seq Scan on mediation_route", "Seq Scan on queued_message", "Seq Scan on live_session", "Bitmap", "JIT"} {
		if strings.Contains(p, bad) {
			t.Errorf("generic plan has %q:\n%s", bad, p)
		}
	}
}

// Forwards, claims, acks and counts run under their plan settings: generic plans
// from the first call (planning costs more than running them), which shows
// that the settings hold in the batch that carries each statement, and end
// with it.
func TestStatementsRunGenericPlans(t *testing.T) {
	f := newBatchFixture(t, 1, Options{})
	cfg := f.q.pool.Config().Copy()
	cfg.MaxConns = 1 // pg_prepared_statements is per session: see all on one
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	q := New(pool, Options{})
	t.Cleanup(q.Close)
	h := queue.Holder{Instance: "i", Session: "s"}
	for i := range 3 {
		if _, err := q.EnqueueForward(t.Context(), f.keys[0], payload(i)); err != nil {
			t.Fatal(err)
		}
		got, err := q.Claim(t.Context(), queue.Filter{ConnectionID: f.conns[0]}, 10, h)
		if err != nil || len(got) != 1 {
			t.Fatalf("Claim = %d messages, %v; want 1", len(got), err)
		}
		if n, err := q.Ack(t.Context(), f.conns[0], []string{got[0].ID}); err != nil || n != 1 {
			t.Fatalf("Ack = %d, %v; want 1", n, err)
		}
		if st, err := q.Stats(t.Context(), queue.Filter{ConnectionID: f.conns[0]}); err != nil || st.Count != 0 {
			t.Fatalf("Stats = %+v, %v; want an empty queue", st, err)
		}
	}
	for _, tc := range []struct{ name, sql string }{
		{"forward", enqueueForwardsSQL}, {"claim", claimSQL}, {"ack", ackSQL}, {"stats", statsSQL},
	} {
		var generic, custom int64
		if err := pool.QueryRow(t.Context(),
			"SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", tc.sql).
			Scan(&generic, &custom); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if generic != 3 || custom != 0 {
			t.Errorf("%s: %d generic and %d custom plans, want 3 and 0", tc.name, generic, custom)
		}
	}
	var mode string
	if err := pool.QueryRow(t.Context(), "SELECT current_setting('plan_cache_mode')").Scan(&mode); err != nil || mode != "auto" {
		t.Errorf("plan_cache_mode after the batches = %q, %v; want the default, auto", mode, err)
	}
}
