// Package queuepg is the transport queue in PostgreSQL: packed messages
// waiting for wallets that fetch them with message pickup.
//
// It uses the queued_message table created by internal/pgdb's migrations.
// A claimed message is leased: it stays in the table, marked 'sending' for
// its holder until the lease runs out, and only an Ack deletes it. A message
// whose lease ran out is claimable again right away, so a lost
// acknowledgement or a crashed instance means redelivery, not loss, and does
// not wait for a sweeper.
//
// Connection ids and message ids that are not UUIDs match nothing: filters on
// them return no messages, and Ack and Release skip them. Payloads must be
// JSON text (UTF-8), which pickup embeds in its deliveries; they are stored
// as bytea and come back byte for byte.
//
// Several instances share one database. Each records the wallets' live
// sockets it holds in live_session (RegisterSession, UnregisterSession) and
// proves it is alive with a heartbeat in mediator_instance (Run). A message
// queued on any instance wakes the one instance that holds the connection's
// newest live session, with a NOTIFY on that instance's own channel (see
// ChannelName) sent by the very statement that queues the message. Run also
// listens on that channel, and its janitor cleans up after instances that
// stopped heartbeating: their sessions go and their in-flight messages are
// requeued. Leave is the graceful version of that for one's own instance.
//
// Forwards are group-committed: concurrent EnqueueForward calls share one
// statement and one commit (see batch.go); Close stops the goroutines that
// run those statements.
package queuepg

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/queue"
)

// Defaults for Options and ClusterOptions.
const (
	DefaultLease          = 60 * time.Second
	DefaultTimeout        = 5 * time.Second
	DefaultInstanceTTL    = 30 * time.Second
	DefaultHeartbeat      = 5 * time.Second
	DefaultReconcileEvery = 30 * time.Second
	// DefaultVacuumDeadRows is ClusterOptions.VacuumDeadRows's default.
	DefaultVacuumDeadRows = 10_000
)

// MaxClaim is the most messages one Claim hands out; larger limits are
// clamped so a client cannot make us load its whole backlog at once.
const MaxClaim = 1000

// Options tune a Queue. Zero values take the defaults.
type Options struct {
	// Lease is how long a claimed message stays with its holder before it
	// becomes claimable again. It should exceed the time to write a batch to
	// a slow client and receive its acknowledgement.
	Lease time.Duration
	// Timeout bounds every query, in addition to the caller's context.
	Timeout time.Duration
	// Instance is this process's instance id (the one its live sessions are
	// registered under and Run heartbeats for). Enqueuing never notifies
	// this instance: the caller pushes to its own sockets itself.
	Instance string
	// InstanceTTL is how old an instance's heartbeat may be before the
	// instance counts as dead: its live sessions are then ignored. It should
	// match ClusterOptions.InstanceTTL.
	InstanceTTL time.Duration
	// AckGrace is how long the messages a closed session holds in flight
	// stay with it before they can be delivered again. A wallet whose socket
	// dropped usually still sends its messages-received for the last
	// delivery, over its next connection; redelivering before it arrives
	// would duplicate them. Zero releases them at once.
	AckGrace time.Duration
	// Caps bound each connection's queue (see queue.Caps; SetCaps changes
	// them later). Zero values: no caps.
	Caps queue.Caps
	// MaxBatch is the most forwards one statement queues (group commit;
	// see EnqueueForward and batch.go). Default DefaultMaxBatch; 1 gives
	// every forward its own statement and commit.
	MaxBatch int
	// Flushers is how many batch statements may be running at once
	// (default DefaultFlushers). Beyond the first, a statement starts only
	// when several forwards are waiting (see parallelAt in batch.go). Each
	// holds one pool connection while it runs; a forward arriving while
	// all are busy waits for the next batch.
	Flushers int
}

// Queue is the PostgreSQL transport queue. It is safe for concurrent use,
// also by several instances on the same database.
type Queue struct {
	pool        *pgxpool.Pool
	lease       time.Duration
	timeout     time.Duration
	instance    string
	instanceTTL time.Duration
	ackGrace    time.Duration

	// listening is whether Run's listener is connected and listening.
	listening atomic.Bool
	// caps is the per-connection queue caps (nil: none); see SetCaps.
	caps atomic.Pointer[queue.Caps]

	// regMu guards local and left. local is every session registered
	// through this Queue and not unregistered since, so that the heartbeat
	// can put them back if another instance's janitor took this instance
	// for dead and removed them. left holds instances that Left: their
	// heartbeat must not bring them back.
	regMu sync.Mutex
	local map[string]queue.Session
	left  map[string]bool

	// batch groups concurrent forwards into one statement (batch.go).
	batch *batcher
	// hints spare the batches full counts of deep queues (depthhint.go).
	hints *hintCache
}

