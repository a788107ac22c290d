package mediator

import (
	"context"

	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
)

// Store keeps the mediator's keys, connections and mediation routes.
// Implementations: storepg (PostgreSQL) and memstore (embedded default).
// Lookups that find nothing return record.ErrNotFound.
type Store interface {
	// WithKeyCreationLock runs fn while holding a lock shared by every
	// instance on the same database, so that two instances starting together
	// create the deployment's identity keys only once.
	WithKeyCreationLock(ctx context.Context, fn func(ctx context.Context) error) error
	InsertKey(ctx context.Context, k record.Key) error
	KeyByVerkey(ctx context.Context, verkey string) (record.Key, error)
	KeysByPurpose(ctx context.Context, p record.KeyPurpose) ([]record.Key, error)

	InsertConnection(ctx context.Context, c record.Connection) error
	ConnectionByID(ctx context.Context, id string) (record.Connection, error)
	// ConnectionByKeys finds the connection on which we use ourKey and they
	// send from theirKey (both base58).
	ConnectionByKeys(ctx context.Context, ourKey, theirKey string) (record.Connection, error)
	// ConnectionByTheirKey finds the newest connection whose peer sends from
	// theirKey (used for out-of-band handshake reuse).
	ConnectionByTheirKey(ctx context.Context, theirKey string) (record.Connection, error)
	// ConnectionByRoute finds the connection that registered recipientKey
	// (base58) for its mediation (direct delivery only).
	ConnectionByRoute(ctx context.Context, recipientKey string) (record.Connection, error)
	SetConnectionState(ctx context.Context, id string, s record.ConnectionState) error
	SetMediationState(ctx context.Context, id string, s record.MediationState) error

	// AddRoute registers a base58 recipient key for a connection's mediation.
	AddRoute(ctx context.Context, connectionID, recipientKey string) (record.RouteResult, error)
	// RemoveRoute unregisters a key of this connection; false if it was not registered to it.
	RemoveRoute(ctx context.Context, connectionID, recipientKey string) (bool, error)
	// Routes lists a connection's keys oldest first and the total count.
	Routes(ctx context.Context, connectionID string, limit, offset int) ([]string, int, error)

	// SetDeviceInfo stores the wallet's push token; nil values remove it.
	SetDeviceInfo(ctx context.Context, connectionID string, token, platform *string) error
	// DeviceInfo returns the stored push token; ok is false if none.
	DeviceInfo(ctx context.Context, connectionID string) (token, platform string, ok bool, err error)
}

// Queue is what the mediator needs of the transport queue.
type Queue interface {
	// EnqueueForward stores payload for whichever connection registered
	// recipientKey (base58), in one round trip, and wakes the instance that
	// holds the connection's live session if it is another one.
	// queue.ErrUnknownRecipient if no connection registered the key.
	EnqueueForward(ctx context.Context, recipientKey string, payload []byte) (queue.Enqueued, error)
	// Enqueue stores payload for a known connection (e.g. a reply produced
	// while the wallet has no open session), waking it the same way.
	Enqueue(ctx context.Context, connectionID, recipientKey string, payload []byte) (queue.Enqueued, error)
}
