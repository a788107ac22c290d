package queuepg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// ListenerApplicationName is the application_name of Run's LISTEN
// connection, so that operators (and tests) find it in pg_stat_activity.
const ListenerApplicationName = "mediator-listener"

// Listener reconnection backoff: the first retry comes after about
// listenRetryMin, each further one after twice as long, up to listenRetryMax.
const (
	listenRetryMin = 100 * time.Millisecond
	listenRetryMax = 5 * time.Second
	// listenPingMax bounds how long the listener waits for a notification
	// before it checks that its backend is still there.
	listenPingMax = 5 * time.Second
)

// janitorLockID is the pg_try_advisory_xact_lock key that makes the
// janitors of all instances take turns. It spells "medjanit" in ASCII.
const janitorLockID int64 = 0x6d65646a616e6974

// vacuumLockID is the pg_try_advisory_lock key that lets one instance at a
// time vacuum the queue tables. It spells "medvacuu" in ASCII.
const vacuumLockID int64 = 0x6d65647661637575

// ClusterOptions configure Run. Zero durations take the defaults.
type ClusterOptions struct {
	// Instance is this process's instance id; empty means Options.Instance.
	Instance string
	// Heartbeat is the interval between heartbeats (default 5s).
	Heartbeat time.Duration
	// InstanceTTL is how old a heartbeat may get before its instance is
	// dead (default 30s). It should match Options.InstanceTTL.
	InstanceTTL time.Duration
	// ReconcileEvery is the interval between OnReconcile calls (default
	// 30s), the safety net for notifications that were lost.
	ReconcileEvery time.Duration
	// OnWake is called with a connection id for which a message was queued
	// (or requeued) while this instance holds its live session. It should
	// return promptly: notifications wait meanwhile.
	OnWake func(ctx context.Context, connectionID string)
	// OnReconcile is called after every successful (re)LISTEN and every
	// ReconcileEvery: it should push whatever is pending to every live
	// session of this instance. It should return promptly.
	OnReconcile func(ctx context.Context)
	// VacuumDeadRows: the janitor's interval, one instance VACUUMs
	// queued_message or live_session once it holds this many dead rows,
	// and a tenth as many as live ones (default DefaultVacuumDeadRows;
	// negative: never). Every delivered
	// message leaves a dead row and dead index entries that claims and
	// counts walk over until a vacuum; autovacuum visits a table at most
	// once a minute (autovacuum_naptime), in which a busy mediator leaves
	// tens of thousands (measured: live delivery 1,150 -> 900 messages/s
	// with 80,000 dead rows).
	VacuumDeadRows int
	// OnNotifyLag, when set, is called with the delay of each probe
	// notification (see SendNotifyProbe) when the listener gets it.
	OnNotifyLag func(time.Duration)
	// Logger receives errors and state changes (default slog.Default()).
	Logger *slog.Logger
}

// ListenerConnected reports whether Run's listener is connected and
// listening: while it is not, notifications to this instance are lost (the
// reconcile pass after reconnecting covers them). For readiness checks.
func (q *Queue) ListenerConnected() bool {
	return q.listening.Load()
}

// Run keeps this instance a member of the cluster until ctx ends, then
// returns nil. It
//
//   - heartbeats: records the instance in mediator_instance at once, then
//     refreshes heartbeat_at and its live sessions' last_seen every
//     Heartbeat (and registers its sessions again if another instance's
//     janitor removed them, taking this one for dead);
//   - runs the janitor every InstanceTTL/3 (one instance at a time): dead
//     instances and their sessions, and sessions not seen for InstanceTTL,
//     are deleted; in-flight messages of dead or unknown instances, or whose
//     lease ran out, go back to pending, and the instances now holding those
//     connections' live sessions are notified;
//   - listens on ChannelName(Instance) on a connection of its own (not from
//     the pool), calls OnWake for each notification, and reconnects with
//     backoff when the connection is lost, calling OnReconcile after every
//     successful LISTEN;
//   - calls OnReconcile every ReconcileEvery;
//   - every InstanceTTL/3, VACUUMs queued_message and live_session when one
//     holds VacuumDeadRows dead rows (one instance at a time).
//
// Database errors are logged and retried; they never end Run.
func (q *Queue) Run(ctx context.Context, o ClusterOptions) error {
	if o.Instance == "" {
		o.Instance = q.instance
	}
	if o.Instance == "" {
		return errors.New("queuepg: run: no instance id")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.InstanceTTL <= 0 {
		o.InstanceTTL = DefaultInstanceTTL
	}
	if o.ReconcileEvery <= 0 {
		o.ReconcileEvery = DefaultReconcileEvery
	}
	if o.OnWake == nil {
		o.OnWake = func(context.Context, string) {}
	}
	if o.OnReconcile == nil {
		o.OnReconcile = func(context.Context) {}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.VacuumDeadRows == 0 {
		o.VacuumDeadRows = DefaultVacuumDeadRows
	}
	o.Logger = o.Logger.With("instance", o.Instance)

	// The janitor starts once the listener has made its first attempt, so
	// that the wake-ups its first pass sends to this instance are heard.
	listenTried := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { q.heartbeatLoop(ctx, o) })
	wg.Go(func() {
		select {
		case <-listenTried:
			q.janitorLoop(ctx, o)
		case <-ctx.Done():
		}
	})
	wg.Go(func() { q.listenLoop(ctx, o, sync.OnceFunc(func() { close(listenTried) })) })
	if o.VacuumDeadRows > 0 {
		wg.Go(func() { q.vacuumLoop(ctx, o) })
	}
	wg.Go(func() {
		t := time.NewTicker(o.ReconcileEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				o.OnReconcile(ctx)
			}
		}
	})
	wg.Wait()
	return nil
}

