package queuepg_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

// How long a test waits for something that should happen quickly.
const waitLimit = 15 * time.Second

// timings of a test cluster. Tests that do not let an instance die use a
// TTL far longer than the test.
type timings struct {
	heartbeat, ttl, reconcile time.Duration
}

var (
	longLived = timings{heartbeat: 100 * time.Millisecond, ttl: time.Minute, reconcile: time.Hour}
	shortTTL  = timings{heartbeat: 100 * time.Millisecond, ttl: time.Second, reconcile: time.Hour}
)

// node is one mediator instance: its own pool on the shared database, its
// Queue, and what its Run reported.
type node struct {
	name      string
	pool      *pgxpool.Pool
	q         *queuepg.Queue
	tm        timings
	wakes     chan string
	reconcile chan struct{}
	stop      func() // ends Run and waits for it
	// vacuumDeadRows is ClusterOptions.VacuumDeadRows (0: the default).
	vacuumDeadRows int
}

func newNode(t *testing.T, shared *pgxpool.Pool, name string, tm timings) *node {
	t.Helper()
	pool, err := pgxpool.NewWithConfig(t.Context(), shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &node{
		name: name, pool: pool, tm: tm,
		q: queuepg.New(pool, queuepg.Options{Instance: name, InstanceTTL: tm.ttl, Lease: time.Hour}),
		// Buffered generously: a test reads them only when it expects
		// something, and a full channel would block the listener.
		wakes:     make(chan string, 1000),
		reconcile: make(chan struct{}, 1000),
		stop:      func() {},
	}
}

// run starts the node's Run and waits until its listener listens.
func (n *node) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- n.q.Run(ctx, queuepg.ClusterOptions{
			Instance:       n.name,
			Heartbeat:      n.tm.heartbeat,
			InstanceTTL:    n.tm.ttl,
			ReconcileEvery: n.tm.reconcile,
			OnWake:         func(_ context.Context, conn string) { n.wakes <- conn },
			OnReconcile:    func(context.Context) { n.reconcile <- struct{}{} },
			VacuumDeadRows: n.vacuumDeadRows,
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run = %v", n.name, err)
			}
		case <-time.After(waitLimit):
			t.Errorf("%s: Run did not return after its context ended", n.name)
		}
	}
	t.Cleanup(n.stop)
	n.waitReconcile(t, "the first LISTEN")
	if !n.q.ListenerConnected() {
		t.Fatalf("%s: listener not connected after its first reconcile", n.name)
	}
}

func (n *node) waitReconcile(t *testing.T, what string) {
	t.Helper()
	select {
	case <-n.reconcile:
	case <-time.After(waitLimit):
		t.Fatalf("%s: no OnReconcile after %s", n.name, what)
	}
}

// expectWakes checks that the node was woken for exactly want (in order)
// and nothing else, so far. It sends the node a sentinel notification and
// reads wake-ups up to it: notifications arrive in commit order, so any
// wake-up caused by what the test did before comes first.
func (n *node) expectWakes(t *testing.T, admin *pgxpool.Pool, want ...string) {
	t.Helper()
	sentinel := uuid.NewString()
	if _, err := admin.Exec(t.Context(), "SELECT pg_notify($1, $2)", queuepg.ChannelName(n.name), sentinel); err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.After(waitLimit)
	for {
		select {
		case id := <-n.wakes:
			if id == sentinel {
				if !slices.Equal(got, want) {
					t.Errorf("%s woken for %v, want %v", n.name, got, want)
				}
				return
			}
			got = append(got, id)
		case <-deadline:
			t.Fatalf("%s: sentinel notification not received; woken for %v so far", n.name, got)
		}
	}
}

