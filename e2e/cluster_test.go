package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/internal/rrproxy"
	"github.com/openmediator/mediator/internal/wallet"
)

// cluster is n mediator processes on one database behind a round-robin
// proxy with no stickiness, all advertising the proxy's URLs.
type cluster struct {
	proxy string
	nodes []*instance
	dbURL string
}

// Short timings so fault tests finish quickly.
var clusterEnv = []string{
	"MEDIATOR_HEARTBEAT_INTERVAL=300ms",
	"MEDIATOR_INSTANCE_TTL=2s",
	"MEDIATOR_RECONCILE_INTERVAL=2s",
	"MEDIATOR_DELIVERY_LEASE=60s",
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	var handler atomic.Pointer[rrproxy.Proxy]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	c := &cluster{proxy: front.URL, dbURL: pgtest.NewDatabase(t)}
	env := append([]string{"MEDIATOR_DATABASE_URL=" + c.dbURL, masterKeyEnv(),
		"MEDIATOR_ENDPOINT=" + front.URL + ",ws" + front.URL[len("http"):]}, clusterEnv...)
	var backends []string
	for i := 0; i < n; i++ {
		node := startMediator(t, env...)
		c.nodes = append(c.nodes, node)
		backends = append(backends, node.base)
	}
	p, err := rrproxy.New(backends)
	if err != nil {
		t.Fatal(err)
	}
	handler.Store(p)
	return c
}

