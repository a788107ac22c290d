package queuepg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openmediator/mediator/queue"
)

// SetCaps sets the per-connection queue caps for the enqueues that start
// from now on (see queue.Caps). Negative values count as zero (no cap).
func (q *Queue) SetCaps(c queue.Caps) {
	c.Soft, c.Hard = max(c.Soft, 0), max(c.Hard, 0)
	q.caps.Store(&c)
	if q.hints != nil {
		q.hints.forget() // they are only good for the caps they were made for
	}
}

// Caps returns the per-connection queue caps in force.
func (q *Queue) Caps() queue.Caps {
	if c := q.caps.Load(); c != nil {
		return *c
	}
	return queue.Caps{}
}

// enqueued completes the result of an enqueue statement: id and at are
// NULL when the hard cap refused the message.
func enqueued(res queue.Enqueued, id *string, at *time.Time, caps queue.Caps, op string) (queue.Enqueued, error) {
	if id == nil || at == nil {
		return queue.Enqueued{}, fmt.Errorf("queuepg: %s: connection %s holds %d messages (hard cap %d): %w",
			op, res.ConnectionID, res.Depth, caps.Hard, queue.ErrQueueFull)
	}
	res.ID, res.ReceivedAt = *id, *at
	res.OverSoftCap = caps.OverSoft(res.Depth)
	return res, nil
}

// expireLockID is the pg_try_advisory_lock key that lets one instance at a
// time run an expiry pass (the others skip theirs): a pass that finds
// nothing to delete is a sequential scan of queued_message, which is not
// worth doing N times. It spells "medexpir" in ASCII.
const expireLockID int64 = 0x6d65646578706972

// expireSQL deletes one batch of expired messages: queued more than $1
// ago, and pending or in flight under a lease that has run out (the same
// test as Claim's, so a message being delivered right now is spared
// however old it is). SKIP LOCKED passes over rows a Claim, an Ack or
// another pass holds; they are looked at again next pass.
//
// No index leads with created_at, so finding the batch is a sequential scan
// that stops after $2 matches: when nothing has expired it reads the whole
// table (measured: 48 ms for 260,000 rows on PostgreSQL 15). An index on
// created_at would make it cheap but would cost every enqueue and every ack
// an index update; one scan per Every, on one instance, is the cheaper side.
const expireSQL = `
WITH doomed AS MATERIALIZED (
    SELECT id FROM queued_message
    WHERE created_at < now() - $1::interval
      AND (state = 'pending' OR lease_expires_at < now())
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM queued_message m USING doomed WHERE m.id = doomed.id`

// ExpireMessages deletes the messages queued more than ttl ago, except
// those in flight under a lease that has not run out, in statements of at
// most batch rows (batch <= 0: queue.DefaultExpireBatch), and returns how
// many it deleted. If another instance is running a pass, it returns 0 at
// once. ttl <= 0 deletes nothing.
func (q *Queue) ExpireMessages(ctx context.Context, ttl time.Duration, batch int) (int, error) {
	if ttl <= 0 {
		return 0, nil
	}
	if batch <= 0 {
		batch = queue.DefaultExpireBatch
	}
	actx, cancel := context.WithTimeout(ctx, q.timeout)
	conn, err := q.pool.Acquire(actx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("queuepg: expire: %w", err)
	}
	defer conn.Release()
	locked, err := q.tryLock(ctx, conn, "SELECT pg_try_advisory_lock($1)")
	if err != nil || !locked {
		return 0, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.timeout)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", expireLockID); err != nil {
			// The lock dies with the session: do not return it to the pool.
			_ = conn.Conn().Close(uctx)
		}
	}()
	deleted := 0
	for {
		bctx, cancel := context.WithTimeout(ctx, q.timeout)
		tag, err := conn.Exec(bctx, expireSQL, ttl, batch)
		cancel()
		if err != nil {
			return deleted, fmt.Errorf("queuepg: expire: stopped after deleting %d messages: %w", deleted, err)
		}
		n := int(tag.RowsAffected())
		deleted += n
		if n < batch {
			return deleted, nil
		}
	}
}

func (q *Queue) tryLock(ctx context.Context, conn *pgxpool.Conn, sql string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var locked bool
	if err := conn.QueryRow(ctx, sql, expireLockID).Scan(&locked); err != nil {
		return false, fmt.Errorf("queuepg: expire: lock: %w", err)
	}
	return locked, nil
}

// RunExpiry removes expired messages every o.Every until ctx ends (see
// queue.ExpiryOptions and ExpireMessages); o.TTL 0 returns at once. Run it
// on every instance: one at a time does a pass.
func (q *Queue) RunExpiry(ctx context.Context, o queue.ExpiryOptions) error {
	return queue.RunExpiry(ctx, o, q.ExpireMessages)
}
