package mediator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
	"github.com/openmediator/mediator/transport"
)

// limitHooks records Limits.OnLimit and OnQueueSoftCap calls.
type limitHooks struct {
	mu     sync.Mutex
	limits map[string]int
	soft   int
}

func (h *limitHooks) install(c *mediator.Config) {
	h.limits = map[string]int{}
	c.Limits.OnLimit = func(name string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.limits[name]++
	}
	c.Limits.OnQueueSoftCap = func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.soft++
	}
}

func (h *limitHooks) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.limits[name]
}

// pickupAll fetches everything queued for p through the agent (pickup 2.0
// delivery-request on a return route), acknowledges it and returns the
// delivered payloads in order.
func pickupAll(t *testing.T, a *mediator.Agent, p *peer) [][]byte {
	t.Helper()
	s := newSession(transport.KindHTTP)
	msg := withReturnRoute(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/delivery-request",
		"@id": uuid.NewString(), "limit": 100}, "all")
	if err := a.HandleInbound(context.Background(), p.pack(t, msg), s); err != nil {
		t.Fatalf("delivery-request: %v", err)
	}
	sent := s.drain()
	if len(sent) != 1 {
		t.Fatalf("delivery-request: %d replies", len(sent))
	}
	r := p.open(t, sent[0])
	if r.msg.MsgType.Name == "status" {
		return nil
	}
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/delivery")
	var d struct {
		Attach []struct {
			ID   string `json:"@id"`
			Data struct {
				JSON json.RawMessage `json:"json"`
			} `json:"data"`
		} `json:"~attach"`
	}
	r.decode(t, &d)
	var out [][]byte
	var ids []string
	for _, at := range d.Attach {
		out = append(out, at.Data.JSON)
		ids = append(ids, at.ID)
	}
	ack := withReturnRoute(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/messages-received",
		"@id": uuid.NewString(), "message_id_list": ids}, "all")
	if err := a.HandleInbound(context.Background(), p.pack(t, ack), newSession(transport.KindHTTP)); err != nil {
		t.Fatalf("messages-received: %v", err)
	}
	return out
}

// checkHardCap forwards four messages to key on a queue with caps soft 2,
// hard 3: three are accepted (202), the fourth gets 507 and nothing
// queued is lost: pickup delivers the three.
func checkHardCap(t *testing.T, a *mediator.Agent, hooks *limitHooks, p *peer, key string) {
	t.Helper()
	sender := newPeer(t)
	var inners [][]byte
	for i := range 4 {
		inner := packedFor(t, sender, key, "message "+string(rune('1'+i)))
		fwd := anoncrypt(t, map[string]any{
			"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
			"to": key, "msg": json.RawMessage(inner),
		}, pubOf(t, a.RoutingVerkey()))
		err := a.HandleInbound(context.Background(), fwd, newSession(transport.KindHTTP))
		if i < 3 {
			if err != nil {
				t.Fatalf("forward %d: %v", i+1, err)
			}
			inners = append(inners, inner)
			continue
		}
		if st := httpStatus(err); st != http.StatusInsufficientStorage {
			t.Fatalf("4th forward: status %d (%v), want 507", st, err)
		}
	}
	if n := hooks.count(mediator.LimitQueueFull); n != 1 {
		t.Errorf("OnLimit(%q) = %d calls, want 1", mediator.LimitQueueFull, n)
	}
	if hooks.soft != 1 {
		t.Errorf("OnQueueSoftCap = %d calls, want 1 (the 3rd message)", hooks.soft)
	}
	got := pickupAll(t, a, p)
	if len(got) != 3 {
		t.Fatalf("delivered %d messages, want the 3 queued", len(got))
	}
	for i := range got {
		if !jsonEqual(got[i], inners[i]) {
			t.Errorf("delivered message %d is not forward %d", i+1, i+1)
		}
	}
	// Picked up and acknowledged: there is room again.
	fwd := anoncrypt(t, map[string]any{"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
		"to": key, "msg": json.RawMessage(packedFor(t, sender, key, "again"))}, pubOf(t, a.RoutingVerkey()))
	if err := a.HandleInbound(context.Background(), fwd, newSession(transport.KindHTTP)); err != nil {
		t.Errorf("forward after pickup: %v", err)
	}
}

func TestQueueHardCap(t *testing.T) {
	var hooks limitHooks
	e := newEnv(t, hooks.install)
	e.store.SetCaps(queue.Caps{Soft: 2, Hard: 3})
	p := e.grant(t)
	key, _ := newVerkey(t)
	e.keylistUpdate(t, p, [2]string{didKeyOf(t, key), "add"})
	checkHardCap(t, e.agent, &hooks, p, key)
}

// The same on PostgreSQL (storepg + queuepg).
func TestQueueHardCapPostgres(t *testing.T) {
	var hooks limitHooks
	pe := newPGAgent(t, queue.Caps{Soft: 2, Hard: 3}, hooks.install)
	p := insertMediation(t, pe.store, pe.keys)
	key, _ := newVerkey(t)
	if res, err := pe.store.AddRoute(context.Background(), p.connID, key); err != nil || res != record.RouteAdded {
		t.Fatal(res, err)
	}
	checkHardCap(t, pe.agent, &hooks, p, key)
}

