package mediator_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/record"
)

// countingStore counts the store reads and writes the connection cache is
// about.
type countingStore struct {
	*memstore.Memory
	byKeys, byID, setState atomic.Int32
}

func (s *countingStore) ConnectionByKeys(ctx context.Context, ourKey, theirKey string) (record.Connection, error) {
	s.byKeys.Add(1)
	return s.Memory.ConnectionByKeys(ctx, ourKey, theirKey)
}

func (s *countingStore) ConnectionByID(ctx context.Context, id string) (record.Connection, error) {
	s.byID.Add(1)
	return s.Memory.ConnectionByID(ctx, id)
}

func (s *countingStore) SetConnectionState(ctx context.Context, id string, st record.ConnectionState) error {
	s.setState.Add(1)
	return s.Memory.SetConnectionState(ctx, id, st)
}

// newCountingEnv is newEnv with the agent on a countingStore.
func newCountingEnv(t *testing.T, mutate ...func(*mediator.Config)) (*env, *countingStore) {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	master := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(mem, master)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	pk := pickup.New(mem, pickup.Options{Instance: "test", Logger: logger})
	cfg := mediator.Config{Endpoints: append([]string(nil), defaultEndpoints...), AutoGrant: true, Logger: logger}
	for _, m := range mutate {
		m(&cfg)
	}
	cs := &countingStore{Memory: mem}
	a, err := mediator.New(context.Background(), cfg, cs, mem, kr, pk)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: mem, keys: kr, pickup: pk, agent: a, cfg: cfg}, cs
}

func ping(t *testing.T, e *env, p *peer) {
	t.Helper()
	r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": uuid.NewString()})
	r.expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
}

// Messages on a connection find it without a store read after the first.
func TestConnectionLookupIsCached(t *testing.T) {
	e, cs := newCountingEnv(t)
	p := e.insertConnection(t, record.MediationGranted)
	q := e.insertConnection(t, record.MediationNone)
	for range 5 {
		ping(t, e, p)
		ping(t, e, q)
	}
	if n := cs.byKeys.Load(); n != 2 {
		t.Errorf("%d ConnectionByKeys reads for 10 messages on 2 connections, want 2", n)
	}

	off, cs := newCountingEnv(t, func(c *mediator.Config) { c.ConnectionCacheSize = -1 })
	p = off.insertConnection(t, record.MediationGranted)
	for range 3 {
		ping(t, off, p)
	}
	if n := cs.byKeys.Load(); n != 3 {
		t.Errorf("cache off: %d ConnectionByKeys reads for 3 messages, want 3", n)
	}
}

// An operator's revoke (mediation none, routes deleted) takes effect at
// once for the coordinate-mediation protocol, although the connection is
// cached: those handlers read the mediation state afresh.
func TestRevokeTakesEffectWithCachedConnection(t *testing.T) {
	e, cs := newCountingEnv(t)
	p := e.grant(t)
	key, _ := newVerkey(t)
	if got := e.keylistUpdate(t, p, [2]string{didKeyOf(t, key), "add"}); got[0].Result != "success" {
		t.Fatalf("keylist-update before revoke: %+v", got)
	}
	ping(t, e, p) // the connection is cached now
	reads := cs.byKeys.Load()

	// What `mediator connections revoke` does to the records.
	ctx := context.Background()
	if err := e.store.SetMediationState(ctx, p.connID, record.MediationNone); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.store.RemoveRoute(ctx, p.connID, key); err != nil || !ok {
		t.Fatalf("RemoveRoute = %v, %v", ok, err)
	}

	other, _ := newVerkey(t)
	for _, msg := range []map[string]any{
		{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-update", "@id": uuid.NewString(),
			"updates": []map[string]string{{"recipient_key": didKeyOf(t, other), "action": "add"}}},
		{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-query", "@id": uuid.NewString()},
	} {
		r := e.request(t, p, msg)
		r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
		if code := r.problemCode(t); code != "request_not_accepted" {
			t.Errorf("%v after revoke: problem %q, want request_not_accepted", msg["@type"], code)
		}
	}
	if keys, total, err := e.store.Routes(ctx, p.connID, 0, 0); err != nil || total != 0 {
		t.Errorf("routes after revoke: %v %d %v", keys, total, err)
	}
	// Forwards go by the routes: the revoked key is unknown now.
	err := e.handle(t, forwardTo(t, e, key, packedFor(t, newPeer(t), key, "x")), nil)
	var ie *mediator.InboundError
	if !errors.As(err, &ie) || ie.Status != http.StatusNotFound {
		t.Errorf("forward to a revoked key: %v, want 404", err)
	}
	if n := cs.byKeys.Load(); n != reads {
		t.Errorf("%d more ConnectionByKeys reads after the connection was cached", n-reads)
	}
	if cs.byID.Load() == 0 {
		t.Error("the mediation handlers did not read the connection afresh")
	}
	// Mediation can be asked for again (auto-grant), and then works.
	r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": uuid.NewString()})
	r.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/mediate-grant")
	if got := e.keylistUpdate(t, p, [2]string{didKeyOf(t, other), "add"}); got[0].Result != "success" {
		t.Errorf("keylist-update after a new grant: %+v", got)
	}
}

// A connection in response-sent is completed by its first message, once:
// the cached copy learns the new state.
func TestResponseSentCompletedOnceWithCache(t *testing.T) {
	e, cs := newCountingEnv(t)
	p := e.insertConnection(t, record.MediationNone)
	if err := e.store.SetConnectionState(context.Background(), p.connID, record.StateResponseSent); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ping(t, e, p)
	}
	if n := cs.setState.Load(); n != 1 {
		t.Errorf("%d state updates for 3 messages, want 1", n)
	}
	if c := e.conn(t, p.connID); c.State != record.StateCompleted {
		t.Errorf("state %q, want completed", c.State)
	}
}
