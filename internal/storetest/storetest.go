// Package storetest is the conformance suite for the mediator's storage:
// written once, run against every implementation (queuepg/storepg on
// PostgreSQL, memstore in memory), so that they cannot drift apart.
//
// Each subtest asks the implementation for a fresh, empty backend and may run
// in parallel with the others.
package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
)

// Queue is a transport queue: what the mediator and pickup need of it,
// including the cluster-wide registry of live sessions.
type Queue interface {
	mediator.Queue
	pickup.Queue
	pickup.Registry
	// SetCaps sets the per-connection queue caps.
	SetCaps(queue.Caps)
	// ExpireMessages removes messages older than ttl (see queue.ExpireFunc).
	ExpireMessages(ctx context.Context, ttl time.Duration, batch int) (int, error)
}

// QueueFixture is a fresh, empty backend for one queue test.
type QueueFixture struct {
	// Store shares Queue's data; tests use it to create connections and
	// routes for EnqueueForward.
	Store mediator.Store
	Queue Queue
	// Advance lets d pass on the clock the queue's leases run on: a real
	// sleep for a database, a step of an injected clock for memstore.
	Advance func(d time.Duration)
}

// NewQueueFixture returns a fresh backend whose queue leases claims for
// lease; lease 0 means long enough that no lease expires during a test.
type NewQueueFixture func(t *testing.T, lease time.Duration) QueueFixture

// NewStore returns a fresh, empty store.
type NewStore func(t *testing.T) mediator.Store

// newKey returns a random base58 Ed25519-sized public key.
func newKey(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base58.Encode(b[:])
}

func itoa(i int) string { return strconv.Itoa(i) }

// newID returns a random connection or message id.
func newID() string { return uuid.NewString() }

// envelope returns a packed-message-shaped JSON payload, numbered so that
// payloads differ, with whitespace that a JSON store would not keep (the
// queues return payloads byte for byte).
func envelope(i int) []byte {
	return fmt.Appendf(nil, `{ "protected": "eyJlbmMiOiJ4Y2hhY2hhMjBwb2x5MTMwNV9pZXRmIn0",
		"iv": "iv-%d", "ciphertext": "ct-%d-%s", "tag": "tag" }`, i, i, "x")
}
