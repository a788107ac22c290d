package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
)

// SetCaps sets the per-connection queue caps (see queue.Caps). Negative
// values count as zero (no cap).
func (m *Memory) SetCaps(c queue.Caps) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.caps = queue.Caps{Soft: max(c.Soft, 0), Hard: max(c.Hard, 0)}
}

// Caps returns the per-connection queue caps in force.
func (m *Memory) Caps() queue.Caps {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.caps
}

// enqueueCapped queues a message for connectionID unless the connection is
// at its hard cap; m.mu is held. Depth is counted up to the larger cap, as
// queuepg does.
func (m *Memory) enqueueCapped(op, connectionID, recipientKey string, payload []byte) (queue.Enqueued, error) {
	depth := min(len(m.byConn[connectionID]), m.caps.CountLimit())
	if m.caps.Full(depth) {
		return queue.Enqueued{}, fmt.Errorf("memstore: %s: connection %s holds %d messages (hard cap %d): %w",
			op, connectionID, depth, m.caps.Hard, queue.ErrQueueFull)
	}
	return queue.Enqueued{
		Message:      m.enqueue(connectionID, recipientKey, payload),
		LiveInstance: m.liveInstance(connectionID),
		Depth:        depth,
		OverSoftCap:  m.caps.OverSoft(depth),
	}, nil
}

// ExpireMessages deletes the messages queued more than ttl ago, except
// those in flight under a lease that has not run out, at most batch
// (<= 0: queue.DefaultExpireBatch) per hold of the lock, and returns how
// many it deleted. ttl <= 0 deletes nothing.
func (m *Memory) ExpireMessages(ctx context.Context, ttl time.Duration, batch int) (int, error) {
	if ttl <= 0 {
		return 0, nil
	}
	if batch <= 0 {
		batch = queue.DefaultExpireBatch
	}
	deleted := 0
	for {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		n := m.expireBatch(ttl, batch)
		deleted += n
		if n < batch {
			return deleted, nil
		}
	}
}

func (m *Memory) expireBatch(ttl time.Duration, batch int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.timestamp()
	cutoff := now.Add(-ttl)
	n := 0
	for connID, list := range m.byConn {
		// Lists are oldest first: stop at the first message young enough.
		kept := list[:0:0]
		for i, msg := range list {
			if n == batch || !msg.ReceivedAt.Before(cutoff) {
				kept = append(kept, list[i:]...)
				break
			}
			if !msg.claimable("", now) {
				kept = append(kept, msg) // being delivered: spared
				continue
			}
			delete(m.msgs, msg.ID)
			n++
		}
		if len(kept) == 0 {
			delete(m.byConn, connID)
		} else {
			m.byConn[connID] = slices.Clip(kept)
		}
		if n == batch {
			break
		}
	}
	return n
}

// RunExpiry removes expired messages every o.Every until ctx ends (see
// queue.ExpiryOptions); o.TTL 0 returns at once.
func (m *Memory) RunExpiry(ctx context.Context, o queue.ExpiryOptions) error {
	return queue.RunExpiry(ctx, o, m.ExpireMessages)
}

// ConnectionByRoute returns the connection that registered recipientKey
// (base58) for its mediation.
func (m *Memory) ConnectionByRoute(_ context.Context, recipientKey string) (record.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[recipientKey]; ok {
		if c := m.conns[r.connectionID]; c != nil {
			return c.Connection, nil
		}
	}
	return record.Connection{}, fmt.Errorf("memstore: connection by route: %w", record.ErrNotFound)
}
