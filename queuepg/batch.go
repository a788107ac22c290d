package queuepg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/openmediator/mediator/queue"
)

// Defaults of the forward batcher (Options.MaxBatch, Options.Flushers).
const (
	DefaultMaxBatch = 64
	DefaultFlushers = 2
)

// parallelAt is how many forwards must be waiting for a statement to start
// beside a running one (when Options.Flushers allows): fewer wait for the
// running statement to finish and go together in the next. Measured on 2
// cores with 16 concurrent senders, where a statement of ~7 forwards takes
// about 1.2 ms, most of it the commit's WAL flush: one statement at a time
// queued ~4,600 forwards/s; a second one started at 4-8 waiting forwards,
// 5,400-6,700/s (it runs while the other waits for its flush); started for
// any single waiting forward, batches shrink and the CPU per forward grows.
const parallelAt = 8

// maxBatchBytes bounds the payload bytes of one batch statement (a batch
// holds at least one request, however big): messages can be megabytes.
const maxBatchBytes = 4 << 20

// Group commit of forwards.
//
// Every forward is a durable insert, and a commit costs a WAL flush (an
// fsync) no matter how small the transaction is. EnqueueForward therefore
// does not run its own statement: it hands its request to a batcher whose
// flusher goroutines queue whatever requests are waiting, up to
// Options.MaxBatch, with ONE statement (enqueueForwardsSQL): one round
// trip, one commit, one fsync for the lot.
//
// A flush starts when no flush is running (the first request that finds
// the batcher idle goes at once: there is no timer, a lone forward is not
// delayed), or when enough requests wait (parallelAt) and fewer than
// Options.Flushers flushes are running. So requests that arrive while a
// statement runs wait for it and go together in the next one ("natural
// batching"): the busier the mediator, the bigger the batches, and a
// forward waits at most about one statement's time before its own starts.
//
// Each caller gets its own result: its message id, or queue.ErrUnknownRecipient
// or queue.ErrQueueFull for its own row; one row's refusal does not affect
// the others. If the statement as a whole fails with an error from the
// server (say, one payload PostgreSQL cannot store), nothing was committed,
// and every request of the batch is retried alone, so that the error stays
// with the row that caused it.
//
// Cancellation: a caller whose context ends while its request still waits
// withdraws it (it is never queued) and gets the context's error. Once a
// flusher has taken the request, its statement runs to the end regardless
// (bounded by Options.Timeout), and the caller waits for and gets the
// real outcome: a message is never queued for a caller that was told it
// failed, nor reported queued when it was not.

// Request states: a flusher takes a pending request, or its caller
// withdraws it; whoever moves it first wins.
const (
	reqPending int32 = iota
	reqTaken
	reqWithdrawn
)

// forwardReq is one EnqueueForward waiting for a flusher.
type forwardReq struct {
	id      uuid.UUID // chosen here, so that rows map back to requests
	key     string
	did     string
	payload json.RawMessage // our own copy
	state   atomic.Int32
	done    chan forwardResult // buffered: a flusher never blocks on it
}

type forwardResult struct {
	res queue.Enqueued
	err error
}

// take marks r as taken by a flusher; false if its caller withdrew it.
func (r *forwardReq) take() bool { return r.state.CompareAndSwap(reqPending, reqTaken) }

// withdraw takes r back for its caller; false if a flusher has it.
func (r *forwardReq) withdraw() bool { return r.state.CompareAndSwap(reqPending, reqWithdrawn) }

// flushRun is one flush, for deciding which depth hints it may record
// (depthhint.go); its fields are guarded by batcher.mu.
type flushRun struct {
	keys     []string               // the recipient keys of its batch
	overlaps map[*flushRun]struct{} // the flushes that ran beside it
	done     bool                   // its statement has finished
	conns    map[uuid.UUID]bool     // then: the connections it queued to
}

