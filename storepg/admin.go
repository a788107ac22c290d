package storepg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openmediator/mediator/record"
)

// DefaultAdminTimeout bounds each of Admin's database calls when NewAdmin
// is given no timeout. Admin queries scan whole tables (queue statistics
// over every queued message), so it is longer than the serving path's.
const DefaultAdminTimeout = 30 * time.Second

// purgeBatch is how many messages one DELETE of PurgeQueue removes: a purge
// of a large backlog is many short statements, each under the timeout and
// none holding locks for long, not one that blocks pickups for minutes.
const purgeBatch = 5000

// ErrNoSchema is returned by CheckSchema for a database that has not been
// migrated (the mediator's tables are missing).
var ErrNoSchema = errors.New("storepg: the database has no mediator schema")

// ErrNoPurgeFilter is returned by PurgeQueue when it is given no filter:
// emptying every wallet's queue is never what an operator means by default.
var ErrNoPurgeFilter = errors.New("storepg: purge needs a connection or an age")

// Admin answers an operator's questions about a mediator database and
// carries out the few repairs they make by hand (purging queues, revoking a
// connection). It reads the tables directly, never a private key, and never
// returns message payloads or push tokens. It is safe for concurrent use and
// beside running instances.
//
// Times are the database's: every result carries Now, the database clock at
// the time of the query, so that ages computed against it do not depend on
// the clock of the machine running the command.
type Admin struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

// NewAdmin returns an Admin on pool, each call bounded by timeout (zero or
// less: DefaultAdminTimeout) on top of the caller's context.
func NewAdmin(pool *pgxpool.Pool, timeout time.Duration) *Admin {
	if timeout <= 0 {
		timeout = DefaultAdminTimeout
	}
	return &Admin{pool: pool, timeout: timeout}
}

// readOnly runs fn in a read-only REPEATABLE READ transaction under the
// timeout, so that the several queries of one report see one snapshot and
// share one now().
func (a *Admin) readOnly(ctx context.Context, op string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	err := pgx.BeginTxFunc(ctx, a.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error { return fn(ctx, tx) })
	if err != nil {
		return fmt.Errorf("storepg: %s: %w", op, err)
	}
	return nil
}

// CheckSchema returns ErrNoSchema (wrapped) if the mediator's tables are
// missing, e.g. on a database nobody migrated yet.
func (a *Admin) CheckSchema(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	var missing []string
	err := a.pool.QueryRow(ctx, `
		SELECT coalesce(array_agg(t ORDER BY t), '{}')
		FROM unnest($1::text[]) AS t
		WHERE to_regclass(t) IS NULL`,
		[]string{"queued_message", "live_session", "mediator_instance", "mediator_key",
			"didcomm_connection", "mediation_route", "device_info"}).Scan(&missing)
	if err != nil {
		return fmt.Errorf("storepg: check schema: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (missing tables: %v)", ErrNoSchema, missing)
	}
	return nil
}

// ---- queue ----

// ConnectionQueue is the queue of one connection.
type ConnectionQueue struct {
	ConnectionID string
	Label        string // the wallet's label; "" when none or unknown
	Known        bool   // whether the connection record exists
	Depth        int    // every queued message: pending and in flight
	InFlight     int    // handed out and waiting for an acknowledgement (lease not run out)
	TotalBytes   int64
	Oldest       time.Time // the oldest message's queue time
}

// QueueTotals sums the queues of every connection.
type QueueTotals struct {
	Connections int // connections with at least one queued message
	Depth       int
	InFlight    int
	TotalBytes  int64
	Oldest      time.Time // zero when nothing is queued
}

// QueueStats is the queue, per connection and in total.
type QueueStats struct {
	Now         time.Time
	Connections []ConnectionQueue // deepest first
	Totals      QueueTotals       // over every connection, also those beyond the limit
}

// inFlightSQL is the predicate of a message handed out and not yet
// acknowledged, whose lease still runs: a 'sending' row whose lease ran out
// is claimable again, so it counts as waiting, not in flight.
const inFlightSQL = `state = 'sending' AND lease_expires_at > now()`