func basicMessage(n int) []byte {
	return []byte(fmt.Sprintf(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"%s","content":"msg-%d"}`, uuid.NewString(), n))
}

// liveSocket opens a socket to ws and turns live mode on.
func liveSocket(t *testing.T, ctx context.Context, w *wallet.Wallet, ws string) *wallet.Socket {
	t.Helper()
	w.WSEndpoint = ws
	sock, err := w.DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	if err := sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/live-delivery-change",
		"@id": uuid.NewString(), "live_delivery": true}); err != nil {
		t.Fatal(err)
	}
	receiveType(t, sock, "messagepickup/2/status")
	return sock
}

// collector reads a socket, acknowledging (or not) every delivery, and
// asking for more whenever a status says messages are waiting.
type collector struct {
	mu   sync.Mutex
	seen map[string]int // queue id -> times delivered
	at   map[string]time.Time
	ack  bool
}

func newCollector(ack bool) *collector {
	return &collector{seen: map[string]int{}, at: map[string]time.Time{}, ack: ack}
}

func (c *collector) run(sock *wallet.Socket) {
	for {
		m, err := sock.Receive(60 * time.Second)
		if err != nil {
			return
		}
		switch m.MsgType.Key() {
		case "messagepickup/2/delivery":
			items, err := wallet.ParseDelivery(m)
			if err != nil {
				return
			}
			ids := make([]string, len(items))
			c.mu.Lock()
			for i, it := range items {
				ids[i] = it.ID
				c.seen[it.ID]++
				if _, ok := c.at[it.ID]; !ok {
					c.at[it.ID] = time.Now()
				}
			}
			c.mu.Unlock()
			if c.ack {
				_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/messages-received",
					"@id": uuid.NewString(), "message_id_list": ids})
			}
		case "messagepickup/2/status":
			var st struct {
				MessageCount int `json:"message_count"`
			}
			if m.Decode(&st) == nil && st.MessageCount > 0 && c.ack {
				_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/delivery-request",
					"@id": uuid.NewString(), "limit": 10})
			}
		}
	}
}

func (c *collector) count() (unique, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.seen {
		unique++
		total += n
	}
	return unique, total
}

func (c *collector) ids() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.seen))
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func forwardN(t *testing.T, ctx context.Context, s *wallet.Sender, endpoint string, w *wallet.Wallet, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Forward(ctx, endpoint, w.RoutingKeys[0], w.Verkey(), basicMessage(i)); err != nil {
			t.Fatalf("forward %d via %s: %v", i, endpoint, err)
		}
	}
}

func TestClusterLiveDeliveryAcrossInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy)) // its requests alternate between A and B
	sock := liveSocket(t, ctx, recipient, a.wsURL())
	col := newCollector(true)
	go col.run(sock)

	sender, _ := wallet.NewSender()
	forwardN(t, ctx, sender, b.base, recipient, 1) // accepted on B, socket on A
	waitFor(t, 15*time.Second, "the forward accepted on B to arrive on A's socket", func() bool { u, _ := col.count(); return u == 1 })

	forwardN(t, ctx, sender, c.proxy, recipient, 40) // spread over both instances
	waitFor(t, 30*time.Second, "41 messages on the socket", func() bool { u, _ := col.count(); return u == 41 })
	if u, total := col.count(); total != u {
		t.Fatalf("%d deliveries for %d messages: duplicates", total, u)
	}
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queueRows(t, c.dbURL) == 0 })
}

func TestClusterKillNineRedeliversUnacknowledged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy))
	sockA := liveSocket(t, ctx, recipient, a.wsURL())
	held := newCollector(false) // receives, never acknowledges
	go held.run(sockA)
	sender, _ := wallet.NewSender()
	forwardN(t, ctx, sender, b.base, recipient, 5)
	waitFor(t, 15*time.Second, "5 deliveries on A", func() bool { u, _ := held.count(); return u == 5 })
	if n := queueRows(t, c.dbURL); n != 5 {
		t.Fatalf("queue holds %d rows while deliveries are unacknowledged, want 5", n)
	}

	a.kill(t) // crash with the messages in flight
	killed := time.Now()

	sockB := liveSocket(t, ctx, recipient, b.wsURL())
	col := newCollector(true)
	go col.run(sockB)
	waitFor(t, 30*time.Second, "the 5 unacknowledged messages again through B", func() bool { u, _ := col.count(); return u == 5 })
	t.Logf("redelivered %v after kill -9", time.Since(killed).Round(time.Millisecond))
	for id := range held.ids() {
		if col.ids()[id] != 1 {
			t.Errorf("message %s delivered %d times through B, want 1", id, col.ids()[id])
		}
	}
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queueRows(t, c.dbURL) == 0 })
}

func TestClusterListenerTerminatedReconcileDelivers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy))
	sock := liveSocket(t, ctx, recipient, a.wsURL())
	col := newCollector(true)
	go col.run(sock)

	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killedBackends int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'mediator-listener' AND datname = current_database()`).Scan(&killedBackends); err != nil {
		t.Fatal(err)
	}
	if killedBackends != 2 {
		t.Fatalf("terminated %d listener backends, want 2 (one per instance)", killedBackends)
	}
	sender, _ := wallet.NewSender()
	sent := time.Now()
	forwardN(t, ctx, sender, b.base, recipient, 3)
	// The reconcile interval is 2s: nothing may wait much longer than that.
	waitFor(t, 8*time.Second, "3 messages despite the lost notifications", func() bool { u, _ := col.count(); return u == 3 })
	t.Logf("delivered %v after the listener was terminated", time.Since(sent).Round(time.Millisecond))
	forwardN(t, ctx, sender, b.base, recipient, 3)
	waitFor(t, 8*time.Second, "3 more once the listener is back", func() bool { u, _ := col.count(); return u == 6 })
}

func TestClusterTwoSocketsForOneWallet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy))
	first, second := newCollector(true), newCollector(true)
	go first.run(liveSocket(t, ctx, recipient, c.nodes[0].wsURL()))
	go second.run(liveSocket(t, ctx, recipient, c.nodes[1].wsURL()))
	sender, _ := wallet.NewSender()
	forwardN(t, ctx, sender, c.proxy, recipient, 30)
	total := func() int {
		u1, _ := first.count()
		u2, _ := second.count()
		return u1 + u2
	}
	waitFor(t, 30*time.Second, "30 messages over the two sockets", func() bool { return total() >= 30 })
	both := first.ids()
	for id, n := range second.ids() {
		both[id] += n
	}
	if len(both) != 30 {
		t.Fatalf("%d distinct messages, want 30", len(both))
	}
	for id, n := range both {
		if n != 1 {
			t.Errorf("message %s delivered %d times", id, n)
		}
	}
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queueRows(t, c.dbURL) == 0 })
}