// sleep waits for d or until ctx ends, and reports whether ctx is still
// alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter returns a random duration in [d*3/4, d*5/4).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d*3/4 + rand.N(d/2+1)
}

// ---- heartbeat ----

// heartbeatSQL refreshes (or recreates) the instance's row and the
// last_seen of the sessions this process registered ($2). It returns
// whether the row had to be created and the sessions of $2 it did not find. A row
// of this instance that is not in $2 is one whose UnregisterSession failed:
// it is left to go stale, and a janitor removes it.
const heartbeatSQL = `
WITH hb AS (
    INSERT INTO mediator_instance (instance) VALUES ($1)
    ON CONFLICT (instance) DO UPDATE SET heartbeat_at = now()
    RETURNING (xmax = 0) AS created
),
seen AS (
    UPDATE live_session SET last_seen = now()
    WHERE session_id = ANY($2::text[]) AND instance = $1
    RETURNING session_id
)
SELECT (SELECT created FROM hb),
       ARRAY(SELECT unnest($2::text[]) EXCEPT SELECT session_id FROM seen)`

// reregisterSQL puts sessions back that a janitor removed.
const reregisterSQL = `
INSERT INTO live_session (session_id, connection_id, protocol_version, instance, last_seen)
SELECT s.id, s.conn, s.proto, $1, now()
FROM unnest($2::text[], $3::uuid[], $4::text[]) AS s (id, conn, proto)
ON CONFLICT (session_id) DO UPDATE
SET connection_id = EXCLUDED.connection_id,
    protocol_version = EXCLUDED.protocol_version,
    instance = EXCLUDED.instance,
    last_seen = now()`

func (q *Queue) heartbeatLoop(ctx context.Context, o ClusterOptions) {
	first := true
	for {
		if !q.hasLeft(o.Instance) {
			if err := q.heartbeat(ctx, o, first); err != nil {
				if ctx.Err() != nil {
					return
				}
				o.Logger.Warn("queuepg: heartbeat failed; retrying", "err", err)
			} else {
				first = false
			}
		}
		if !sleep(ctx, o.Heartbeat) {
			return
		}
	}
}

func (q *Queue) heartbeat(ctx context.Context, o ClusterOptions, first bool) error {
	hctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var (
		created bool
		missing []string
	)
	sent := q.localSessions(o.Instance)
	if err := q.pool.QueryRow(hctx, heartbeatSQL, o.Instance, sent).Scan(&created, &missing); err != nil {
		return err
	}
	if created && !first {
		o.Logger.Warn("queuepg: this instance had been taken for dead by the cluster; rejoined")
	}
	// Sessions registered here but not in the table: a janitor removed
	// them (this instance missed heartbeats, e.g. the database was out of
	// reach for longer than the TTL). Put them back, or forwards accepted
	// elsewhere would not wake this instance.
	if n, err := q.reregister(ctx, o.Instance, missing); err != nil {
		return err
	} else if n > 0 {
		o.Logger.Warn("queuepg: live sessions were missing from the registry; registered them again", "sessions", n)
		o.OnReconcile(ctx)
	}
	return nil
}

// localSessions returns the ids of the sessions of instance registered
// through this Queue.
func (q *Queue) localSessions(instance string) []string {
	q.regMu.Lock()
	defer q.regMu.Unlock()
	ids := make([]string, 0, len(q.local))
	for id, s := range q.local {
		if s.Instance == instance {
			ids = append(ids, id)
		}
	}
	return ids
}