// QueueStats returns the queue depth, in-flight count, size and oldest
// message of the limit deepest queues (limit <= 0: every queue), and totals
// over all of them.
func (a *Admin) QueueStats(ctx context.Context, limit int) (QueueStats, error) {
	var (
		s   QueueStats
		lim *int // NULL: LIMIT ALL
	)
	if limit > 0 {
		lim = &limit
	}
	err := a.readOnly(ctx, "queue stats", func(ctx context.Context, tx pgx.Tx) error {
		var oldest *time.Time
		err := tx.QueryRow(ctx, `
			SELECT now(), count(DISTINCT connection_id), count(*),
			       count(*) FILTER (WHERE `+inFlightSQL+`),
			       coalesce(sum(size_bytes), 0), min(created_at)
			FROM queued_message`).Scan(&s.Now, &s.Totals.Connections, &s.Totals.Depth,
			&s.Totals.InFlight, &s.Totals.TotalBytes, &oldest)
		if err != nil {
			return err
		}
		if oldest != nil {
			s.Totals.Oldest = *oldest
		}
		rows, _ := tx.Query(ctx, `
			WITH per AS (
			    SELECT connection_id, count(*) AS depth,
			           count(*) FILTER (WHERE `+inFlightSQL+`) AS in_flight,
			           coalesce(sum(size_bytes), 0) AS total_bytes, min(created_at) AS oldest
			    FROM queued_message
			    GROUP BY connection_id
			)
			SELECT per.connection_id::text, coalesce(c.their_label, ''), c.id IS NOT NULL,
			       per.depth, per.in_flight, per.total_bytes, per.oldest
			FROM per
			LEFT JOIN didcomm_connection c ON c.id = per.connection_id
			ORDER BY per.depth DESC, per.oldest, per.connection_id
			LIMIT $1`, lim)
		s.Connections, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ConnectionQueue, error) {
			var q ConnectionQueue
			err := row.Scan(&q.ConnectionID, &q.Label, &q.Known, &q.Depth, &q.InFlight, &q.TotalBytes, &q.Oldest)
			return q, err
		})
		return err
	})
	if err != nil {
		return QueueStats{}, err
	}
	return s, nil
}

// QueuedMessage describes one queued message; never its payload.
type QueuedMessage struct {
	ID              string
	ConnectionID    string
	State           string // "pending" or "sending"
	LeaseExpired    bool   // State is "sending" but the lease ran out: claimable again
	RecipientKey    string // base58
	SizeBytes       int
	CreatedAt       time.Time
	Attempts        int
	LeaseExpiresAt  time.Time // zero unless sending
	SendingInstance string    // "" unless sending
}

// QueueList is a page of one connection's queue.
type QueueList struct {
	Now      time.Time
	Total    int             // the connection's queued messages, also those beyond the limit
	Messages []QueuedMessage // oldest first
}

// QueueList returns the oldest limit messages queued for connectionID
// (limit <= 0: all). A connection id that is not a UUID, or that names no
// connection and has no messages, is record.ErrNotFound. Messages of a
// connection whose record is gone are still listed.
func (a *Admin) QueueList(ctx context.Context, connectionID string, limit int) (QueueList, error) {
	id, err := parseConnectionID("queue list", connectionID)
	if err != nil {
		return QueueList{}, err
	}
	var (
		l   QueueList
		lim *int
	)
	if limit > 0 {
		lim = &limit
	}
	err = a.readOnly(ctx, "queue list", func(ctx context.Context, tx pgx.Tx) error {
		var known bool
		err := tx.QueryRow(ctx, `
			SELECT now(), (SELECT count(*) FROM queued_message WHERE connection_id = $1),
			       EXISTS (SELECT 1 FROM didcomm_connection WHERE id = $1)`, id).Scan(&l.Now, &l.Total, &known)
		if err != nil {
			return err
		}
		if !known && l.Total == 0 {
			return fmt.Errorf("connection %s: %w", id, record.ErrNotFound)
		}
		rows, _ := tx.Query(ctx, `
			SELECT id::text, connection_id::text, state::text, state = 'sending' AND NOT (`+inFlightSQL+`),
			       recipient_key, size_bytes, created_at, attempts,
			       lease_expires_at, coalesce(sending_instance, '')
			FROM queued_message
			WHERE connection_id = $1
			ORDER BY created_at, id
			LIMIT $2`, id, lim)
		l.Messages, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (QueuedMessage, error) {
			var (
				m     QueuedMessage
				lease *time.Time
			)
			err := row.Scan(&m.ID, &m.ConnectionID, &m.State, &m.LeaseExpired, &m.RecipientKey, &m.SizeBytes,
				&m.CreatedAt, &m.Attempts, &lease, &m.SendingInstance)
			if lease != nil {
				m.LeaseExpiresAt = *lease
			}
			return m, err
		})
		return err
	})
	if err != nil {
		return QueueList{}, err
	}
	return l, nil
}

