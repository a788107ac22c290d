package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/internal/wallet"
)

func basicMsg(content string) []byte {
	return []byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"` + uuid.NewString() + `","content":"` + content + `"}`)
}

// Hard cap 3: the fourth forward gets 507, the three queued stay and are
// delivered; after pickup there is room again.
func TestQueueHardCapEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	m := startMediator(t, "MEDIATOR_DATABASE_URL="+dbURL, masterKeyEnv(),
		"MEDIATOR_QUEUE_SOFT_CAP=2", "MEDIATOR_QUEUE_HARD_CAP=3")
	recipient := connectedRecipient(ctx, t, getInvitation(t, m.base))
	sender, err := wallet.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	forward := func(p []byte) ([]byte, error) {
		return sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), p)
	}
	var plains [][]byte
	for i := range 3 {
		p := basicMsg("message " + string(rune('1'+i)))
		if _, err := forward(p); err != nil {
			t.Fatalf("forward %d: %v", i+1, err)
		}
		plains = append(plains, p)
	}
	_, err = forward(basicMsg("one too many"))
	var se *wallet.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusInsufficientStorage {
		t.Fatalf("4th forward: %v, want HTTP 507", err)
	}
	if n := queueRows(t, dbURL); n != 3 {
		t.Fatalf("queue holds %d rows, want 3", n)
	}
	got, err := recipient.PickupHTTP(ctx, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("pickup: %d messages, %v; want 3", len(got), err)
	}
	for i, d := range got {
		if p := openInner(t, recipient, d.Payload); !bytes.Equal(p, plains[i]) {
			t.Errorf("message %d: %q, want %q", i+1, p, plains[i])
		}
	}
	if _, err := forward(basicMsg("room again")); err != nil {
		t.Errorf("forward after pickup: %v", err)
	}
	if !strings.Contains(m.logs.String(), "queue over its soft cap") {
		t.Error("no soft-cap warning in the log")
	}
}

// Socket bound 2: the third upgrade gets 503 with Retry-After.
func TestMaxSocketsEndToEnd(t *testing.T) {
	m := startMediator(t, "MEDIATOR_DATABASE_URL=", "MEDIATOR_MASTER_KEY=", "MEDIATOR_MAX_SOCKETS=2")
	for i := range 2 {
		c, resp, err := websocket.DefaultDialer.Dial(m.wsURL(), nil)
		if err != nil {
			t.Fatalf("socket %d: %v", i+1, err)
		}
		resp.Body.Close()
		defer c.Close()
	}
	_, resp, err := websocket.DefaultDialer.Dial(m.wsURL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third socket: %v, %v; want 503 with Retry-After", resp, err)
	}
	resp.Body.Close()
}

// Rate 5/s, burst 5 per IP: the sixth immediate POST gets 429.
func TestIPRateEndToEnd(t *testing.T) {
	m := startMediator(t, "MEDIATOR_DATABASE_URL=", "MEDIATOR_MASTER_KEY=", "MEDIATOR_IP_RATE=5", "MEDIATOR_IP_BURST=5")
	var codes []int
	for range 6 {
		resp, err := http.Post(m.base, "application/didcomm-envelope-enc", strings.NewReader(`{"not":"an envelope"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	for i, c := range codes[:5] {
		if c != http.StatusBadRequest {
			t.Errorf("request %d = %d, want 400 (handled)", i+1, c)
		}
	}
	if codes[5] != http.StatusTooManyRequests {
		t.Errorf("6th request = %d, want 429", codes[5])
	}
}

// The TTL job deletes what was not picked up in time.
func TestMessageTTLEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	m := startMediator(t, "MEDIATOR_DATABASE_URL="+dbURL, masterKeyEnv(),
		"MEDIATOR_MESSAGE_TTL=2s", "MEDIATOR_MESSAGE_TTL_INTERVAL=200ms")
	recipient := connectedRecipient(ctx, t, getInvitation(t, m.base))
	sender, _ := wallet.NewSender()
	if _, err := sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), basicMsg("soon gone")); err != nil {
		t.Fatal(err)
	}
	if n := queueRows(t, dbURL); n != 1 {
		t.Fatalf("queue holds %d rows, want 1", n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for queueRows(t, dbURL) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired message is still queued")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The job logs after its DELETE commits, so the line can trail the
	// empty table by a moment.
	for !strings.Contains(m.logs.String(), "expired messages older than the TTL") {
		if time.Now().After(deadline) {
			t.Fatal("no expiry line in the log")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// direct-then-queue: an agent whose DID document has its own HTTP endpoint
// (an ACA-Py stand-in) gets forwards POSTed to it; when it answers 500 they
// are queued.
func TestDirectDeliveryEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu       sync.Mutex
		received [][]byte
		status   = http.StatusOK
	)
	acapy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Content-Type") == "application/didcomm-envelope-enc" {
			received = append(received, body)
		}
		w.WriteHeader(status)
	}))
	defer acapy.Close()

	dbURL := pgtest.NewDatabase(t)
	m := startMediator(t, "MEDIATOR_DATABASE_URL="+dbURL, masterKeyEnv(),
		"MEDIATOR_FORWARDING_STRATEGY=direct-then-queue", "MEDIATOR_DIRECT_DELIVERY_ALLOW_PRIVATE=true")
	agent, err := wallet.New("ACA-Py")
	if err != nil {
		t.Fatal(err)
	}
	agent.DID, err = diddoc.NewPeerDID2(agent.Key.Public().(ed25519.PublicKey), []string{acapy.URL + "/didcomm"})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Connect(ctx, getInvitation(t, m.base)); err != nil {
		t.Fatal(err)
	}
	if err := agent.RequestMediation(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := agent.AddKey(ctx, agent.Verkey()); err != nil || res != "success" {
		t.Fatalf("keylist add: %q %v", res, err)
	}
	sender, _ := wallet.NewSender()
	first := basicMsg("direct")
	if _, err := sender.Forward(ctx, agent.GrantEndpoint, agent.RoutingKeys[0], agent.Verkey(), first); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(received) != 1 || !bytes.Equal(openInner(t, agent, received[0]), first) {
		t.Errorf("agent endpoint received %d messages, want the forward", len(received))
	}
	status = http.StatusInternalServerError
	mu.Unlock()
	if n := queueRows(t, dbURL); n != 0 {
		t.Fatalf("%d queued after a direct delivery, want 0", n)
	}
	if _, err := sender.Forward(ctx, agent.GrantEndpoint, agent.RoutingKeys[0], agent.Verkey(), basicMsg("queued")); err != nil {
		t.Fatal(err)
	}
	if n := queueRows(t, dbURL); n != 1 {
		t.Fatalf("%d queued after the endpoint answered 500, want 1", n)
	}
}