// reregister upserts the sessions of instance that the heartbeat looked
// for and did not find (missing) and that are still registered here: not
// one that closed meanwhile (its DELETE may have beaten the heartbeat), nor
// one registered after the heartbeat read its list (under a burst of
// connecting sockets they would all look missing). It holds regMu through
// the statement so that a session unregistered meanwhile cannot be brought
// back after its DELETE.
func (q *Queue) reregister(ctx context.Context, instance string, missing []string) (int, error) {
	if len(missing) == 0 {
		return 0, nil
	}
	q.regMu.Lock()
	defer q.regMu.Unlock()
	if q.left[instance] {
		return 0, nil
	}
	var ids, conns, protos []string
	for _, id := range missing {
		if s, ok := q.local[id]; ok && s.Instance == instance {
			ids = append(ids, s.ID)
			conns = append(conns, s.ConnectionID)
			protos = append(protos, s.Protocol)
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	if _, err := q.pool.Exec(ctx, reregisterSQL, instance, ids, conns, protos); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// ---- janitor ----

// janitorSQL cleans up after dead instances. An instance is alive when its
// heartbeat is younger than $1, and this instance ($2) always is (it is
// running this): it never deletes itself, even if its own heartbeats were
// late. A session not seen for $1 goes, whoever holds it (if it was one of
// this instance's, late heartbeats, its next heartbeat registers it again).
// Every clause is idempotent, and the statement sees one snapshot, so
// "fresh" is the same set for every clause. Deleted sessions are not
// visible as deleted to the wake-up, hence its last_seen test.
var janitorSQL = `
WITH fresh AS MATERIALIZED (
    SELECT instance FROM mediator_instance WHERE heartbeat_at > now() - $1::interval
    UNION
    SELECT $2::text
),
dead AS (
    DELETE FROM mediator_instance
    WHERE heartbeat_at <= now() - $1::interval AND instance <> $2
    RETURNING instance
),
gone AS (
    DELETE FROM live_session ls
    WHERE ls.last_seen <= now() - $1::interval OR ls.instance NOT IN (SELECT instance FROM fresh)
    RETURNING ls.session_id
),
requeued AS (
    UPDATE queued_message m` + unclaimSQL + `
    WHERE m.state = 'sending'
      AND (m.lease_expires_at < now()
           OR m.sending_instance IS NULL
           OR m.sending_instance NOT IN (SELECT instance FROM fresh))
    RETURNING m.connection_id
),
live AS MATERIALIZED (
    SELECT DISTINCT ON (ls.connection_id) ls.connection_id, ls.instance
    FROM live_session ls
    WHERE ls.connection_id IN (SELECT connection_id FROM requeued)
      AND ls.instance IN (SELECT instance FROM fresh)
      AND ls.last_seen > now() - $1::interval
    ORDER BY ls.connection_id, ls.created_at DESC, ls.session_id DESC
),
woken AS MATERIALIZED (
    SELECT pg_notify('mediator_' || left(md5(instance), 16), connection_id::text) FROM live
)
SELECT (SELECT count(*) FROM dead), (SELECT count(*) FROM gone),
       (SELECT count(*) FROM requeued), (SELECT count(*) FROM woken)`

func (q *Queue) janitorLoop(ctx context.Context, o ClusterOptions) {
	every := max(o.InstanceTTL/3, 10*time.Millisecond)
	// The first pass runs at start (after a short delay that lets the first
	// heartbeat land): whatever died while no instance ran is cleaned up.
	// Run starts this once the listener is up (or failed its first try).
	wait := min(every, 100*time.Millisecond)
	for sleep(ctx, jitter(wait)) {
		wait = every
		if q.hasLeft(o.Instance) {
			continue
		}
		if err := q.janitor(ctx, o); err != nil && ctx.Err() == nil {
			o.Logger.Warn("queuepg: janitor failed; retrying", "err", err)
		}
	}
}

func (q *Queue) janitor(ctx context.Context, o ClusterOptions) error {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	return pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", janitorLockID).Scan(&locked); err != nil {
			return err
		}
		if !locked {
			return nil // another instance's janitor is at it
		}
		var dead, gone, requeued, woken int
		if err := tx.QueryRow(ctx, janitorSQL, o.InstanceTTL, o.Instance).Scan(&dead, &gone, &requeued, &woken); err != nil {
			return err
		}
		if dead+gone+requeued > 0 {
			o.Logger.Info("queuepg: janitor cleaned up", "dead_instances", dead, "sessions_removed", gone,
				"messages_requeued", requeued, "instances_notified", woken)
		}
		return nil
	})
}

// ---- vacuum ----

// vacuumTimeout bounds one pass of vacuumLoop: a VACUUM of a table that
// grew big takes a while, and it runs beside everything else.
const vacuumTimeout = 10 * time.Minute

func (q *Queue) vacuumLoop(ctx context.Context, o ClusterOptions) {
	every := max(o.InstanceTTL/3, 10*time.Millisecond)
	for sleep(ctx, jitter(every)) {
		if q.hasLeft(o.Instance) {
			continue
		}
		if err := q.vacuum(ctx, o); err != nil && ctx.Err() == nil {
			o.Logger.Warn("queuepg: vacuum failed; retrying", "err", err)
		}
	}
}