// pgAgent is an agent on a fresh PostgreSQL database.
type pgAgent struct {
	agent *mediator.Agent
	store *storepg.Store
	queue *queuepg.Queue
	keys  *keyring.Keyring
}

func newPGAgent(t *testing.T, caps queue.Caps, mutate ...func(*mediator.Config)) pgAgent {
	t.Helper()
	pool := pgtest.NewPool(t)
	st := storepg.New(pool)
	q := queuepg.New(pool, queuepg.Options{Instance: "test", Caps: caps})
	master := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(st, master)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	cfg := mediator.Config{Endpoints: defaultEndpoints, Instance: "test", Logger: logger}
	for _, m := range mutate {
		m(&cfg)
	}
	pk := pickup.New(q, pickup.Options{Instance: "test", Logger: logger, Registry: q})
	a, err := mediator.New(context.Background(), cfg, st, q, kr, pk)
	if err != nil {
		t.Fatal(err)
	}
	return pgAgent{agent: a, store: st, queue: q, keys: kr}
}

// insertMediation stores a granted connection whose peer is a new wallet.
func insertMediation(t *testing.T, st mediator.Store, kr *keyring.Keyring) *peer {
	t.Helper()
	ctx := context.Background()
	p := newPeer(t)
	k, err := kr.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}
	p.to = k.Public().(ed25519.PublicKey)
	p.ourKey = keyring.Verkey(p.to)
	p.connID = uuid.NewString()
	err = st.InsertConnection(ctx, record.Connection{ID: p.connID, State: record.StateCompleted,
		OurKey: p.ourKey, TheirKey: p.verkey, TheirDID: p.did, TheirEndpoint: "didcomm:transport/queue",
		Mediation: record.MediationGranted})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A reply that would be queued for a connection at its hard cap is 507 too.
func TestQueueHardCapReply(t *testing.T) {
	var hooks limitHooks
	e := newEnv(t, hooks.install)
	e.store.SetCaps(queue.Caps{Hard: 1})
	p := e.insertConnection(t, record.MediationGranted)
	ping := func() error {
		return e.send(t, p, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": uuid.NewString()},
			newSession(transport.KindHTTP))
	}
	if err := ping(); err != nil {
		t.Fatalf("first ping (reply queued): %v", err)
	}
	if err := ping(); httpStatus(err) != http.StatusInsufficientStorage {
		t.Fatalf("second ping: %v (status %d), want 507", err, httpStatus(err))
	}
	if n := e.stats(t, p.connID).Count; n != 1 {
		t.Errorf("%d queued, want the first reply only", n)
	}
}

// Rate 5/s, burst 5 per connection: the sixth immediate message gets 429
// (with Retry-After) and no reply; over a WebSocket with a return route
// the wallet gets a problem report rate-limited. Another connection is
// not affected.
func TestConnectionRate(t *testing.T) {
	var hooks limitHooks
	e := newEnv(t, hooks.install, func(c *mediator.Config) {
		c.Limits.ConnectionRate, c.Limits.ConnectionBurst = 5, 5
	})
	p := e.insertConnection(t, record.MediationGranted)
	ping := func(kind transport.Kind) (*fakeSession, error) {
		s := newSession(kind)
		err := e.send(t, p, withReturnRoute(map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping",
			"@id": uuid.NewString()}, "all"), s)
		return s, err
	}
	for i := range 5 {
		s, err := ping(transport.KindHTTP)
		if err != nil || s.count() != 1 {
			t.Fatalf("ping %d: %v, %d replies", i+1, err, s.count())
		}
	}
	s, err := ping(transport.KindHTTP)
	if httpStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("6th ping: %v (status %d), want 429", err, httpStatus(err))
	}
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) || ra.RetryAfter() <= 0 || ra.RetryAfter() > 200*time.Millisecond {
		t.Errorf("6th ping: no RetryAfter within 1/rate (%v)", err)
	}
	if s.count() != 0 {
		t.Errorf("6th ping over HTTP: %d replies, want none (the status is the answer)", s.count())
	}
	if n := e.stats(t, p.connID).Count; n != 0 {
		t.Errorf("%d messages queued for refused pings", n)
	}

	s, err = ping(transport.KindWebSocket)
	if httpStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("ping over WS: %v, want 429", err)
	}
	sent := s.drain()
	if len(sent) != 1 {
		t.Fatalf("ping over WS: %d replies, want a problem report", len(sent))
	}
	r := p.open(t, sent[0])
	r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
	if code := r.problemCode(t); code != mediator.ProblemRateLimited {
		t.Errorf("problem code %q, want %q", code, mediator.ProblemRateLimited)
	}
	if n := hooks.count(mediator.LimitConnectionRate); n != 2 {
		t.Errorf("OnLimit(%q) = %d calls, want 2", mediator.LimitConnectionRate, n)
	}

	other := e.insertConnection(t, record.MediationGranted)
	if err := e.send(t, other, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": "x",
		"response_requested": false}, newSession(transport.KindHTTP)); err != nil {
		t.Errorf("another connection was limited: %v", err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := ping(transport.KindHTTP); err != nil {
		t.Errorf("ping after a token came back: %v", err)
	}
}