// mediation creates a connection with a routed key.
func newMediation(t *testing.T, pool *pgxpool.Pool) (conn, key string) {
	t.Helper()
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	conn, key = uuid.NewString(), base58.Encode(raw[:])
	st := storepg.New(pool)
	ctx := t.Context()
	if err := st.InsertConnection(ctx, record.Connection{ID: conn, OurKey: "our-" + conn, TheirKey: "their-" + conn,
		Mediation: record.MediationGranted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddRoute(ctx, conn, key); err != nil {
		t.Fatal(err)
	}
	return conn, key
}

func forwardVia(t *testing.T, n *node, key string) queue.Enqueued {
	t.Helper()
	res, err := n.q.EnqueueForward(t.Context(), key, []byte(`{"ciphertext":"x"}`))
	if err != nil {
		t.Fatalf("EnqueueForward via %s: %v", n.name, err)
	}
	return res
}

func registerOn(t *testing.T, n *node, conn string) queue.Session {
	t.Helper()
	s := queue.Session{ID: uuid.NewString(), ConnectionID: conn, Instance: n.name, Protocol: queue.ProtocolLiveV2}
	if err := n.q.RegisterSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func holderOf(s queue.Session) queue.Holder { return queue.Holder{Instance: s.Instance, Session: s.ID} }

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestChannelNameMatchesSQL(t *testing.T) {
	pool := pgtest.NewPool(t)
	for _, inst := range []string{"", "a", "host-1234-0f0e0d0c", "ÜnïcödÉ-höst-✓", strings.Repeat("x", 300)} {
		var sql string
		if err := pool.QueryRow(t.Context(), "SELECT 'mediator_' || left(md5($1), 16)", inst).Scan(&sql); err != nil {
			t.Fatal(err)
		}
		if got := queuepg.ChannelName(inst); got != sql || len(got) != len("mediator_")+16 {
			t.Errorf("ChannelName(%q) = %q, SQL computes %q", inst, got, sql)
		}
	}
}

// A forward accepted on B for a connection live on A wakes A, and only A;
// one for a connection live nowhere, or live on the accepting instance
// itself, wakes nobody.
func TestForwardWakesTheLiveInstance(t *testing.T) {
	shared := pgtest.NewPool(t)
	a, b := newNode(t, shared, "instance-a", longLived), newNode(t, shared, "instance-b", longLived)
	a.run(t)
	b.run(t)
	conn, key := newMediation(t, shared)

	if res := forwardVia(t, b, key); res.LiveInstance != "" {
		t.Errorf("no session: LiveInstance = %q, want empty", res.LiveInstance)
	}
	a.expectWakes(t, shared)
	b.expectWakes(t, shared)

	registerOn(t, a, conn)
	if res := forwardVia(t, b, key); res.LiveInstance != "instance-a" {
		t.Errorf("session on A, forward via B: LiveInstance = %q, want instance-a", res.LiveInstance)
	}
	a.expectWakes(t, shared, conn)
	b.expectWakes(t, shared)

	// Enqueue (a reply to a known connection) does the same.
	if res, err := b.q.Enqueue(t.Context(), conn, key, []byte(`{}`)); err != nil || res.LiveInstance != "instance-a" {
		t.Errorf("Enqueue via B: LiveInstance = %q, %v; want instance-a", res.LiveInstance, err)
	}
	a.expectWakes(t, shared, conn)

	// Accepted on A itself: A pushes on its own, no notification.
	if res := forwardVia(t, a, key); res.LiveInstance != "instance-a" {
		t.Errorf("forward via A: LiveInstance = %q, want instance-a", res.LiveInstance)
	}
	a.expectWakes(t, shared)
	b.expectWakes(t, shared)
}

// An instance whose heartbeat stopped is not live any more; the janitor of
// another instance then removes its sessions and requeues its in-flight
// messages, waking the connection's live session elsewhere.
func TestDeadInstanceIsCleanedUp(t *testing.T) {
	shared := pgtest.NewPool(t)
	a, b := newNode(t, shared, "instance-a", shortTTL), newNode(t, shared, "instance-b", shortTTL)
	a.run(t)
	conn, key := newMediation(t, shared)
	sa := registerOn(t, a, conn)
	sent := forwardVia(t, b, key)
	if sent.LiveInstance != "instance-a" {
		t.Fatalf("LiveInstance = %q, want instance-a", sent.LiveInstance)
	}
	a.expectWakes(t, shared, conn)
	inFlight, err := a.q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 10, holderOf(sa))
	if err != nil || len(inFlight) != 1 || inFlight[0].ID != sent.ID {
		t.Fatalf("A's claim = %+v, %v", inFlight, err)
	}

	a.stop() // A stops heartbeating (as if it hung or crashed) and leaves its rows behind
	waitUntil(t, "A's heartbeat to go stale", func() bool {
		return count(t, shared, `SELECT count(*) FROM mediator_instance
			WHERE instance = 'instance-a' AND heartbeat_at < now() - interval '1 second'`) == 1
	})
	// No janitor has run yet (B's Run is not started): A's row is still
	// there, but stale, so A does not count as live.
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE instance = 'instance-a'"); n != 1 {
		t.Fatalf("A has %d live_session rows before any janitor ran, want 1", n)
	}
	late := forwardVia(t, b, key)
	if late.LiveInstance != "" {
		t.Errorf("A stale: LiveInstance = %q, want empty", late.LiveInstance)
	}

	// The wallet reconnects to B; B's janitor cleans up after A.
	sb := registerOn(t, b, conn)
	b.run(t)
	waitUntil(t, "B's janitor to remove instance A", func() bool {
		return count(t, shared, "SELECT count(*) FROM mediator_instance WHERE instance = 'instance-a'") == 0
	})
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE instance = 'instance-a'"); n != 0 {
		t.Errorf("A still has %d live_session rows", n)
	}
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE session_id = $1", sb.ID); n != 1 {
		t.Errorf("B's own session was removed")
	}
	// The requeue woke B, which holds the connection now.
	select {
	case id := <-b.wakes:
		if id != conn {
			t.Errorf("B woken for %s, want %s", id, conn)
		}
	case <-time.After(waitLimit):
		t.Fatal("B not woken for A's requeued message")
	}
	// Claimable again at once, although A's lease (an hour) has not run out.
	got, err := b.q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 10, holderOf(sb))
	if err != nil || len(got) != 2 || got[0].ID != sent.ID || got[0].Attempts != 2 || got[1].ID != late.ID {
		t.Errorf("B's claim = %+v, %v; want A's requeued message (attempt 2), then the late one", got, err)
	}
}