// New returns a Queue on pool, whose schema must have been migrated. Close
// stops its forward batcher (whose goroutines start with the first
// EnqueueForward).
func New(pool *pgxpool.Pool, opts Options) *Queue {
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.InstanceTTL <= 0 {
		opts.InstanceTTL = DefaultInstanceTTL
	}
	q := &Queue{pool: pool, lease: opts.Lease, timeout: opts.Timeout,
		instance: opts.Instance, instanceTTL: opts.InstanceTTL, ackGrace: max(opts.AckGrace, 0),
		local: map[string]queue.Session{}, left: map[string]bool{}}
	q.batch = newBatcher(q, opts.MaxBatch, opts.Flushers)
	q.hints = newHintCache()
	q.SetCaps(opts.Caps)
	return q
}

// ChannelName is the LISTEN/NOTIFY channel of an instance: "mediator_" and
// the first 16 hex digits of the MD5 of its id. Instance ids are free text
// (host name, pid, random suffix); the hash makes every one a short, valid,
// lower-case identifier. The SQL statements compute the same as
// 'mediator_' || left(md5(instance), 16) (md5 of the UTF-8 text).
func ChannelName(instance string) string {
	sum := md5.Sum([]byte(instance))
	return "mediator_" + hex.EncodeToString(sum[:])[:16]
}

// liveTailSQL follows the CTEs "target" (the connection and its depth) and
// "msg" (the insert: one row, or none when the connection is at its hard
// cap) in Enqueue's statement, and returns one row per target, with a NULL message id when
// nothing was queued. It finds the connection's newest live session held
// by an instance with a fresh heartbeat ($1 is the TTL) and, when that
// instance is not this one ($2), notifies it on its own channel. The
// notification is transactional: it is delivered when the insert commits,
// never for a message that did not.
//
// A CTE that is only a SELECT runs only as far as something reads it, so
// the statement reads "woken" to the end (count) in its select list: the
// pg_notify calls happen for sure. The session lookup walks
// live_session_connection_idx for the one connection (a handful of rows)
// and joins mediator_instance by its primary key.
const liveTailSQL = `,
live AS MATERIALIZED (
    SELECT ls.instance
    FROM msg
    JOIN live_session ls ON ls.connection_id = msg.connection_id
    JOIN mediator_instance mi ON mi.instance = ls.instance
    WHERE mi.heartbeat_at > now() - $1::interval
    ORDER BY ls.created_at DESC, ls.session_id DESC
    LIMIT 1
),
woken AS MATERIALIZED (
    SELECT pg_notify('mediator_' || left(md5(live.instance), 16), msg.connection_id::text)
    FROM msg, live
    WHERE live.instance <> $2::text
)
SELECT msg.id::text, t.connection_id::text, msg.created_at,
       coalesce((SELECT instance FROM live), ''),
       (SELECT count(*) FROM woken), t.depth
FROM target t LEFT JOIN msg ON true`