// PurgeFilter selects the messages PurgeQueue removes: those matching every
// filter given. At least one must be given.
type PurgeFilter struct {
	ConnectionID string        // "": any connection
	OlderThan    time.Duration // 0: any age; else queued longer ago than this
}

// purgeWhereSQL selects the messages a purge removes: $1 the connection (or
// NULL), $2 the cutoff (or NULL), and $3 the time the purge started, so that
// messages queued while it runs are left alone and it ends.
const purgeWhereSQL = `
    ($1::uuid IS NULL OR connection_id = $1::uuid)
    AND ($2::timestamptz IS NULL OR created_at < $2::timestamptz)
    AND created_at <= $3::timestamptz`

// PurgeQueue deletes the queued messages matching f, pending or in flight,
// and returns how many it deleted; with dryRun it deletes nothing and
// returns how many it would delete. The age cutoff is taken from the
// database's clock when the purge starts. A purge is done in batches: if it
// fails midway, what it had deleted stays deleted (the error says how many).
//
// It returns ErrNoPurgeFilter for an empty filter, and record.ErrNotFound
// for a connection id that is not a UUID or that names no connection and
// has no messages.
func (a *Admin) PurgeQueue(ctx context.Context, f PurgeFilter, dryRun bool) (int, error) {
	if f.ConnectionID == "" && f.OlderThan == 0 {
		return 0, ErrNoPurgeFilter
	}
	if f.OlderThan < 0 {
		return 0, fmt.Errorf("storepg: purge: negative age %v", f.OlderThan)
	}
	var connID *string
	if f.ConnectionID != "" {
		id, err := parseConnectionID("purge", f.ConnectionID)
		if err != nil {
			return 0, err
		}
		connID = &id
	}

	// Fix the cutoffs and check the connection once, then count or delete.
	var (
		start, cutoffAt time.Time
		cutoff          *time.Time
		known           = true
	)
	err := a.readOnly(ctx, "purge", func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			SELECT now(), now() - $1::interval,
			       $2::uuid IS NULL
			       OR EXISTS (SELECT 1 FROM didcomm_connection WHERE id = $2::uuid)
			       OR EXISTS (SELECT 1 FROM queued_message WHERE connection_id = $2::uuid)`,
			f.OlderThan, connID).Scan(&start, &cutoffAt, &known)
	})
	if err != nil {
		return 0, err
	}
	if !known {
		return 0, fmt.Errorf("storepg: purge: connection %s: %w", *connID, record.ErrNotFound)
	}
	if f.OlderThan > 0 {
		cutoff = &cutoffAt
	}

	if dryRun {
		var n int
		err := a.readOnly(ctx, "purge (dry run)", func(ctx context.Context, tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM queued_message WHERE `+purgeWhereSQL,
				connID, cutoff, start).Scan(&n)
		})
		return n, err
	}

	deleted := 0
	for {
		n, err := a.purgeBatch(ctx, connID, cutoff, start)
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("storepg: purge: stopped after deleting %d messages: %w", deleted, err)
		}
		if n == 0 {
			return deleted, nil
		}
	}
}

