package pickup

import (
	"context"

	"github.com/openmediator/mediator/queue"
)

// Queue is what message pickup needs of the transport queue.
type Queue interface {
	// Stats describes the claimable messages (pending, or in flight with an
	// expired lease) matching f.
	Stats(ctx context.Context, f queue.Filter) (queue.Stats, error)
	// Claim hands out up to limit claimable messages matching f, oldest
	// first, marking them in flight for h until the queue's lease runs out.
	// Concurrent claims never return the same message.
	Claim(ctx context.Context, f queue.Filter, limit int, h queue.Holder) ([]queue.Message, error)
	// Ack deletes the connection's messages with these ids (ids that are not
	// UUIDs or not the connection's are ignored) and returns how many went.
	Ack(ctx context.Context, connectionID string, ids []string) (int, error)
	// AckStats is Ack followed by Stats of the connection's messages (no
	// recipient key filter), in one round trip where the queue can; with no
	// usable ids it is Stats alone.
	AckStats(ctx context.Context, connectionID string, ids []string) (int, queue.Stats, error)
	// Release puts claimed messages back to pending (e.g. a write failed),
	// but only those h still holds: a late release must not take back a
	// message that was claimed again by someone else after h's lease ran out.
	Release(ctx context.Context, h queue.Holder, connectionID string, ids []string) error
}

// Registry is the cluster-wide record of live sessions: which instance holds
// a socket on which a connection receives pushes. Forwards accepted on any
// instance use it to wake the right one.
type Registry interface {
	// RegisterSession records a live session on this instance.
	RegisterSession(ctx context.Context, s queue.Session) error
	// UnregisterSession removes that one session (never another socket's)
	// and puts the messages it held in flight back to pending.
	UnregisterSession(ctx context.Context, sessionID string) error
	// WakeConnection asks the instance holding the connection's live
	// session, wherever it is, to push what is claimable.
	WakeConnection(ctx context.Context, connectionID string) error
}
