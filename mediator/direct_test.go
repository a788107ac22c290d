package mediator_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/transport"
)

// acapy is an httptest server acting as an ACA-Py agent's inbound HTTP
// transport: it records what is POSTed and answers status.
type acapy struct {
	*httptest.Server
	status atomic.Int32
	delay  atomic.Int64 // nanoseconds to wait before answering

	mu     sync.Mutex
	bodies [][]byte
	ctypes []string
}

func newACAPy(t *testing.T) *acapy {
	a := &acapy{}
	a.status.Store(http.StatusOK)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.bodies = append(a.bodies, body)
		a.ctypes = append(a.ctypes, r.Header.Get("Content-Type"))
		a.mu.Unlock()
		if d := time.Duration(a.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(int(a.status.Load()))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *acapy) received() ([][]byte, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]byte(nil), a.bodies...), append([]string(nil), a.ctypes...)
}

// agentConnection stores a granted connection to an agent whose DID
// document has its own endpoint, with key routed to it.
func agentConnection(t *testing.T, e *env, endpoint string) (connID, key string) {
	t.Helper()
	ctx := context.Background()
	p := newPeer(t)
	connID = uuid.NewString()
	ours, _ := newVerkey(t)
	err := e.store.InsertConnection(ctx, record.Connection{ID: connID, State: record.StateCompleted,
		OurKey: ours, TheirKey: p.verkey, TheirEndpoint: endpoint, Mediation: record.MediationGranted})
	if err != nil {
		t.Fatal(err)
	}
	key, _ = newVerkey(t)
	if res, err := e.store.AddRoute(ctx, connID, key); err != nil || res != record.RouteAdded {
		t.Fatal(res, err)
	}
	return connID, key
}

func directEnv(t *testing.T, mutate ...func(*mediator.Config)) (*env, *[]bool) {
	var (
		mu       sync.Mutex
		outcomes []bool
	)
	e := newEnv(t, append([]func(*mediator.Config){func(c *mediator.Config) {
		c.Forwarding = mediator.Forwarding{Strategy: mediator.ForwardDirectThenQueue, AllowPrivateEndpoints: true,
			DirectTimeout: 500 * time.Millisecond,
			OnDirect: func(ok bool) {
				mu.Lock()
				outcomes = append(outcomes, ok)
				mu.Unlock()
			}}
	}}, mutate...)...)
	return e, &outcomes
}

func TestDirectDelivery(t *testing.T) {
	agent := newACAPy(t)
	e, outcomes := directEnv(t)
	connID, key := agentConnection(t, e, agent.URL+"/didcomm")
	inner := packedFor(t, newPeer(t), key, "hello ACA-Py")

	if err := e.handle(t, forwardTo(t, e, key, inner), newSession(transport.KindHTTP)); err != nil {
		t.Fatalf("forward: %v", err)
	}
	bodies, ctypes := agent.received()
	if len(bodies) != 1 || !jsonEqual(bodies[0], inner) {
		t.Fatalf("agent received %d bodies (%q); want the inner message", len(bodies), bodies)
	}
	if ctypes[0] != "application/didcomm-envelope-enc" {
		t.Errorf("Content-Type %q", ctypes[0])
	}
	if n := e.stats(t, connID).Count; n != 0 {
		t.Errorf("%d queued after a direct delivery, want 0", n)
	}
	if len(*outcomes) != 1 || !(*outcomes)[0] {
		t.Errorf("OnDirect calls %v, want [true]", *outcomes)
	}
}

// Any failure queues the message: a 500, a redirect, a timeout.
func TestDirectDeliveryFailureQueues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		delay  time.Duration
	}{
		{"500", http.StatusInternalServerError, 0},
		{"redirect", http.StatusTemporaryRedirect, 0},
		{"timeout", http.StatusOK, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := newACAPy(t)
			agent.status.Store(int32(tc.status))
			agent.delay.Store(int64(tc.delay))
			e, outcomes := directEnv(t)
			connID, key := agentConnection(t, e, agent.URL)
			inner := packedFor(t, newPeer(t), key, "hello")
			start := time.Now()
			if err := e.handle(t, forwardTo(t, e, key, inner), newSession(transport.KindHTTP)); err != nil {
				t.Fatalf("forward: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("forward took %v with a 500ms direct timeout", d)
			}
			if bodies, _ := agent.received(); len(bodies) != 1 {
				t.Errorf("agent received %d POSTs, want 1 attempt", len(bodies))
			}
			msgs := e.claimAll(t, connID)
			if len(msgs) != 1 || !jsonEqual(msgs[0].Payload, inner) {
				t.Fatalf("queued %d messages, want the forward", len(msgs))
			}
			if len(*outcomes) != 1 || (*outcomes)[0] {
				t.Errorf("OnDirect calls %v, want [false]", *outcomes)
			}
		})
	}
}

