package notify

import (
	"context"
	"time"
)

// Event says a message was queued for a wallet that is offline.
type Event struct {
	ConnectionID string
	MessageID    string
	RecipientKey string // base58
	QueuedAt     time.Time
}

// Notifier receives events. MessageQueued must not block the caller (it is on
// the forward path) and must be safe for concurrent use.
type Notifier interface {
	MessageQueued(ctx context.Context, e Event)
}

// Multi fans an event out to several notifiers. Nil entries are skipped.
// Every member must itself honour the Notifier contract (never block).
type Multi []Notifier

// MessageQueued passes e to every notifier in m, in order.
func (m Multi) MessageQueued(ctx context.Context, e Event) {
	for _, n := range m {
		if n != nil {
			n.MessageQueued(ctx, e)
		}
	}
}

// DeviceLookup finds the push token a wallet registered
// (push-notifications-fcm set-device-info); ok=false if none.
type DeviceLookup func(ctx context.Context, connectionID string) (token, platform string, ok bool, err error)