// When the listener's backend is terminated, the instance reconnects,
// reconciles (notifications sent meanwhile are lost) and is reachable again.
func TestListenerReconnects(t *testing.T) {
	shared := pgtest.NewPool(t)
	a, b := newNode(t, shared, "instance-a", longLived), newNode(t, shared, "instance-b", longLived)
	a.run(t)
	b.run(t)
	conn, key := newMediation(t, shared)
	registerOn(t, a, conn)

	const findListener = `SELECT pid FROM pg_stat_activity
		WHERE application_name = 'mediator-listener' AND datname = current_database()
		  AND query LIKE '%' || $1 || '%'`
	var pid int
	waitUntil(t, "A's listener in pg_stat_activity", func() bool {
		return shared.QueryRow(t.Context(), findListener, queuepg.ChannelName("instance-a")).Scan(&pid) == nil
	})
	var terminated bool
	if err := shared.QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", pid).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, terminated, err)
	}
	a.waitReconcile(t, "the listener was terminated")
	if !a.q.ListenerConnected() {
		t.Error("listener not connected after reconnecting")
	}
	var newPID int
	if err := shared.QueryRow(t.Context(), findListener, queuepg.ChannelName("instance-a")).Scan(&newPID); err != nil || newPID == pid {
		t.Errorf("listener backend after reconnect = %d, %v; want a new one (old %d)", newPID, err, pid)
	}
	// B's listener was not touched.
	b.expectWakes(t, shared)

	if res := forwardVia(t, b, key); res.LiveInstance != "instance-a" {
		t.Errorf("LiveInstance = %q, want instance-a", res.LiveInstance)
	}
	a.expectWakes(t, shared, conn)
}

// A notification in the TypeScript seed's form (a JSON string) works; one
// that is not a connection id is ignored.
func TestNotificationPayloads(t *testing.T) {
	shared := pgtest.NewPool(t)
	a := newNode(t, shared, "instance-a", longLived)
	a.run(t)
	quoted, bare := uuid.NewString(), uuid.NewString()
	channel := queuepg.ChannelName("instance-a")
	for _, payload := range []string{"not a uuid", `"` + quoted + `"`, `"unterminated`, `{"id":1}`, strings.ToUpper(bare), ""} {
		// By hand, as an operator or another implementation would.
		if _, err := shared.Exec(t.Context(), "NOTIFY "+channel+", '"+payload+"'"); err != nil {
			t.Fatal(err)
		}
	}
	a.expectWakes(t, shared, quoted, bare)
}

// Closing one socket returns what it held and wakes the connection's other
// live socket, wherever it is.
func TestUnregisterWakesRemainingSession(t *testing.T) {
	shared := pgtest.NewPool(t)
	a, b := newNode(t, shared, "instance-a", longLived), newNode(t, shared, "instance-b", longLived)
	a.run(t)
	b.run(t)
	conn, key := newMediation(t, shared)
	sb := registerOn(t, b, conn)
	sa := registerOn(t, a, conn)
	forwardVia(t, a, key)
	forwardVia(t, a, key)
	if got, err := a.q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 10, holderOf(sa)); err != nil || len(got) != 2 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}
	if err := a.q.UnregisterSession(t.Context(), sa.ID); err != nil {
		t.Fatal(err)
	}
	b.expectWakes(t, shared, conn)
	a.expectWakes(t, shared)
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE connection_id = $1", conn); n != 1 {
		t.Errorf("%d live_session rows left, want B's one", n)
	}
	if got, err := b.q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 10, holderOf(sb)); err != nil || len(got) != 2 {
		t.Errorf("B's claim after A's unregister = %d, %v; want 2", len(got), err)
	}
}

