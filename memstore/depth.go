package memstore

import (
	"context"

	"github.com/openmediator/mediator/queue"
)

// Depth describes the whole queue, for monitoring.
func (m *Memory) Depth(context.Context) (queue.Depth, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.timestamp()
	var d queue.Depth
	for _, msg := range m.msgs {
		d.Messages++
		if msg.sending && !msg.leaseExpires.Before(now) {
			d.InFlight++
		}
		d.OldestAge = max(d.OldestAge, now.Sub(msg.ReceivedAt))
	}
	return d, nil
}
