// Package queue holds the types shared by the mediator's transport queue
// implementations (queuepg, memstore) and their consumers (mediator, pickup).
package queue

import (
	"unicode/utf8"

	"errors"
	"github.com/openmediator/mediator/internal/jsonscan"
	"time"
)

// ErrUnknownRecipient is returned when a forward names a key that no granted
// mediation has registered.
var ErrUnknownRecipient = errors.New("queue: no mediation registered for recipient key")

// ErrInvalidPayload is returned for a payload that is not JSON text (UTF-8),
// which pickup could not embed in its deliveries. The sender's fault.
var ErrInvalidPayload = errors.New("queue: payload is not UTF-8 JSON")

// CheckPayload returns ErrInvalidPayload for a payload that pickup could
// not embed in a JSON delivery: text that is not JSON, or not UTF-8. Every
// queue applies it before it stores a message.
func CheckPayload(payload []byte) error {
	if !jsonscan.Valid(payload) || !utf8.Valid(payload) {
		return ErrInvalidPayload
	}
	return nil
}

// Message is one packed DIDComm envelope waiting for its recipient.
type Message struct {
	ID           string    // UUID; goes on the wire as the attachment @id
	ConnectionID string    // the mediation connection that owns the message
	RecipientKey string    // base58 Ed25519 verkey the message was forwarded to
	Payload      []byte    // the packed envelope (JSON object)
	ReceivedAt   time.Time // when it was queued
	Attempts     int       // how many times it has been handed out
}

// Filter selects a connection's messages, optionally only those for one key.
type Filter struct {
	ConnectionID string
	RecipientKey string // base58; empty means every key of the connection
}

// Holder identifies who has claimed a message: the instance and the session
// (socket or HTTP request) it was handed to.
type Holder struct {
	Instance string
	Session  string
}

// Stats describes the pending (claimable) messages matching a Filter.
type Stats struct {
	Count      int
	TotalBytes int64
	Oldest     time.Time // zero when Count is 0
	Newest     time.Time // zero when Count is 0
}

// Session protocols recorded in the live-session registry.
const (
	ProtocolLiveV2   = "v2"       // pickup 2.0 live mode: pushes wrapped in delivery, removed on messages-received
	ProtocolImplicit = "implicit" // raw envelopes on a return-route socket, removed once written
)

// Session is a live delivery session held by one instance.
type Session struct {
	ID           string // the transport session (socket) id
	ConnectionID string
	Instance     string
	Protocol     string // ProtocolLiveV2 or ProtocolImplicit
}

// Enqueued is a newly queued message and where its recipient is live.
type Enqueued struct {
	Message
	// LiveInstance is the instance holding the connection's newest live
	// session (with a fresh heartbeat), or "" when the wallet is offline
	// everywhere. When it is another instance, that instance has already
	// been notified.
	LiveInstance string
	// Depth is how many messages the connection had queued before this one
	// (pending or in flight), counted only up to the larger of the queue's
	// Caps (0 when no cap is set): the count stops there to stay cheap.
	Depth int
	// OverSoftCap is set when this message is beyond the connection's soft
	// cap (Depth >= Caps.Soft): it was queued, but someone should look.
	OverSoftCap bool
}