// Leave requeues the instance's in-flight messages, wakes the other live
// instances of those connections, and removes its rows for good.
func TestLeave(t *testing.T) {
	shared := pgtest.NewPool(t)
	a, b := newNode(t, shared, "instance-a", longLived), newNode(t, shared, "instance-b", longLived)
	a.run(t)
	b.run(t)
	conn, key := newMediation(t, shared)
	offline, offlineKey := newMediation(t, shared)
	sb := registerOn(t, b, conn)
	sa := registerOn(t, a, conn)
	forwardVia(t, a, key)
	forwardVia(t, a, offlineKey)
	if got, err := a.q.Claim(t.Context(), queue.Filter{ConnectionID: conn}, 10, holderOf(sa)); err != nil || len(got) != 1 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}
	// An HTTP batch-pickup request: a session that was never registered.
	httpHolder := queue.Holder{Instance: "instance-a", Session: uuid.NewString()}
	if got, err := a.q.Claim(t.Context(), queue.Filter{ConnectionID: offline}, 10, httpHolder); err != nil || len(got) != 1 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}

	if err := a.q.Leave(t.Context(), "instance-a"); err != nil {
		t.Fatal(err)
	}
	b.expectWakes(t, shared, conn)
	for _, c := range []string{conn, offline} {
		if st, err := b.q.Stats(t.Context(), queue.Filter{ConnectionID: c}); err != nil || st.Count != 1 {
			t.Errorf("Stats(%s) after Leave = %+v, %v; want the requeued message", c, st, err)
		}
	}
	if res := forwardVia(t, b, key); res.LiveInstance != "instance-b" {
		t.Errorf("LiveInstance after A left = %q, want instance-b", res.LiveInstance)
	}
	// Run keeps going until shut down, but must not bring A back.
	a.stop()
	if n := count(t, shared, "SELECT count(*) FROM mediator_instance WHERE instance = 'instance-a'"); n != 0 {
		t.Errorf("instance-a still in mediator_instance after Leave")
	}
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE instance = 'instance-a'"); n != 0 {
		t.Errorf("instance-a still has %d live sessions after Leave", n)
	}
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE session_id = $1", sb.ID); n != 1 {
		t.Errorf("B's session was removed by A's Leave")
	}
}

// An instance that another janitor took for dead (its rows removed) puts its
// sessions back at the next heartbeat.
func TestHeartbeatRestoresLostSessions(t *testing.T) {
	shared := pgtest.NewPool(t)
	a := newNode(t, shared, "instance-a", longLived)
	a.run(t)
	conn, key := newMediation(t, shared)
	sa := registerOn(t, a, conn)
	gone := registerOn(t, a, conn)
	if err := a.q.UnregisterSession(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := shared.Exec(t.Context(), `
		WITH s AS (DELETE FROM live_session WHERE instance = 'instance-a')
		DELETE FROM mediator_instance WHERE instance = 'instance-a'`); err != nil {
		t.Fatal(err)
	}
	a.waitReconcile(t, "the sessions were restored")
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE session_id = $1 AND instance = 'instance-a'", sa.ID); n != 1 {
		t.Errorf("session not restored")
	}
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE session_id = $1", gone.ID); n != 0 {
		t.Errorf("an unregistered session came back")
	}
	if res := forwardVia(t, a, key); res.LiveInstance != "instance-a" {
		t.Errorf("LiveInstance = %q, want instance-a", res.LiveInstance)
	}
}

// Sockets connecting or closing while a heartbeat runs are not taken for
// sessions the registry lost: no re-registration and no reconcile of every
// session, which wallets reconnecting in a burst would otherwise trigger at
// every beat. (A close whose DELETE commits between the heartbeat reading its
// list and its UPDATE leaves one session fewer to find.)
func TestHeartbeatDuringRegistrationBurst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close bool // each registration is unregistered again
	}{
		{"sockets connecting", false},
		{"sockets connecting and closing", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared := pgtest.NewPool(t)
			a := newNode(t, shared, "instance-a", longLived)
			a.run(t)
			conn, _ := newMediation(t, shared)
			// Sessions that stay through the burst, so that the beats have
			// something to look for.
			const steady = 50
			for range steady {
				registerOn(t, a, conn)
			}
			deadline := time.Now().Add(10 * a.tm.heartbeat)
			var wg sync.WaitGroup
			kept := make([]int, 8)
			for i := range kept {
				wg.Go(func() {
					var open []queue.Session // closed oldest first, a few sockets later
					for time.Now().Before(deadline) {
						open = append(open, registerOn(t, a, conn))
						if !tc.close || len(open) < 4 {
							continue
						}
						if err := a.q.UnregisterSession(t.Context(), open[0].ID); err != nil {
							t.Error(err)
							return
						}
						open = open[1:]
					}
					kept[i] = len(open)
				})
			}
			wg.Wait()
			total := steady
			for _, n := range kept {
				total += n
			}
			time.Sleep(2 * a.tm.heartbeat) // beats that see the last registrations
			select {
			case <-a.reconcile:
				t.Errorf("the heartbeat re-registered sessions during the burst")
			default:
			}
			if n := count(t, shared, "SELECT count(*) FROM live_session WHERE instance = 'instance-a'"); n != total {
				t.Errorf("%d sessions registered, want %d", n, total)
			}
		})
	}
}