func (a *Admin) purgeBatch(ctx context.Context, connID *string, cutoff *time.Time, start time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	tag, err := a.pool.Exec(ctx, `
		WITH doomed AS MATERIALIZED (
		    SELECT id FROM queued_message WHERE `+purgeWhereSQL+`
		    LIMIT $4
		)
		DELETE FROM queued_message m USING doomed WHERE m.id = doomed.id`,
		connID, cutoff, start, purgeBatch)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// ---- connections ----

// ConnectionSummary is one line of the connection list.
type ConnectionSummary struct {
	ID         string
	Label      string
	State      string // handshake state
	Mediation  string // none, granted or denied
	Keys       int    // registered recipient keys (routes)
	QueueDepth int
	CreatedAt  time.Time
}

// ConnectionList is a page of connections.
type ConnectionList struct {
	Now         time.Time
	Total       int                 // every connection, also those beyond the limit
	Connections []ConnectionSummary // newest first
}

// Connections returns the newest limit connections (limit <= 0: all).
func (a *Admin) Connections(ctx context.Context, limit int) (ConnectionList, error) {
	var (
		l   ConnectionList
		lim *int
	)
	if limit > 0 {
		lim = &limit
	}
	err := a.readOnly(ctx, "connections", func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT now(), count(*) FROM didcomm_connection`).Scan(&l.Now, &l.Total); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT c.id::text, coalesce(c.their_label, ''), coalesce(c.state, ''), c.mediation_state,
			       (SELECT count(*) FROM mediation_route r WHERE r.connection_id = c.id),
			       (SELECT count(*) FROM queued_message m WHERE m.connection_id = c.id),
			       c.created_at
			FROM didcomm_connection c
			ORDER BY c.created_at DESC, c.id
			LIMIT $1`, lim)
		var err error
		l.Connections, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ConnectionSummary, error) {
			var c ConnectionSummary
			err := row.Scan(&c.ID, &c.Label, &c.State, &c.Mediation, &c.Keys, &c.QueueDepth, &c.CreatedAt)
			return c, err
		})
		return err
	})
	if err != nil {
		return ConnectionList{}, err
	}
	return l, nil
}

// RouteKey is a recipient key registered for a connection.
type RouteKey struct {
	Verkey    string // base58
	CreatedAt time.Time
}

// ConnectionDetail is everything known about one connection except secrets:
// the push token itself is never read, only whether there is one.
type ConnectionDetail struct {
	Now             time.Time
	Connection      record.Connection
	Keys            []RouteKey // oldest first
	DeviceToken     bool       // whether a push token is registered
	DevicePlatform  string
	DeviceUpdatedAt time.Time // zero without device info
	Queue           ConnectionQueue
	Sessions        []LiveSession
}

