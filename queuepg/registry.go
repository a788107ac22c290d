package queuepg

import (
	"context"
	"errors"
	"fmt"

	"github.com/openmediator/mediator/queue"
)

// wakeLiveSQL follows a CTE "requeued" of connection ids that just got
// messages back to pending. For each such connection it notifies the
// instance holding its newest live session among instances with a fresh
// heartbeat ($1 is the TTL), so that those messages are pushed now rather
// than at the next reconcile pass. excludeSQL further restricts the
// live_session rows (ls) considered: the statement's own deletions are not
// visible to it. The final SELECT reads "woken" to the end so that every
// pg_notify runs; it returns (requeued rows, notifications).
func wakeLiveSQL(excludeSQL string) string {
	return `,
live AS MATERIALIZED (
    SELECT DISTINCT ON (ls.connection_id) ls.connection_id, ls.instance
    FROM live_session ls
    JOIN mediator_instance mi ON mi.instance = ls.instance
    WHERE ls.connection_id IN (SELECT connection_id FROM requeued)
      AND mi.heartbeat_at > now() - $1::interval
      AND ` + excludeSQL + `
    ORDER BY ls.connection_id, ls.created_at DESC, ls.session_id DESC
),
woken AS MATERIALIZED (
    SELECT pg_notify('mediator_' || left(md5(instance), 16), connection_id::text) FROM live
)
SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM woken)`
}

// registerSQL records a live session, or updates it when the same socket
// registers again (e.g. it switched from implicit pickup to live mode): it
// keeps its created_at, so it does not become the connection's newest
// session by changing mode. It also creates the instance's row if it has
// none yet, so that a session registered before Run's first heartbeat is
// not ignored; a row that exists is left alone (a stale heartbeat stays
// stale: only Run vouches for the instance being alive).
const registerSQL = `
WITH inst AS (
    INSERT INTO mediator_instance (instance) VALUES ($4)
    ON CONFLICT (instance) DO NOTHING
)
INSERT INTO live_session (session_id, connection_id, protocol_version, instance, last_seen)
VALUES ($1, $2::uuid, $3, $4, now())
ON CONFLICT (session_id) DO UPDATE
SET connection_id = EXCLUDED.connection_id,
    protocol_version = EXCLUDED.protocol_version,
    instance = EXCLUDED.instance,
    last_seen = now()`

// RegisterSession records that s.Instance holds a live session (socket)
// s.ID on which connection s.ConnectionID receives pushes. Registering the
// same session id again updates it.
func (q *Queue) RegisterSession(ctx context.Context, s queue.Session) error {
	if s.ID == "" {
		return errors.New("queuepg: register session: empty session id")
	}
	connID, ok := canonicalUUID(s.ConnectionID)
	if !ok {
		return fmt.Errorf("queuepg: register session: connection id %q is not a UUID", s.ConnectionID)
	}
	s.ConnectionID = connID
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	if _, err := q.pool.Exec(ctx, registerSQL, s.ID, connID, s.Protocol, s.Instance); err != nil {
		return fmt.Errorf("queuepg: register session: %w", err)
	}
	q.regMu.Lock()
	q.local[s.ID] = s
	q.regMu.Unlock()
	return nil
}

// unregisterSQL deletes one session's row (by its primary key: never another
// socket's row of the same connection) and returns the messages that
// session holds in flight to pending, then wakes the connection's remaining
// live session, if any, to push them. The statement sees live_session as it
// was before its own DELETE, hence the session_id test in the wake-up.
var unregisterSQL = `
WITH gone AS (
    DELETE FROM live_session WHERE session_id = $2
),
requeued AS (
    UPDATE queued_message m
    SET lease_expires_at = LEAST(m.lease_expires_at, now() + $3::interval)
    WHERE m.state = 'sending' AND m.sending_session = $2
    RETURNING m.connection_id
)` + wakeLiveSQL("ls.session_id <> $2")

// UnregisterSession removes live session sessionID, and only it, and ends
// the lease of the messages it holds in flight after AckGrace (at once
// without one), so that a late messages-received can still remove them; if
// the connection is still live on some instance (another socket), that
// instance is notified, and the janitor notifies again once the grace is
// over. Unknown sessions are not an error.
func (q *Queue) UnregisterSession(ctx context.Context, sessionID string) error {
	if sessionID == "" {
		return nil
	}
	// Forget it locally first: a heartbeat that re-registers lost sessions
	// must not bring this one back after the DELETE below.
	q.regMu.Lock()
	delete(q.local, sessionID)
	q.regMu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var requeued, woken int
	if err := q.pool.QueryRow(ctx, unregisterSQL, q.instanceTTL, sessionID, q.ackGrace).Scan(&requeued, &woken); err != nil {
		return fmt.Errorf("queuepg: unregister session: %w", err)
	}
	return nil
}

// leaveSQL removes an instance from the cluster: its sessions, its
// heartbeat row, and its claims (returned to pending, with the connections'
// live sessions on other instances woken).
var leaveSQL = `
WITH gone AS (
    DELETE FROM live_session WHERE instance = $2
),
inst AS (
    DELETE FROM mediator_instance WHERE instance = $2
),
requeued AS (
    UPDATE queued_message m` + unclaimSQL + `
    WHERE m.state = 'sending' AND m.sending_instance = $2
    RETURNING m.connection_id
)` + wakeLiveSQL("ls.instance <> $2")

// Leave is the graceful end of instance: its live sessions are deleted, the
// messages it holds in flight go back to pending (and the instances holding
// those connections' other live sessions are notified), and its heartbeat
// row is deleted. A Run of this Queue for instance stops heartbeating, so it
// does not come back; call Leave after the sockets are closed and before
// ending Run.
func (q *Queue) Leave(ctx context.Context, instance string) error {
	q.regMu.Lock()
	q.left[instance] = true
	for id, s := range q.local {
		if s.Instance == instance {
			delete(q.local, id)
		}
	}
	q.regMu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var requeued, woken int
	if err := q.pool.QueryRow(ctx, leaveSQL, q.instanceTTL, instance).Scan(&requeued, &woken); err != nil {
		return fmt.Errorf("queuepg: leave: %w", err)
	}
	return nil
}

func (q *Queue) hasLeft(instance string) bool {
	q.regMu.Lock()
	defer q.regMu.Unlock()
	return q.left[instance]
}

// wakeSQL notifies the instance holding the connection's newest live
// session (any instance, this one included) so that it pushes what is
// claimable now.
var wakeSQL = `
WITH requeued AS (SELECT $2::uuid AS connection_id)` + wakeLiveSQL("true")

// WakeConnection asks whichever instance holds the connection's live
// session to push what is claimable, e.g. once the grace after a closed
// socket is over.
func (q *Queue) WakeConnection(ctx context.Context, connectionID string) error {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var requeued, woken int
	if err := q.pool.QueryRow(ctx, wakeSQL, q.instanceTTL, connectionID).Scan(&requeued, &woken); err != nil {
		return fmt.Errorf("queuepg: wake connection: %w", err)
	}
	return nil
}