// vacuum VACUUMs the queue tables that hold at least o.VacuumDeadRows dead
// rows and a tenth as many as live ones, unless another instance is at it.
// The tenth: a VACUUM reads every index whole, so with a big backlog it
// waits for the dead rows to be worth that, as autovacuum does. SKIP_LOCKED
// leaves a table that a VACUUM (autovacuum's, say) is already working on.
func (q *Queue) vacuum(ctx context.Context, o ClusterOptions) error {
	ctx, cancel := context.WithTimeout(ctx, vacuumTimeout)
	defer cancel()
	conn, err := q.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", vacuumLockID).Scan(&locked); err != nil {
		return err
	}
	if !locked {
		return nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.timeout)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", vacuumLockID); err != nil {
			// A session lock must not outlive this pass on a pooled
			// connection: close it, which releases the lock.
			_ = conn.Conn().Close(uctx)
		}
	}()
	rows, err := conn.Query(ctx, `
		SELECT relname::text FROM pg_stat_user_tables
		WHERE relid IN (to_regclass('queued_message'), to_regclass('live_session'))
		  AND n_dead_tup >= greatest($1, n_live_tup / 10)
		ORDER BY relname`, o.VacuumDeadRows)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, table := range tables {
		start := time.Now()
		if _, err := conn.Exec(ctx, "VACUUM (SKIP_LOCKED) "+pgx.Identifier{table}.Sanitize()); err != nil {
			return fmt.Errorf("vacuum %s: %w", table, err)
		}
		o.Logger.Debug("queuepg: vacuumed", "table", table, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// ---- listener ----

// listenLoop keeps a listener connection up until ctx ends. It calls tried
// once the first connection is listening or has failed.
func (q *Queue) listenLoop(ctx context.Context, o ClusterOptions, tried func()) {
	delay := listenRetryMin
	for {
		start := time.Now()
		err := q.listen(ctx, o, tried)
		tried()
		q.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > listenRetryMax {
			delay = listenRetryMin // it had been up a while: not a flapping server
		}
		d := jitter(delay)
		o.Logger.Warn("queuepg: listener connection lost; reconnecting", "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return
		}
		delay = min(delay*2, listenRetryMax)
	}
}

// listen runs one listener connection until it fails or ctx ends, calling
// listening once it listens.
func (q *Queue) listen(ctx context.Context, o ClusterOptions, listening func()) error {
	cfg := q.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	// An idle wait that times out must leave the connection usable: end it
	// with a read deadline, not with a cancel request to the server.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	cctx, cancel := context.WithTimeout(ctx, q.timeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	channel := ChannelName(o.Instance)
	listenSQL := "LISTEN " + pgx.Identifier{channel}.Sanitize()
	lctx, cancel := context.WithTimeout(ctx, q.timeout)
	_, err = conn.Exec(lctx, listenSQL)
	cancel()
	if err != nil {
		return err
	}
	q.listening.Store(true)
	listening()
	o.Logger.Debug("queuepg: listening", "channel", channel)
	// Whatever was notified while no one listened is lost: go over every
	// live session once.
	o.OnReconcile(ctx)

	idle := min(o.Heartbeat, listenPingMax)
	for {
		wctx, cancel := context.WithTimeout(ctx, idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			q.handleNotification(ctx, o, n)
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) && !conn.IsClosed():
			// Idle: check that the backend is still there (a silently
			// dropped TCP connection would otherwise wait forever). LISTEN
			// again is a no-op round trip, and keeps the channel in
			// pg_stat_activity.query for operators.
			pctx, cancel := context.WithTimeout(ctx, q.timeout)
			_, err := conn.Exec(pctx, listenSQL)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

func (q *Queue) handleNotification(ctx context.Context, o ClusterOptions, n *pgconn.Notification) {
	if sent, ok := parseProbe(n.Payload); ok {
		if o.OnNotifyLag != nil {
			o.OnNotifyLag(time.Since(sent))
		}
		return
	}
	id, ok := parsePayload(n.Payload)
	if !ok {
		// Not logged verbatim: anyone with NOTIFY rights can write it.
		o.Logger.Warn("queuepg: ignoring a notification that is not a connection id",
			"channel", n.Channel, "payload_bytes", len(n.Payload))
		return
	}
	o.OnWake(ctx, id)
}

// parsePayload reads a notification payload: a connection id, bare or as a
// JSON string (the form the TypeScript seed's pg-pubsub sends). It returns
// the id in canonical form.
func parsePayload(p string) (string, bool) {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, `"`) {
		var s string
		if json.Unmarshal([]byte(p), &s) != nil {
			return "", false
		}
		p = strings.TrimSpace(s)
	}
	return canonicalUUID(p)
}