// Connection returns the details of connection id, or record.ErrNotFound.
func (a *Admin) Connection(ctx context.Context, id string) (ConnectionDetail, error) {
	id, err := parseConnectionID("connection", id)
	if err != nil {
		return ConnectionDetail{}, err
	}
	var d ConnectionDetail
	err = a.readOnly(ctx, "connection", func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&d.Now); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT `+connectionColumns+` FROM didcomm_connection WHERE id = $1`, id)
		c, err := pgx.CollectExactlyOneRow(rows, scanConnection)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("connection %s: %w", id, record.ErrNotFound)
		}
		if err != nil {
			return err
		}
		d.Connection = c

		rows, _ = tx.Query(ctx, `
			SELECT recipient_key, created_at FROM mediation_route
			WHERE connection_id = $1 ORDER BY created_at, recipient_key`, id)
		d.Keys, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (RouteKey, error) {
			var k RouteKey
			err := row.Scan(&k.Verkey, &k.CreatedAt)
			return k, err
		})
		if err != nil {
			return err
		}

		var updated *time.Time
		err = tx.QueryRow(ctx, `
			SELECT device_token IS NOT NULL, coalesce(device_platform, ''), updated_at
			FROM device_info WHERE connection_id = $1`, id).Scan(&d.DeviceToken, &d.DevicePlatform, &updated)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if updated != nil {
			d.DeviceUpdatedAt = *updated
		}

		var oldest *time.Time
		d.Queue = ConnectionQueue{ConnectionID: id, Label: c.TheirLabel, Known: true}
		err = tx.QueryRow(ctx, `
			SELECT count(*), count(*) FILTER (WHERE `+inFlightSQL+`), coalesce(sum(size_bytes), 0), min(created_at)
			FROM queued_message WHERE connection_id = $1`, id).
			Scan(&d.Queue.Depth, &d.Queue.InFlight, &d.Queue.TotalBytes, &oldest)
		if err != nil {
			return err
		}
		if oldest != nil {
			d.Queue.Oldest = *oldest
		}

		d.Sessions, err = sessions(ctx, tx, SessionFilter{ConnectionID: id})
		return err
	})
	if err != nil {
		return ConnectionDetail{}, err
	}
	return d, nil
}

// Revoked is what RevokeConnection removed.
type Revoked struct {
	ConnectionID string
	Label        string
	MediationWas string   // the mediation state before: none, granted or denied
	Keys         []string // the recipient keys (routes) removed, base58, oldest first
	Messages     int      // queued messages deleted, pending and in flight
	Sessions     int      // live sessions removed
	DeviceInfo   bool     // whether a push token / platform record was removed
}

// RevokeConnection ends the mediation of connection id in one transaction:
// its mediation state becomes none, and its recipient keys (routes), queued
// messages, live sessions and push device record are deleted, so nothing
// routes to the wallet any more. The connection record itself stays (for
// the audit trail, and so that the wallet gets a proper answer if it asks
// again). It returns record.ErrNotFound for an unknown connection.
//
// The connection's row is locked first, so two revokes of one connection
// do not interleave.
func (a *Admin) RevokeConnection(ctx context.Context, id string) (Revoked, error) {
	id, err := parseConnectionID("revoke connection", id)
	if err != nil {
		return Revoked{}, err
	}
	r := Revoked{ConnectionID: id}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	err = pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT mediation_state, coalesce(their_label, '')
			FROM didcomm_connection WHERE id = $1 FOR UPDATE`, id).Scan(&r.MediationWas, &r.Label)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("connection %s: %w", id, record.ErrNotFound)
		}
		if err != nil {
			return err
		}
		// Routes first, messages last: the DELETE of the messages runs on
		// a snapshot taken after every earlier statement, so it also
		// catches what forwards queued meanwhile. (A forward that read the
		// route before this commits and itself commits after the DELETE
		// below can still leave a message: a window of the length of one
		// forward statement, which queue purge --connection cleans up.)
		rows, _ := tx.Query(ctx, `
			WITH gone AS (
			    DELETE FROM mediation_route WHERE connection_id = $1
			    RETURNING recipient_key, created_at
			)
			SELECT recipient_key FROM gone ORDER BY created_at, recipient_key`, id)
		if r.Keys, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM live_session WHERE connection_id = $1`, id)
		if err != nil {
			return err
		}
		r.Sessions = int(tag.RowsAffected())
		if tag, err = tx.Exec(ctx, `DELETE FROM queued_message WHERE connection_id = $1`, id); err != nil {
			return err
		}
		r.Messages = int(tag.RowsAffected())
		if tag, err = tx.Exec(ctx, `DELETE FROM device_info WHERE connection_id = $1`, id); err != nil {
			return err
		}
		r.DeviceInfo = tag.RowsAffected() > 0
		_, err = tx.Exec(ctx, `
			UPDATE didcomm_connection
			SET mediation_state = $2, updated_at = greatest(now(), updated_at)
			WHERE id = $1`, id, string(record.MediationNone))
		return err
	})
	if err != nil {
		return Revoked{}, fmt.Errorf("storepg: revoke connection: %w", err)
	}
	if r.Keys == nil {
		r.Keys = []string{}
	}
	return r, nil
}

// ---- sessions and instances ----

// LiveSession is a wallet's live socket as registered by the instance that
// holds it.
type LiveSession struct {
	SessionID    string
	ConnectionID string
	Protocol     string // "v2" (pickup 2.0 live mode) or "implicit"
	Instance     string
	CreatedAt    time.Time
	LastSeen     time.Time // refreshed by the holder's heartbeat
}

// SessionFilter restricts Sessions; empty fields match everything.
type SessionFilter struct {
	Instance     string
	ConnectionID string
}

// SessionList is the registry of live sessions.
type SessionList struct {
	Now      time.Time
	Sessions []LiveSession // by instance, then oldest first
}

// Sessions returns the registered live sessions matching f. A connection
// id that is not a UUID matches nothing.
func (a *Admin) Sessions(ctx context.Context, f SessionFilter) (SessionList, error) {
	if f.ConnectionID != "" {
		u, err := uuid.Parse(f.ConnectionID)
		if err != nil {
			return SessionList{Sessions: []LiveSession{}}, nil
		}
		f.ConnectionID = u.String()
	}
	var l SessionList
	err := a.readOnly(ctx, "sessions", func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&l.Now); err != nil {
			return err
		}
		var err error
		l.Sessions, err = sessions(ctx, tx, f)
		return err
	})
	if err != nil {
		return SessionList{}, err
	}
	return l, nil
}

func sessions(ctx context.Context, tx pgx.Tx, f SessionFilter) ([]LiveSession, error) {
	var conn *string
	if f.ConnectionID != "" {
		conn = &f.ConnectionID
	}
	rows, _ := tx.Query(ctx, `
		SELECT session_id, connection_id::text, protocol_version, instance, created_at, last_seen
		FROM live_session
		WHERE ($1::text = '' OR instance = $1::text) AND ($2::uuid IS NULL OR connection_id = $2::uuid)
		ORDER BY instance, created_at, session_id`, f.Instance, conn)
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (LiveSession, error) {
		var s LiveSession
		err := row.Scan(&s.SessionID, &s.ConnectionID, &s.Protocol, &s.Instance, &s.CreatedAt, &s.LastSeen)
		return s, err
	})
}

// Instance is a mediator process that joined the cluster.
type Instance struct {
	Instance    string
	StartedAt   time.Time
	HeartbeatAt time.Time
	Alive       bool // heartbeat younger than the TTL given to Instances
	Sessions    int  // live sessions registered under it
}

// InstanceList is the cluster's membership table.
type InstanceList struct {
	Now       time.Time
	Instances []Instance // oldest first
}

// Instances returns the instances in the membership table; one whose
// heartbeat is older than ttl is not Alive (the same test the instances'
// janitors use: give the ttl the instances run with).
func (a *Admin) Instances(ctx context.Context, ttl time.Duration) (InstanceList, error) {
	var l InstanceList
	err := a.readOnly(ctx, "instances", func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&l.Now); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT i.instance, i.started_at, i.heartbeat_at, i.heartbeat_at > now() - $1::interval,
			       (SELECT count(*) FROM live_session s WHERE s.instance = i.instance)
			FROM mediator_instance i
			ORDER BY i.started_at, i.instance`, ttl)
		var err error
		l.Instances, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Instance, error) {
			var in Instance
			err := row.Scan(&in.Instance, &in.StartedAt, &in.HeartbeatAt, &in.Alive, &in.Sessions)
			return in, err
		})
		return err
	})
	if err != nil {
		return InstanceList{}, err
	}
	return l, nil
}