// EnqueueForward queues payload for the connection that registered
// recipientKey. It returns queue.ErrUnknownRecipient (wrapped) when no
// connection did, or when recipientKey is not a base58 Ed25519 key, and
// queue.ErrQueueFull (wrapped) when the connection is at its hard cap.
//
// Enqueued.LiveInstance is the instance holding the connection's newest live
// session, among instances with a fresh heartbeat, or "". When it is not
// Options.Instance, that instance has been notified (on commit, by the same
// statement).
//
// Concurrent calls are grouped into one statement and one commit (see
// batch.go: group commit); a call that finds the batcher idle is not
// delayed. The route lookup, the cap check, the insert, the live-session
// lookup and the notification are all in that statement, so a forward
// costs at most one round trip (shared with its batch) and cannot race
// with a route being removed between the steps. If ctx ends before the
// statement that would queue the message has started, nothing is queued
// and ctx's error is returned; once it has started, the call returns its
// outcome. The message ids are UUIDv7s.
//
// The depth that the caps are checked against is a bounded count of the
// connection's queued messages: it stops at the larger cap (see
// queue.Caps.CountLimit), so that checking a cap costs an index-only range
// scan of at most that many entries of the connection's (connection_id,
// created_at, id) index, and nothing with no cap (LIMIT 0). Messages of the
// same batch for the same connection are counted too, so a batch never
// overshoots a cap; concurrent batches (Options.Flushers) and other
// instances each count what was committed when their statement started.
// While a connection is clearly below its caps, a batch may instead start
// from the depth the previous batch for it left and count only what came
// after that (depthhint.go): then Enqueued.Depth is an upper bound (it
// still counts messages acknowledged since), never used to refuse or flag
// a message: near the caps the count is exact.
//
// Why not a per-connection counter row updated by the same statement? It
// would be exact under concurrency (row lock) where this count can let
// concurrent enqueues overshoot the cap by a few (see queue.Caps), but
// every Ack, expiry, purge and revoke would have to keep it in step (a
// trigger), and all enqueues and acks of a connection would queue up on
// its row. Measured on PostgreSQL 15 (enqueue + ack loops, 260,000 queued
// messages): the counter with a delete trigger cost about 0.2 ms more per
// enqueue and per ack; the bounded count cost nothing measurable at a
// depth of 100 and about 1-3 ms only for a connection holding 10,000
// messages with a cap of 10,000 (0.2 µs per counted entry).
func (q *Queue) EnqueueForward(ctx context.Context, recipientKey string, payload []byte) (queue.Enqueued, error) {
	did, err := didKey(recipientKey)
	if err != nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue forward: %w", err)
	}
	if err := queue.CheckPayload(payload); err != nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue forward: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue forward: message id: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	r := &forwardReq{id: id, key: recipientKey, did: did, payload: slices.Clone(payload),
		done: make(chan forwardResult, 1)}
	res, ok := q.batch.submit(ctx, r)
	if !ok {
		// Closed: no batcher, a statement of our own.
		// (An insert outside the flushers, like a reply: see depthhint.go.)
		r.state.Store(reqTaken)
		q.hints.replyStarted()
		q.flush(ctx, []*forwardReq{r}, nil)
		q.hints.replyDone()
		res = <-r.done
	}
	return res.res, res.err
}

// enqueueSQL queues one message for a known connection ($3): the bounded
// count of its queue ($8 is queue.Caps.CountLimit; see EnqueueForward), the
// insert below the hard cap ($9; 0 is none), then liveTailSQL. Replies are
// rare, so they keep this single-row statement rather than going through
// the forward batcher.
const enqueueSQL = `
WITH target AS MATERIALIZED (
    SELECT $3::uuid AS connection_id,
           (SELECT count(*) FROM (SELECT 1 FROM queued_message q
                                  WHERE q.connection_id = $3::uuid LIMIT $8) d) AS depth
),
msg AS (
    INSERT INTO queued_message (connection_id, recipient_dids, recipient_key, encrypted_message, size_bytes)
    SELECT t.connection_id, ARRAY[$4::text], $5, $6::bytea, $7
    FROM target t
    WHERE $9::int = 0 OR t.depth < $9::int
    RETURNING id, connection_id, created_at
)` + liveTailSQL

// Enqueue queues payload for connectionID, addressed to recipientKey. The
// connection is not looked up: the caller knows it. LiveInstance, the
// notification and the caps are as for EnqueueForward.
func (q *Queue) Enqueue(ctx context.Context, connectionID, recipientKey string, payload []byte) (queue.Enqueued, error) {
	connID, ok := canonicalUUID(connectionID)
	if !ok {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue: connection id %q is not a UUID", connectionID)
	}
	did, err := didKey(recipientKey)
	if err != nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue: %w", err)
	}
	if err := queue.CheckPayload(payload); err != nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	var (
		res    = queue.Enqueued{Message: queue.Message{RecipientKey: recipientKey, Payload: slices.Clone(payload)}}
		woken  int
		m      = &res.Message
		caps   = q.Caps()
		id     *string // NULL: refused by the hard cap
		at     *time.Time
		params = []any{q.instanceTTL, q.instance, connID, did, recipientKey, payload, len(payload), caps.CountLimit(), caps.Hard}
	)
	// A reply is an insert outside the batcher: batches running meanwhile
	// record no depth hints (see depthhint.go).
	q.hints.replyStarted()
	err = q.pool.QueryRow(ctx, enqueueSQL, params...).
		Scan(&id, &m.ConnectionID, &at, &res.LiveInstance, &woken, &res.Depth)
	q.hints.replyDone()
	if err != nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: enqueue: %w", err)
	}
	return enqueued(res, id, at, caps, "enqueue")
}