// batcher groups concurrent forwards into multi-row statements.
type batcher struct {
	q        *Queue
	maxBatch int
	flushers int
	// parallelAt is how many requests must wait for a flush to start
	// beside a running one.
	parallelAt int

	start sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	ready   sync.Cond // a flush may start, or the batcher closed
	pending []*forwardReq
	running map[*flushRun]struct{} // flushes in progress
	closed  bool

	// batches and requests count the statements run and the requests
	// they carried (BatchStats, tests).
	batches, requests atomic.Int64
	// beforeFlush, when set (tests), is called by the flusher with each
	// batch it has taken, before running its statement.
	beforeFlush func(batch []*forwardReq)
}

func newBatcher(q *Queue, maxBatch, flushers int) *batcher {
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	if flushers <= 0 {
		flushers = DefaultFlushers
	}
	b := &batcher{q: q, maxBatch: maxBatch, flushers: flushers, parallelAt: min(parallelAt, maxBatch), running: map[*flushRun]struct{}{}}
	b.ready.L = &b.mu
	return b
}

// run starts the flushers (once, on first use).
func (b *batcher) run() {
	b.start.Do(func() {
		b.wg.Add(b.flushers)
		for range b.flushers {
			go b.flusher()
		}
	})
}

// canFlush tells whether a flush may start now; b.mu is held.
func (b *batcher) canFlush() bool {
	return len(b.pending) > 0 && (len(b.running) == 0 || len(b.pending) >= b.parallelAt)
}

// flusher runs flushes until the batcher is closed and nothing waits.
func (b *batcher) flusher() {
	defer b.wg.Done()
	batch := make([]*forwardReq, 0, b.maxBatch)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for !b.canFlush() {
			if b.closed && len(b.pending) == 0 {
				return
			}
			b.ready.Wait()
		}
		n, size := 0, 0
		batch = batch[:0]
		for _, r := range b.pending {
			if len(batch) == b.maxBatch || len(batch) > 0 && size+len(r.payload) > maxBatchBytes {
				break
			}
			n++
			if r.take() { // else withdrawn by its caller
				batch = append(batch, r)
				size += len(r.payload)
			}
		}
		rest := copy(b.pending, b.pending[n:])
		clear(b.pending[rest:])
		b.pending = b.pending[:rest]
		if len(batch) == 0 {
			continue
		}
		run := &flushRun{overlaps: map[*flushRun]struct{}{}}
		for _, r := range batch {
			run.keys = append(run.keys, r.key)
		}
		for other := range b.running {
			if other.done {
				// Its statement has committed: this one's sees all it did.
				continue
			}
			run.overlaps[other] = struct{}{}
			other.overlaps[run] = struct{}{}
		}
		b.running[run] = struct{}{}
		if b.canFlush() {
			b.ready.Signal() // another full batch is waiting
		}
		b.mu.Unlock()

		b.batches.Add(1)
		b.requests.Add(int64(len(batch)))
		if b.beforeFlush != nil {
			b.beforeFlush(batch)
		}
		b.q.flush(context.Background(), batch, func(touched, candidates []uuid.UUID) []bool {
			return b.settle(run, touched, candidates)
		})
		clear(batch) // let the GC have the payloads

		b.mu.Lock()
		delete(b.running, run)
		if b.closed {
			b.ready.Broadcast() // idle flushers may stop now
		}
		// Whatever waits meanwhile, this flusher takes next.
	}
}

// settle records that run's statement has finished, having queued to the
// touched connections, and tells for each candidate connection whether run
// may record a depth hint for it: only if no flush that ran beside it
// queued, or may still queue, to that connection (a running one's keys
// whose connection is not known count as any connection). Such a flush's
// messages could be missing from run's count. See depthhint.go.
func (b *batcher) settle(run *flushRun, touched, candidates []uuid.UUID) []bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	run.done = true
	run.conns = make(map[uuid.UUID]bool, len(touched))
	for _, c := range touched {
		run.conns[c] = true
	}
	ok := make([]bool, len(candidates))
	for i, c := range candidates {
		ok[i] = true
		for o := range run.overlaps {
			if o.done && o.conns[c] || !o.done && b.q.hints.mayQueueTo(o.keys, c) {
				ok[i] = false
				break
			}
		}
	}
	run.overlaps = nil // the others keep what they need of run
	return ok
}