func TestClusterReconnectStorm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy))
	sender, _ := wallet.NewSender()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 30; i++ {
			if _, err := sender.Forward(ctx, c.proxy, recipient.RoutingKeys[0], recipient.Verkey(), basicMessage(i)); err != nil {
				t.Errorf("forward %d: %v", i, err)
				return
			}
		}
	}()
	// 20 sockets opened, switched to live mode and dropped without
	// acknowledging anything, alternating between the instances.
	for i := 0; i < 20; i++ {
		recipient.WSEndpoint = c.nodes[i%2].wsURL()
		sock, err := recipient.DialWS(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/live-delivery-change",
			"@id": uuid.NewString(), "live_delivery": true})
		if i%3 == 0 {
			_, _ = sock.Receive(200 * time.Millisecond)
		}
		sock.Close()
	}
	<-done
	final := newCollector(true)
	sock := liveSocket(t, ctx, recipient, c.nodes[1].wsURL())
	go final.run(sock)
	// Drain whatever is pending now; what the dropped sockets held comes
	// back when their sessions are cleaned up.
	_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/status-request", "@id": uuid.NewString()})
	waitFor(t, 30*time.Second, "all 30 messages on the final socket", func() bool { u, _ := final.count(); return u == 30 })
	if u, total := final.count(); u != total {
		t.Fatalf("final socket got %d deliveries for %d messages", total, u)
	}
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queueRows(t, c.dbURL) == 0 })
}

func TestClusterDuplicateForwardsAreEachDeliveredOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy))
	sender, _ := wallet.NewSender()
	plain := basicMessage(1)
	// The same forward, byte for byte, posted to both instances at once (a
	// sender retrying after a timeout does this).
	packed, err := sender.PackForward(recipient.RoutingKeys[0], recipient.Verkey(), plain)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func(base string) {
			defer wg.Done()
			if _, err := (&wallet.Wallet{HTTP: http.DefaultClient}).Post(ctx, base, packed); err != nil {
				t.Errorf("post to %s: %v", base, err)
			}
		}(n.base)
	}
	wg.Wait()
	got, err := recipient.PickupHTTP(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID == got[1].ID {
		t.Fatalf("picked up %d messages, want the 2 copies under distinct ids", len(got))
	}
	for _, d := range got {
		m, _, err := recipient.Unpack(d.Payload)
		if err != nil || m.Type != "https://didcomm.org/basicmessage/1.0/message" {
			t.Fatalf("copy did not open: %v", err)
		}
	}
	if n := queueRows(t, c.dbURL); n != 0 {
		t.Fatalf("queue holds %d rows after pickup, want 0", n)
	}
}

func TestClusterGracefulShutdownHandsOverInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	recipient := connectedRecipient(ctx, t, getInvitation(t, c.proxy))
	held := newCollector(false)
	go held.run(liveSocket(t, ctx, recipient, a.wsURL()))
	sender, _ := wallet.NewSender()
	forwardN(t, ctx, sender, b.base, recipient, 3)
	waitFor(t, 15*time.Second, "3 unacknowledged deliveries on A", func() bool { u, _ := held.count(); return u == 3 })

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("A did not stop within 30s of SIGTERM")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("A exited with %d after SIGTERM, want 0", code)
	}
	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var instances, sessions, sending int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM mediator_instance), (SELECT count(*) FROM live_session),
		(SELECT count(*) FROM queued_message WHERE state = 'sending')`).Scan(&instances, &sessions, &sending); err != nil {
		t.Fatal(err)
	}
	if instances != 1 || sessions != 0 || sending != 0 {
		t.Fatalf("after A's graceful stop: %d instances, %d live sessions, %d in flight; want 1, 0, 0", instances, sessions, sending)
	}
	col := newCollector(true)
	sock := liveSocket(t, ctx, recipient, b.wsURL())
	go col.run(sock)
	_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/status-request", "@id": uuid.NewString()})
	waitFor(t, 15*time.Second, "the 3 messages through B", func() bool { u, _ := col.count(); return u == 3 })
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queueRows(t, c.dbURL) == 0 })
}