// claimableSQL is the predicate of a message Claim may hand out: connection
// and optional key (an empty $2 means any), and either pending or leased to
// someone whose lease has run out.
const claimableSQL = `
connection_id = $1::uuid
AND ($2::text = '' OR recipient_key = $2::text)
AND (state = 'pending' OR lease_expires_at < now())`

// claimPlanSQL pins the claim's plan to the one that stays fast whatever the
// statistics say: walk the connection's (connection_id, created_at, id)
// index in order and stop after LIMIT claimable rows. The alternative the
// planner otherwise takes when it underestimates a connection (statistics
// older than a wallet's burst of messages, a recipient key it has not seen,
// or a generic plan for an average connection) is a bitmap scan that reads
// and sorts the connection's whole backlog on every claim: measured 28 ms
// instead of 0.3 ms at 30,000 messages. The settings are transaction-local.
//
// The claim also commits without waiting for its WAL flush: a claim lost in
// a crash leaves its messages pending, as an expired lease does, and they
// are delivered again (at least once either way); the messages-received that
// deletes them commits durably, and its flush covers the claim's records.
// A live push is a claim per message, so this takes one disk flush out of
// each delivery.
//
// With those settings the generic plan is the same index walk (see
// TestQueryPlans), and it is forced: PostgreSQL would otherwise plan every
// claim afresh (a custom plan always looks cheaper), which measured 80 us
// of server CPU per claim, twice the claim itself. A generic plan lasts
// until the next ANALYZE, which may find the table empty between bursts;
// enable_seqscan keeps a plan made then on the index (see enqueuePlanSQL).
const claimPlanSQL = `SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true),
       set_config('synchronous_commit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true)`

// sendPlanned runs sql after planSQL, whose set_config(..., true) settings
// it is planned and run under, in one round trip; result registers what is
// read from sql. A pgx batch is one implicit transaction (pgx ends it with a
// single Sync): the settings end with it, the two statements commit
// together, and a failure rolls both back. BEGIN and COMMIT around them
// would be two more statements for the server to run.
func (q *Queue) sendPlanned(ctx context.Context, planSQL, sql string, args []any, result func(*pgx.QueuedQuery)) error {
	b := &pgx.Batch{}
	b.Queue(planSQL)
	result(b.Queue(sql, args...))
	return q.pool.SendBatch(ctx, b).Close()
}