// submit runs r through the batcher and returns its result; ok is false
// when the batcher is closed (the caller then runs r itself).
func (b *batcher) submit(ctx context.Context, r *forwardReq) (res forwardResult, ok bool) {
	b.run()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return forwardResult{}, false
	}
	b.pending = append(b.pending, r)
	if b.canFlush() {
		b.ready.Signal()
	}
	b.mu.Unlock()
	select {
	case res := <-r.done:
		return res, true
	case <-ctx.Done():
		if r.withdraw() {
			// Still waiting: it will never be queued (the flusher that
			// comes across it skips it).
			return forwardResult{err: fmt.Errorf("queuepg: enqueue forward: %w", ctx.Err())}, true
		}
		// A flusher has it: its statement is running and ends within
		// Options.Timeout. Report what really happened.
		return <-r.done, true
	}
}

// close stops taking requests, lets the flushers queue every request
// already handed over, and waits for them to stop.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.ready.Broadcast()
	b.mu.Unlock()
	// Never started: now it never will be. (Closed is set first: a submit
	// that started the flushers before this has its request drained by
	// them; one that did not finds the batcher closed.)
	b.start.Do(func() {})
	b.wg.Wait()
}

// Close stops the forward batcher: forwards already handed to it are
// queued, and Close returns when its goroutines have stopped. It does not
// close the pool. EnqueueForward still works afterwards, each call with its
// own statement. Close is idempotent.
func (q *Queue) Close() {
	q.batch.close()
}

