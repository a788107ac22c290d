// Package record holds the mediator's persistent records: its keys, the
// DIDComm connections it has with wallets and their mediation state. The
// storage implementations (storepg, memstore) and the mediator share them.
package record

import (
	"errors"
	"time"
)

// ErrNotFound is returned by stores when a record does not exist.
var ErrNotFound = errors.New("record: not found")

// KeyPurpose says what one of the mediator's own keys is for.
type KeyPurpose string

const (
	// PurposeInvitation is the key in the out-of-band invitation; it signs
	// DID Exchange / Connections responses. One per deployment.
	PurposeInvitation KeyPurpose = "invitation"
	// PurposeRouting is the routing key given in mediate-grant; forwards are
	// anoncrypted to it. One per deployment.
	PurposeRouting KeyPurpose = "routing"
	// PurposeConnection is a pairwise key created for one connection.
	PurposeConnection KeyPurpose = "connection"
)

// Key is one of the mediator's own Ed25519 keys. The private part is kept
// sealed under the master key; only the keyring opens it.
type Key struct {
	Verkey        string // base58 public key, the primary key
	Purpose       KeyPurpose
	SealedPrivate []byte // Ed25519 seed encrypted under the master key
	CreatedAt     time.Time
}

// ConnectionState is the DID Exchange / Connections state of our side.
type ConnectionState string

const (
	StateResponseSent ConnectionState = "response-sent"
	StateCompleted    ConnectionState = "completed"
)

// MediationState is the coordinate-mediation state of a connection.
type MediationState string

const (
	MediationNone    MediationState = "none"
	MediationGranted MediationState = "granted"
	MediationDenied  MediationState = "denied"
)

// Connection is a DIDComm connection between the mediator and one agent.
type Connection struct {
	ID            string // UUID
	State         ConnectionState
	Protocol      string // e.g. "https://didcomm.org/didexchange/1.1"
	OurDID        string
	OurKey        string // base58 verkey we use on this connection
	TheirDID      string
	TheirKey      string // base58 verkey they send from
	TheirLabel    string
	TheirEndpoint string // their DIDComm service endpoint ("didcomm:transport/queue" for wallets)
	InvitationID  string // the out-of-band invitation @id it was made from
	ThreadID      string // the handshake thread id
	Mediation     MediationState
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// RouteResult is the outcome of adding a recipient key to a mediation.
type RouteResult string

const (
	RouteAdded    RouteResult = "success"   // newly registered
	RouteNoChange RouteResult = "no_change" // already registered to this connection
	RouteConflict RouteResult = "conflict"  // registered to another connection
	// RouteNotGranted: the connection's mediation is not granted (never was,
	// was denied, or was revoked meanwhile); nothing was registered.
	RouteNotGranted RouteResult = "not_granted"
)