// Wallets (didcomm:transport/queue), and every recipient under QueueOnly,
// are queued without any attempt.
func TestDirectDeliveryNotAttempted(t *testing.T) {
	agent := newACAPy(t)
	check := func(t *testing.T, e *env, endpoint string) {
		connID, key := agentConnection(t, e, endpoint)
		if err := e.handle(t, forwardTo(t, e, key, packedFor(t, newPeer(t), key, "x")), nil); err != nil {
			t.Fatal(err)
		}
		if n := e.stats(t, connID).Count; n != 1 {
			t.Errorf("%d queued, want 1", n)
		}
	}
	t.Run("queue endpoint", func(t *testing.T) {
		e, _ := directEnv(t)
		check(t, e, "didcomm:transport/queue")
	})
	t.Run("ws endpoint", func(t *testing.T) {
		e, _ := directEnv(t)
		check(t, e, "ws://agent.example/ws")
	})
	t.Run("queue-only", func(t *testing.T) {
		check(t, newEnv(t), agent.URL)
	})
	if bodies, _ := agent.received(); len(bodies) != 0 {
		t.Errorf("agent received %d POSTs, want none", len(bodies))
	}
}

// By default the mediator does not connect to private addresses (a peer
// could name an internal service as its endpoint): queued instead.
func TestDirectDeliveryRefusesPrivateAddresses(t *testing.T) {
	agent := newACAPy(t) // on 127.0.0.1
	e, outcomes := directEnv(t, func(c *mediator.Config) { c.Forwarding.AllowPrivateEndpoints = false })
	connID, key := agentConnection(t, e, agent.URL)
	if err := e.handle(t, forwardTo(t, e, key, packedFor(t, newPeer(t), key, "x")), nil); err != nil {
		t.Fatal(err)
	}
	if bodies, _ := agent.received(); len(bodies) != 0 {
		t.Errorf("agent on a loopback address received %d POSTs", len(bodies))
	}
	if n := e.stats(t, connID).Count; n != 1 {
		t.Errorf("%d queued, want 1", n)
	}
	if len(*outcomes) != 1 || (*outcomes)[0] {
		t.Errorf("OnDirect calls %v, want [false]", *outcomes)
	}
}

// Unknown recipients are still 404 in direct mode.
func TestDirectDeliveryUnknownRecipient(t *testing.T) {
	e, _ := directEnv(t)
	key, _ := newVerkey(t)
	err := e.handle(t, forwardTo(t, e, key, packedFor(t, newPeer(t), key, "x")), nil)
	if httpStatus(err) != http.StatusNotFound {
		t.Errorf("forward to an unknown key: %v, want 404", err)
	}
}

// Direct delivery on PostgreSQL: the route lookup is storepg's.
func TestDirectDeliveryPostgres(t *testing.T) {
	agent := newACAPy(t)
	pe := newPGAgent(t, queue.Caps{}, func(c *mediator.Config) {
		c.Forwarding = mediator.Forwarding{Strategy: mediator.ForwardDirectThenQueue, AllowPrivateEndpoints: true}
	})
	ctx := context.Background()
	connID := uuid.NewString()
	ours, _ := newVerkey(t)
	err := pe.store.InsertConnection(ctx, record.Connection{ID: connID, State: record.StateCompleted,
		OurKey: ours, TheirKey: newPeer(t).verkey, TheirEndpoint: agent.URL, Mediation: record.MediationGranted})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := newVerkey(t)
	if _, err := pe.store.AddRoute(ctx, connID, key); err != nil {
		t.Fatal(err)
	}
	forward := func(text string) []byte {
		inner := packedFor(t, newPeer(t), key, text)
		fwd := anoncrypt(t, map[string]any{"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
			"to": key, "msg": json.RawMessage(inner)}, pubOf(t, pe.agent.RoutingVerkey()))
		if err := pe.agent.HandleInbound(ctx, fwd, newSession(transport.KindHTTP)); err != nil {
			t.Fatalf("forward: %v", err)
		}
		return inner
	}
	depth := func() int {
		s, err := pe.queue.Stats(ctx, queue.Filter{ConnectionID: connID})
		if err != nil {
			t.Fatal(err)
		}
		return s.Count
	}

	delivered := forward("direct")
	if bodies, _ := agent.received(); len(bodies) != 1 || !jsonEqual(bodies[0], delivered) {
		t.Fatalf("agent received %d bodies, want the inner message", len(bodies))
	}
	if n := depth(); n != 0 {
		t.Fatalf("%d queued after a direct delivery", n)
	}
	agent.status.Store(http.StatusInternalServerError)
	forward("queued")
	if n := depth(); n != 1 {
		t.Fatalf("%d queued after a 500, want 1", n)
	}
}

func TestParseForwardingStrategy(t *testing.T) {
	for in, want := range map[string]mediator.ForwardingStrategy{
		"": mediator.ForwardQueueOnly, "queue-only": mediator.ForwardQueueOnly,
		"direct-then-queue": mediator.ForwardDirectThenQueue,
	} {
		if got, err := mediator.ParseForwardingStrategy(in); err != nil || got != want {
			t.Errorf("%q = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := mediator.ParseForwardingStrategy("direct"); err == nil {
		t.Error("an unknown strategy was accepted")
	}
}