// ---- keys ----

// PublicKey is one of the mediator's own keys, public part only.
type PublicKey struct {
	Verkey    string // base58
	Purpose   record.KeyPurpose
	CreatedAt time.Time
}

// MediatorKeys lists the mediator's deployment-wide keys.
type MediatorKeys struct {
	Now            time.Time
	Keys           []PublicKey // invitation and routing keys, by purpose then age
	ConnectionKeys int         // pairwise keys created for connections
}

// MediatorKeys returns the public invitation and routing keys and how many
// connection keys exist. It never reads sealed private keys.
func (a *Admin) MediatorKeys(ctx context.Context) (MediatorKeys, error) {
	var k MediatorKeys
	err := a.readOnly(ctx, "mediator keys", func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT now(), count(*) FROM mediator_key WHERE purpose = $1`,
			string(record.PurposeConnection)).Scan(&k.Now, &k.ConnectionKeys)
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT verkey, purpose, created_at FROM mediator_key
			WHERE purpose = ANY($1::text[])
			ORDER BY array_position($1::text[], purpose), created_at, verkey`,
			[]string{string(record.PurposeInvitation), string(record.PurposeRouting)})
		k.Keys, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (PublicKey, error) {
			var (
				p       PublicKey
				purpose string
			)
			err := row.Scan(&p.Verkey, &purpose, &p.CreatedAt)
			p.Purpose = record.KeyPurpose(purpose)
			return p, err
		})
		return err
	})
	if err != nil {
		return MediatorKeys{}, err
	}
	return k, nil
}

// parseConnectionID returns id in canonical form, or record.ErrNotFound
// (wrapped, saying why) if it is not a UUID.
func parseConnectionID(op, id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", fmt.Errorf("storepg: %s: connection id %q is not a UUID: %w", op, id, record.ErrNotFound)
	}
	return u.String(), nil
}