// genericPlanSQL forces the generic plan of the prepared statement that
// follows it in its transaction, where that plan is known to be the custom
// one's shape (TestQueryPlans) and planning costs more than running; and
// keeps it on indexes when it is made from the statistics of an empty table.
const genericPlanSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)`

// The CTE picks and locks the oldest claimable rows; SKIP LOCKED lets
// concurrent claimers pass over each other's rows instead of waiting for
// them or taking them twice. If a row was claimed and committed between this
// statement's snapshot and the lock, PostgreSQL re-evaluates the WHERE clause
// on the new row version, which is no longer claimable, and drops it.
// MATERIALIZED keeps the locking subquery from being inlined into the UPDATE.
const claimSQL = `
WITH picked AS MATERIALIZED (
    SELECT id
    FROM queued_message
    WHERE ` + claimableSQL + `
    ORDER BY created_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE queued_message m
SET state = 'sending',
    sending_since = now(),
    lease_expires_at = now() + $4::interval,
    sending_instance = $5,
    sending_session = $6,
    attempts = m.attempts + 1
FROM picked
WHERE m.id = picked.id
RETURNING m.id::text, m.connection_id::text, m.recipient_key, m.encrypted_message, m.created_at, m.attempts`

// Claim hands out up to limit claimable messages matching f, oldest first,
// leased to h. limit <= 0 returns nothing; limit > MaxClaim is clamped.
func (q *Queue) Claim(ctx context.Context, f queue.Filter, limit int, h queue.Holder) ([]queue.Message, error) {
	connID, ok := canonicalUUID(f.ConnectionID)
	if !ok || limit <= 0 {
		return nil, nil
	}
	limit = min(limit, MaxClaim)
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	var msgs []queue.Message
	err := q.sendPlanned(ctx, claimPlanSQL, claimSQL, []any{connID, f.RecipientKey, limit, q.lease, h.Instance, h.Session},
		func(qq *pgx.QueuedQuery) {
			qq.Query(func(rows pgx.Rows) error {
				var err error
				msgs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.Message, error) {
					var m queue.Message
					err := row.Scan(&m.ID, &m.ConnectionID, &m.RecipientKey, &m.Payload, &m.ReceivedAt, &m.Attempts)
					return m, err
				})
				return err
			})
		})
	if err != nil {
		return nil, fmt.Errorf("queuepg: claim: %w", err)
	}
	// UPDATE … RETURNING does not keep the CTE's order.
	slices.SortFunc(msgs, func(a, b queue.Message) int {
		return cmp.Or(a.ReceivedAt.Compare(b.ReceivedAt), cmp.Compare(a.ID, b.ID))
	})
	return msgs, nil
}

// statsPlanSQL: Stats walks what a claim walks, the connection's index
// range, and runs about as often (live delivery sends a status after every
// acknowledgement). The claim's settings keep its generic plan on that walk
// whatever the statistics say (see TestQueryPlans), so it is not planned
// per call (which cost 50-100 us of server CPU each).
const statsPlanSQL = claimPlanSQL

const statsSQL = `
SELECT count(*), coalesce(sum(size_bytes), 0), min(created_at), max(created_at)
FROM queued_message
WHERE ` + claimableSQL

// Stats describes the claimable messages matching f.
func (q *Queue) Stats(ctx context.Context, f queue.Filter) (queue.Stats, error) {
	connID, ok := canonicalUUID(f.ConnectionID)
	if !ok {
		return queue.Stats{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	var r statsRow
	if err := q.sendPlanned(ctx, statsPlanSQL, statsSQL, []any{connID, f.RecipientKey}, r.read); err != nil {
		return queue.Stats{}, fmt.Errorf("queuepg: stats: %w", err)
	}
	return r.stats(), nil
}

// statsRow receives the row of statsSQL.
type statsRow struct {
	s              queue.Stats
	oldest, newest *time.Time
}

func (r *statsRow) read(qq *pgx.QueuedQuery) {
	qq.QueryRow(func(row pgx.Row) error { return row.Scan(&r.s.Count, &r.s.TotalBytes, &r.oldest, &r.newest) })
}

func (r *statsRow) stats() queue.Stats {
	s := r.s
	if r.oldest != nil {
		s.Oldest = *r.oldest
	}
	if r.newest != nil {
		s.Newest = *r.newest
	}
	return s
}

// namedSQL finds the rows Ack and Release name, by primary key only. With
// "connection_id = $1 AND id = ANY($2)" in one WHERE clause the planner may
// walk the connection's whole range of the (connection_id, created_at, id)
// index instead, when its statistics underrate that connection's backlog
// (it did: 3.4 ms instead of 0.1 ms for 10 ids against a 20,000-message
// backlog). The materialized CTE has only the id condition, so it can only
// use the primary key; the connection (and, for Release, state) checks are
// applied to its few rows. (A "m.state = 'sending'" test would invite a scan
// of the (state, lease_expires_at) index over every in-flight message.)
// Checking state on the CTE's snapshot rather than the live row only skips
// pointless writes: releasing a row that just became pending is harmless.
const namedSQL = `
WITH named AS MATERIALIZED (
    SELECT id, connection_id, state FROM queued_message WHERE id = ANY($2::uuid[])
)`

const ackSQL = namedSQL + `
DELETE FROM queued_message m
USING named
WHERE m.id = named.id AND named.connection_id = $1::uuid`

// Ack deletes the connection's messages with these ids, whatever their state,
// and returns how many it deleted. Ids that are not UUIDs, unknown, or of
// another connection are ignored rather than failing the batch.
func (q *Queue) Ack(ctx context.Context, connectionID string, ids []string) (int, error) {
	connID, ok := canonicalUUID(connectionID)
	valid := validUUIDs(ids)
	if !ok || len(valid) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	// Generic plan: planning the delete took 70 us of server CPU per
	// messages-received, running it 30.
	var deleted int64
	err := q.sendPlanned(ctx, genericPlanSQL, ackSQL, []any{connID, valid}, func(qq *pgx.QueuedQuery) {
		qq.Exec(func(tag pgconn.CommandTag) error {
			deleted = tag.RowsAffected()
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("queuepg: ack: %w", err)
	}
	return int(deleted), nil
}

// statsAfterAckPlanSQL makes, after genericPlanSQL, the planner settings of
// statsPlanSQL (the claim's), so that Stats' statement runs on the same
// generic plan after an acknowledgement in its transaction. The claim's
// synchronous_commit=off is left out: it would cover the acknowledgement,
// which commits durably.
const statsAfterAckPlanSQL = `SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)`

// AckStats is Ack followed by Stats of the connection's messages, in one
// round trip and one transaction: message pickup answers every
// messages-received with a status, and a live wallet sends one after every
// push.
func (q *Queue) AckStats(ctx context.Context, connectionID string, ids []string) (int, queue.Stats, error) {
	connID, ok := canonicalUUID(connectionID)
	if !ok {
		return 0, queue.Stats{}, nil
	}
	valid := validUUIDs(ids)
	if len(valid) == 0 {
		s, err := q.Stats(ctx, queue.Filter{ConnectionID: connID})
		return 0, s, err
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	b := &pgx.Batch{}
	b.Queue(genericPlanSQL)
	var deleted int64
	b.Queue(ackSQL, connID, valid).Exec(func(tag pgconn.CommandTag) error {
		deleted = tag.RowsAffected()
		return nil
	})
	b.Queue(statsAfterAckPlanSQL)
	var r statsRow
	r.read(b.Queue(statsSQL, connID, ""))
	if err := q.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, queue.Stats{}, fmt.Errorf("queuepg: ack and stats: %w", err)
	}
	return int(deleted), r.stats(), nil
}

// unclaimSQL is the SET clause that returns a claimed row to pending. The
// holder columns are cleared, so a release that comes late finds no holder.
const unclaimSQL = `
SET state = 'pending',
    sending_since = NULL,
    lease_expires_at = NULL,
    sending_instance = NULL,
    sending_session = NULL`

// The holder test is on the row itself (m), not on the CTE's snapshot: if
// another holder claimed the row after that snapshot, PostgreSQL re-checks
// m's conditions on the new version and leaves the row alone. The holder
// columns are not indexed, so the test cannot steer the plan away from the
// primary key (unlike a test on m.state); a row that is pending has no
// holder, so it needs no state test either.
const releaseSQL = namedSQL + `
UPDATE queued_message m` + unclaimSQL + `
FROM named
WHERE m.id = named.id AND named.connection_id = $1::uuid AND named.state = 'sending'
  AND m.sending_instance = $3::text AND m.sending_session = $4::text`

// Release puts the connection's messages with these ids that h still holds
// back to pending. Ids as for Ack are ignored, and so are messages h does not
// hold (any more): a late release after the lease ran out and someone else
// claimed the message does not take it away from them. Attempts is kept, so
// a released message shows it was handed out before.
func (q *Queue) Release(ctx context.Context, h queue.Holder, connectionID string, ids []string) error {
	connID, ok := canonicalUUID(connectionID)
	valid := validUUIDs(ids)
	if !ok || len(valid) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	if _, err := q.pool.Exec(ctx, releaseSQL, connID, valid, h.Instance, h.Session); err != nil {
		return fmt.Errorf("queuepg: release: %w", err)
	}
	return nil
}

// didKey returns the did:key form of a base58 Ed25519 public key: multibase
// base58btc ('z') of the ed25519-pub multicodec prefix (varint 0xed, 0x01)
// followed by the 32 key bytes. It is what the seed stored in recipient_dids.
func didKey(verkey string) (string, error) {
	raw, err := base58.Decode(verkey)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("%w: recipient key %q is not a base58 Ed25519 public key", queue.ErrUnknownRecipient, verkey)
	}
	return "did:key:z" + base58.Encode(append([]byte{0xed, 0x01}, raw...)), nil
}

// canonicalUUID parses s and returns it in PostgreSQL's text form, so that
// ids compare equal however the caller spelled them.
func canonicalUUID(s string) (string, bool) {
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// validUUIDs returns the ids that are UUIDs, in canonical form. Binding one
// malformed id to uuid[] would fail the whole statement.
func validUUIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if u, ok := canonicalUUID(id); ok {
			out = append(out, u)
		}
	}
	return out
}