// enqueueForwardsSQL queues a batch of forwards in one statement and
// returns one row per request whose recipient key has a route (keys
// without one return nothing: queue.ErrUnknownRecipient). The inputs are
// parallel arrays, one element per request, $3 ids chosen by the caller
// (so the rows can be matched to the requests), $4 recipient keys, $5
// their did:key forms, $6 payloads, $7 payload sizes; $1 and $2 are as in
// liveTailSQL, $8 is queue.Caps.CountLimit and $9 the hard cap (0: none).
// $10-$13 are the depth hints (depthhint.go): connection ids, remembered
// depths and (created_at, id) markers, one per connection; $14 is the depth
// below which a hint's estimate may be used (the soft cap, or the hard cap
// without one).
//
// The statement does, per row, what the single-row statement did:
//
//   - the route lookup: one primary-key probe of mediation_route per row;
//   - the caps: the depth of each connection in the batch, found once: its
//     hint's estimate when there is one and it is clearly below the caps,
//     else the bounded count of its queue (see EnqueueForward); plus, for
//     each row, the number of rows for the same connection ahead of it in
//     the batch (rank). So a batch holding several messages for one
//     connection fills it exactly up to the hard cap, and Depth and
//     OverSoftCap are what consecutive single enqueues would report;
//   - the live-instance lookup, once per distinct connection that got a
//     message, and one pg_notify per distinct (instance, connection), sent
//     on commit. The final SELECT reads "woken" to the end in its select
//     list (an InitPlan, evaluated once), so every notification happens;
//     the statement returns a row whenever something was inserted.
//
// Each row also returns its connection's depth (before the batch) and
// whether no other instance is alive ("solo": hints are used, and may be
// recorded, only then).
//
// created_at is the transaction's start, the same for the whole batch;
// within it the ids (UUIDv7, increasing in arrival order) keep the arrival
// order for Claim's "ORDER BY created_at, id".
const enqueueForwardsSQL = `
WITH target AS MATERIALIZED (
    SELECT i.id, i.recipient_key, i.did, i.payload, i.size, i.ord, r.connection_id,
           row_number() OVER (PARTITION BY r.connection_id ORDER BY i.ord) - 1 AS rank
    FROM unnest($3::uuid[], $4::text[], $5::text[], $6::bytea[], $7::int[])
         WITH ORDINALITY AS i(id, recipient_key, did, payload, size, ord)
    JOIN mediation_route r ON r.recipient_key = i.recipient_key
),
solo AS MATERIALIZED (
    SELECT NOT EXISTS (SELECT 1 FROM mediator_instance mi
                       WHERE mi.instance <> $2::text AND mi.heartbeat_at > now() - $1::interval) AS ok
),
estimate AS MATERIALIZED (
    SELECT c.connection_id, c.n,
           CASE WHEN h.base IS NOT NULL THEN
               h.base + (SELECT count(*) FROM (SELECT 1 FROM queued_message q
                                               WHERE q.connection_id = c.connection_id
                                                 AND (q.created_at, q.id) > (h.at, h.id)
                                               LIMIT $8) x)
           END AS estimate
    FROM (SELECT connection_id, count(*) AS n FROM target GROUP BY connection_id) c
    LEFT JOIN unnest($10::uuid[], $11::int[], $12::timestamptz[], $13::uuid[]) AS h(connection_id, base, at, id)
           ON h.connection_id = c.connection_id AND $8::int > 0 AND (SELECT ok FROM solo)
),
depth AS MATERIALIZED (
    SELECT e.connection_id,
           CASE WHEN $8::int = 0 THEN 0
                WHEN e.estimate + e.n <= $14::int THEN e.estimate
                ELSE (SELECT count(*) FROM (SELECT 1 FROM queued_message q
                                            WHERE q.connection_id = e.connection_id LIMIT $8) d)
           END AS depth
    FROM estimate e
),
placed AS MATERIALIZED (
    SELECT t.*, d.depth AS conn_depth,
           CASE WHEN $8::int = 0 THEN 0 ELSE d.depth + t.rank END AS depth,
           ($9::int = 0 OR d.depth + t.rank < $9::int) AS fits
    FROM target t
    JOIN depth d ON d.connection_id = t.connection_id
),
msg AS (
    INSERT INTO queued_message (id, connection_id, recipient_dids, recipient_key, encrypted_message, size_bytes)
    SELECT p.id, p.connection_id, ARRAY[p.did], p.recipient_key, p.payload, p.size
    FROM placed p
    WHERE p.fits
    ORDER BY p.ord
    RETURNING id, connection_id, created_at
),
live AS MATERIALIZED (
    SELECT c.connection_id, l.instance
    FROM (SELECT DISTINCT connection_id FROM msg) c
    CROSS JOIN LATERAL (
        SELECT ls.instance
        FROM live_session ls
        JOIN mediator_instance mi ON mi.instance = ls.instance
        WHERE ls.connection_id = c.connection_id
          AND mi.heartbeat_at > now() - $1::interval
        ORDER BY ls.created_at DESC, ls.session_id DESC
        LIMIT 1
    ) l
),
woken AS MATERIALIZED (
    SELECT pg_notify('mediator_' || left(md5(live.instance), 16), live.connection_id::text)
    FROM live
    WHERE live.instance <> $2::text
)
SELECT p.ord, p.connection_id, m.created_at, coalesce(l.instance, ''), p.depth,
       (SELECT count(*) FROM woken), p.conn_depth, (SELECT ok FROM solo)
FROM placed p
LEFT JOIN msg m ON m.id = p.id
LEFT JOIN live l ON l.connection_id = p.connection_id AND m.id IS NOT NULL`