// An instance VACUUMs the queue table once delivered messages left
// VacuumDeadRows dead rows in it, and a tenth of its live rows; not below
// that, nor with vacuuming off.
func TestVacuumOfDeadRows(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold int
		backlog   int // pending messages of other connections
		want      int // manual VACUUMs of queued_message
	}{
		{"threshold reached", 500, 0, 1},
		{"threshold reached, with a backlog", 500, 9000, 1},
		{"below the threshold", 5000, 0, 0},
		{"below a tenth of the backlog", 500, 11000, 0},
		{"vacuuming off", -1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared := pgtest.NewPool(t)
			a := newNode(t, shared, "instance-a", shortTTL)
			a.vacuumDeadRows = tc.threshold
			conn, key := newMediation(t, shared)
			for range 2 {
				forwardVia(t, a, key) // pending: they stay
			}
			// 1,000 delivered messages, as dead rows, with the statistics
			// flushed now rather than within PostgreSQL's 10 s (by the
			// session that made them).
			db, err := shared.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Release()
			if _, err := db.Exec(t.Context(), `
				INSERT INTO queued_message (connection_id, recipient_key, encrypted_message, size_bytes)
				SELECT gen_random_uuid(), 'backlog', '{}', 2 FROM generate_series(1, $1::int)`, tc.backlog); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(t.Context(), `
				INSERT INTO queued_message (connection_id, recipient_key, encrypted_message, size_bytes)
				SELECT $1, $2, '{}', 2 FROM generate_series(1, 1000)`, conn, key); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(t.Context(), `DELETE FROM queued_message WHERE connection_id = $1 AND size_bytes = 2`, conn); err != nil {
				t.Fatal(err)
			}
			var version int
			if err := db.QueryRow(t.Context(), "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
				t.Fatal(err)
			}
			if version >= 150000 {
				if _, err := db.Exec(t.Context(), "SELECT pg_stat_force_next_flush()"); err != nil {
					t.Fatal(err)
				}
			}
			a.run(t)
			vacuums := func() int {
				return count(t, shared, "SELECT vacuum_count::int FROM pg_stat_user_tables WHERE relname = 'queued_message'")
			}
			if tc.want > 0 {
				waitUntil(t, "the queue table to be vacuumed", func() bool { return vacuums() >= tc.want })
			} else {
				time.Sleep(3 * shortTTL.ttl / 3) // three vacuum passes
			}
			if got := vacuums(); got != tc.want {
				t.Errorf("queued_message vacuumed %d times, want %d", got, tc.want)
			}
			if n := count(t, shared, "SELECT count(*) FROM queued_message WHERE connection_id = $1", conn); n != 2 {
				t.Errorf("%d messages queued after the vacuum, want the 2 pending ones", n)
			}
		})
	}
}

// A session row that its instance no longer vouches for (its
// UnregisterSession failed, say) goes stale and is removed, even on a
// single instance; the sessions the instance does hold stay.
func TestJanitorRemovesSessionsNotSeen(t *testing.T) {
	shared := pgtest.NewPool(t)
	a := newNode(t, shared, "instance-a", shortTTL)
	a.run(t)
	conn, _ := newMediation(t, shared)
	held := registerOn(t, a, conn)
	ghost := uuid.NewString()
	if _, err := shared.Exec(t.Context(), `INSERT INTO live_session (session_id, connection_id, protocol_version, instance)
		VALUES ($1, $2, 'v2', 'instance-a')`, ghost, conn); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the unrefreshed session to be removed", func() bool {
		return count(t, shared, "SELECT count(*) FROM live_session WHERE session_id = $1", ghost) == 0
	})
	if n := count(t, shared, "SELECT count(*) FROM live_session WHERE session_id = $1", held.ID); n != 1 {
		t.Errorf("the instance's own live session was removed")
	}
}
