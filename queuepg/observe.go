package queuepg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openmediator/mediator/queue"
)

// depthSQL reads the whole queue's size, on the database's clock (no skew
// with the instance's).
//
// Cost: each of the three is a full scan, of an index rather than of the
// table: the total and the oldest message read the whole of
// queued_message_state_lease_idx and queued_message_connection_created_idx
// (index-only scans: about 80 and 950 pages per 100,000 messages, plus heap
// visits for pages autovacuum has not marked all-visible yet; it runs at 2%
// churn on this table); the in-flight count reads only the 'sending' part of
// the first. Measured at 100,000 queued messages of 1.5 KB: 12-35 ms and
// 8 MB read, where the one-pass "SELECT count(*), min(created_at) FROM
// queued_message" is a parallel sequential scan of the table, 45-90 ms and
// 156 MB. It grows linearly with the backlog, and every instance runs it at
// every sample (15s): beyond a few million queued messages, sample less
// often or from one instance, or use the planner's estimate
// (pg_class.reltuples) and an index on created_at alone.
const depthSQL = `
SELECT (SELECT count(*) FROM queued_message),
       (SELECT count(*) FROM queued_message WHERE state = 'sending' AND lease_expires_at >= now()),
       (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM queued_message)`

// Depth reads the whole queue's depth, for monitoring. See depthSQL for its
// cost.
func (q *Queue) Depth(ctx context.Context) (queue.Depth, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var (
		d   queue.Depth
		age float64
	)
	if err := q.pool.QueryRow(ctx, depthSQL).Scan(&d.Messages, &d.InFlight, &age); err != nil {
		return queue.Depth{}, fmt.Errorf("queuepg: depth: %w", err)
	}
	d.OldestAge = time.Duration(max(age, 0) * float64(time.Second))
	return d, nil
}

// BatchStats returns how many group-commit statements this queue has run
// for forwards and how many forwards they carried, for monitoring: their
// ratio is the mean batch size.
func (q *Queue) BatchStats() (statements, forwards int64) {
	return q.batch.batches.Load(), q.batch.requests.Load()
}

// PoolStat returns the statistics of the queue's connection pool, for
// monitoring.
func (q *Queue) PoolStat() *pgxpool.Stat { return q.pool.Stat() }

// probePrefix starts the payload of a probe notification: "probe:" and the
// sender's clock in Unix nanoseconds. No connection id looks like that.
const probePrefix = "probe:"

// SendNotifyProbe sends a probe notification on this instance's own channel
// (Options.Instance). Run's listener hands it to ClusterOptions.OnNotifyLag
// with the time it took, instead of to OnWake. Probes go through the same
// path as wake-ups from other instances (a committed pg_notify, then this
// instance's LISTEN connection), and queue up behind them, so their delay
// is that of wake-ups; both ends use this instance's clock.
func (q *Queue) SendNotifyProbe(ctx context.Context) error {
	if q.instance == "" {
		return errors.New("queuepg: notify probe: no instance id")
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	payload := probePrefix + strconv.FormatInt(time.Now().UnixNano(), 10)
	if _, err := q.pool.Exec(ctx, "SELECT pg_notify($1, $2)", ChannelName(q.instance), payload); err != nil {
		return fmt.Errorf("queuepg: notify probe: %w", err)
	}
	return nil
}

// parseProbe reads a probe payload and returns when it was sent.
func parseProbe(p string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(p, probePrefix)
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}