// enqueuePlanSQL is run before enqueueForwardsSQL, in its transaction.
//
// plan_cache_mode: the statement is prepared once per connection, but
// PostgreSQL would plan it afresh for every batch: a custom plan, which
// knows how many rows the arrays hold, always looks cheaper than the
// generic one, so the plan cache never switches. Planning this statement
// takes 0.3-0.6 ms, more than running it for a dozen rows. The generic plan
// is the same shape (primary-key probes of mediation_route per row, the
// connection indexes for the counts and the live sessions; see
// TestBatchGenericPlan), so it is forced. It is made once per connection
// and made again after an ANALYZE of the tables (which autovacuum runs as
// they grow), on the same statistics a custom plan would use.
//
// jit: the cost estimate of the per-connection counts can pass
// jit_above_cost, and compiling then takes milliseconds for a statement
// that runs in a fraction of one.
//
// enable_bitmapscan: a connection's count is an ordered index-only scan of
// its (connection_id, created_at, id) range that stops at the count limit
// and skips the heap for pages autovacuum has marked all-visible (most of
// an old backlog). The bitmap scan the planner may prefer reads the whole
// range and visits the heap for every entry, however many there are.
//
// enable_seqscan: the generic plan lasts until the next ANALYZE, and
// autovacuum analyzes a queue table when it is small, between bursts. Made
// from those statistics, the plan counts a connection's queue and finds its
// live session with sequential scans, which the burst then turns into a
// scan of the whole table per forward (measured: 8,000 -> 1,100 forwards/s
// once 20,000 messages were queued). Index probes cost little on a small
// table and stay cheap on a big one.
const enqueuePlanSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true),
       set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)`

// settleFunc is told, once a batch statement has committed, the
// connections it queued to and the connections it would record depth
// hints for, and answers which of those it may record (batcher.settle).
type settleFunc func(touched, candidates []uuid.UUID) []bool

// flush queues batch with one statement and hands every request its
// result. See the group-commit notes above. Depth hints are recorded only
// with a settle function (the flushers'); nil records none.
func (q *Queue) flush(ctx context.Context, batch []*forwardReq, settle settleFunc) {
	results, err := q.enqueueBatch(ctx, batch, settle)
	var pgErr *pgconn.PgError
	if err != nil && len(batch) > 1 && errors.As(err, &pgErr) {
		// The server refused the statement, so nothing of it was
		// committed: find the row(s) it was about.
		for _, r := range batch {
			q.flush(ctx, []*forwardReq{r}, nil)
		}
		return
	}
	for i, r := range batch {
		if err != nil {
			r.done <- forwardResult{err: fmt.Errorf("queuepg: enqueue forward: %w", err)}
			continue
		}
		r.done <- results[i]
	}
}

// enqueueBatch runs enqueueForwardsSQL for batch and returns each
// request's result, in order.
func (q *Queue) enqueueBatch(ctx context.Context, batch []*forwardReq, settle settleFunc) ([]forwardResult, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	n := len(batch)
	// Slice types pgx encodes without reflection.
	var (
		ids      = make([][16]byte, n)
		keys     = make([]string, n)
		dids     = make([]string, n)
		payloads = make(pgtype.FlatArray[[]byte], n)
		sizes    = make([]int32, n)
		caps     = q.Caps()
		now      = time.Now()
	)
	for i, r := range batch {
		ids[i], keys[i], dids[i], payloads[i], sizes[i] = r.id, r.key, r.did, r.payload, int32(len(r.payload))
	}
	threshold := caps.Soft
	if threshold <= 0 {
		threshold = caps.Hard
	}
	hintConns, hints, hintGen := q.hints.forBatch(keys, now)
	if caps.CountLimit() == 0 {
		hintConns, hints = nil, nil
	}
	hintIDConns := make([][16]byte, len(hints))
	hintBases := make([]int32, len(hints))
	hintAts := make([]time.Time, len(hints))
	hintIDs := make([][16]byte, len(hints))
	for i, h := range hints {
		hintIDConns[i], hintBases[i], hintAts[i], hintIDs[i] = hintConns[i], int32(h.base), h.at, h.id
	}
	quiet := q.hints.replies()

	out := make([]forwardResult, n)
	seen := make([]bool, n)
	rowConns := make([]uuid.UUID, n)
	connDepths := make([]int64, n)
	solo := false
	scan := func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				ord       int64
				connID    uuid.UUID
				at        *time.Time // NULL: refused by the hard cap
				live      string
				depth     int64
				woken     int64
				connDepth int64
			)
			if err := rows.Scan(&ord, &connID, &at, &live, &depth, &woken, &connDepth, &solo); err != nil {
				return err
			}
			if ord < 1 || ord > int64(n) || seen[ord-1] {
				return fmt.Errorf("statement returned row %d of %d twice or out of range", ord, n)
			}
			seen[ord-1] = true
			rowConns[ord-1], connDepths[ord-1] = connID, connDepth
			r := batch[ord-1]
			res := queue.Enqueued{Message: queue.Message{ConnectionID: connID.String(), RecipientKey: r.key, Payload: r.payload},
				LiveInstance: live, Depth: int(depth)}
			var id *string
			if at != nil {
				s := r.id.String()
				id = &s
			}
			out[ord-1].res, out[ord-1].err = enqueued(res, id, at, caps, "enqueue forward")
		}
		return rows.Err()
	}
	err := q.sendPlanned(ctx, enqueuePlanSQL, enqueueForwardsSQL, []any{q.instanceTTL, q.instance, ids, keys, dids, payloads, sizes,
		caps.CountLimit(), caps.Hard, hintIDConns, hintBases, hintAts, hintIDs, threshold},
		func(qq *pgx.QueuedQuery) { qq.Query(scan) })
	if err != nil {
		return nil, err
	}

	var learnKeys []string
	var learnConns []uuid.UUID
	for i, r := range batch {
		if !seen[i] {
			out[i].err = fmt.Errorf("queuepg: enqueue forward to %s: %w", r.key, queue.ErrUnknownRecipient)
			continue
		}
		learnKeys, learnConns = append(learnKeys, r.key), append(learnConns, rowConns[i])
	}
	q.hints.learn(learnKeys, learnConns)
	if settle != nil {
		conns, newHints := q.newHints(batch, out, seen, rowConns, connDepths, threshold, now)
		touched := learnConns
		if !solo || caps.CountLimit() == 0 || !q.hints.quietSince(quiet) {
			conns, newHints = nil, nil
		}
		ok := settle(touched, conns)
		var keepConns []uuid.UUID
		var keep []depthHint
		for i := range conns {
			if ok[i] {
				keepConns, keep = append(keepConns, conns[i]), append(keep, newHints[i])
			}
		}
		q.hints.record(hintGen, keepConns, keep)
	}
	return out, nil
}

// newHints computes, for each connection the batch queued to, its depth
// after the batch and the batch's newest message for it (see
// depthhint.go). Depths at or above threshold are not worth a hint.
func (q *Queue) newHints(batch []*forwardReq, out []forwardResult, seen []bool, rowConns []uuid.UUID,
	connDepths []int64, threshold int, now time.Time) ([]uuid.UUID, []depthHint) {
	var (
		conns []uuid.UUID
		hints []depthHint
	)
	for i := range batch {
		if !seen[i] || out[i].err != nil {
			continue
		}
		c := rowConns[i]
		k := -1
		for j, seenConn := range conns {
			if seenConn == c {
				k = j
				break
			}
		}
		if k < 0 {
			conns = append(conns, c)
			hints = append(hints, depthHint{base: int(connDepths[i]), at: out[i].res.ReceivedAt, id: batch[i].id, setAt: now})
			k = len(conns) - 1
		}
		h := &hints[k]
		h.base++
		if newerID(batch[i].id, h.id) {
			h.id = batch[i].id
		}
	}
	var keepConns []uuid.UUID
	var keep []depthHint
	for i, h := range hints {
		if h.base < threshold {
			keepConns, keep = append(keepConns, conns[i]), append(keep, h)
		}
	}
	return keepConns, keep
}
