package storepg_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

// fixture is a database with three connections:
//
//   - alice: granted, keys a1 and a2, four messages (sizes 100, 200, 300,
//     400, queued base-40m, -30m, -20m, -10m); the oldest is in flight (claimed,
//     lease of an hour), the second was claimed but its lease ran out; one
//     live session on instance "i-alive"; a push token.
//   - bob: granted, key b1, one message (size 50, queued base-3h); one live
//     session on instance "i-dead", whose heartbeat is 5 minutes old.
//   - carol: no mediation, no keys, nothing queued; created last.
//
// plus two messages (sizes 10 and 20, queued base-1h) for a connection id
// that has no record (orphan), and every time relative to base, a whole
// second a little in the past.
type fixture struct {
	pool                 *pgxpool.Pool
	admin                *storepg.Admin
	base                 time.Time
	alice, bob, carol    string
	orphan               string
	a1, a2, b1           string
	aliceMsgs            []string // oldest first
	bobMsg               string
	aliceSess, bobSess   string
	instAlive, instDead  string
	instAliveStarted     time.Time
	instDeadStarted      time.Time
	instDeadHeartbeatAge time.Duration
}

func newVerkey(t *testing.T) string {
	t.Helper()
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	return base58.Encode(raw[:])
}

// payload returns a JSON object of exactly n bytes.
func payload(n int) []byte {
	return []byte(`{"c":"` + strings.Repeat("x", n-8) + `"}`)
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	f := &fixture{
		pool:  pool,
		admin: storepg.NewAdmin(pool, 0),
		base:  time.Now().UTC().Truncate(time.Second).Add(-time.Second),
		alice: uuid.NewString(), bob: uuid.NewString(), carol: uuid.NewString(), orphan: uuid.NewString(),
		a1: newVerkey(t), a2: newVerkey(t), b1: newVerkey(t),
		instAlive: "i-alive", instDead: "i-dead",
		instDeadHeartbeatAge: 5 * time.Minute,
	}
	st := storepg.New(pool)
	for i, c := range []record.Connection{
		{ID: f.alice, TheirLabel: "Alice", State: record.StateCompleted, Mediation: record.MediationGranted},
		{ID: f.bob, TheirLabel: "Bob", State: record.StateCompleted, Mediation: record.MediationGranted},
		{ID: f.carol, TheirLabel: "Carol", State: record.StateResponseSent},
	} {
		c.OurKey, c.TheirKey = newVerkey(t), newVerkey(t)
		c.Protocol = "https://didcomm.org/didexchange/1.1"
		c.CreatedAt = f.base.Add(time.Duration(i-3) * time.Hour) // alice -3h, bob -2h, carol -1h
		if err := st.InsertConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct{ conn, key string }{{f.alice, f.a1}, {f.alice, f.a2}, {f.bob, f.b1}} {
		if res, err := st.AddRoute(ctx, r.conn, r.key); err != nil || res != record.RouteAdded {
			t.Fatalf("AddRoute = %v, %v", res, err)
		}
	}
	token, platform := "secret-push-token", "ios"
	if err := st.SetDeviceInfo(ctx, f.alice, &token, &platform); err != nil {
		t.Fatal(err)
	}

	q := queuepg.New(pool, queuepg.Options{Lease: time.Hour, InstanceTTL: time.Minute})
	enqueue := func(key string, size int, age time.Duration) string {
		t.Helper()
		res, err := q.EnqueueForward(ctx, key, payload(size))
		if err != nil {
			t.Fatal(err)
		}
		exec(t, pool, `UPDATE queued_message SET created_at = $2 WHERE id = $1`, res.ID, f.base.Add(-age))
		return res.ID
	}
	for i, key := range []string{f.a1, f.a2, f.a1, f.a2} {
		f.aliceMsgs = append(f.aliceMsgs, enqueue(key, 100*(i+1), time.Duration(40-10*i)*time.Minute))
	}
	f.bobMsg = enqueue(f.b1, 50, 3*time.Hour)
	for _, size := range []int{10, 20} {
		res, err := q.Enqueue(ctx, f.orphan, f.b1, payload(size))
		if err != nil {
			t.Fatal(err)
		}
		exec(t, pool, `UPDATE queued_message SET created_at = $2 WHERE id = $1`, res.ID, f.base.Add(-time.Hour))
	}

	// Alice's two oldest are claimed; the second's lease then runs out.
	msgs, err := q.Claim(ctx, queue.Filter{ConnectionID: f.alice}, 2, queue.Holder{Instance: f.instAlive, Session: "s"})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Claim = %d messages, %v", len(msgs), err)
	}
	exec(t, pool, `UPDATE queued_message SET lease_expires_at = now() - interval '1 minute' WHERE id = $1`, f.aliceMsgs[1])

	f.aliceSess, f.bobSess = "sess-alice", "sess-bob"
	for _, s := range []queue.Session{
		{ID: f.aliceSess, ConnectionID: f.alice, Instance: f.instAlive, Protocol: queue.ProtocolLiveV2},
		{ID: f.bobSess, ConnectionID: f.bob, Instance: f.instDead, Protocol: queue.ProtocolImplicit},
	} {
		if err := q.RegisterSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	f.instAliveStarted, f.instDeadStarted = f.base.Add(-2*time.Hour), f.base.Add(-3*time.Hour)
	exec(t, pool, `UPDATE mediator_instance SET started_at = $2, heartbeat_at = now() WHERE instance = $1`,
		f.instAlive, f.instAliveStarted)
	exec(t, pool, `UPDATE mediator_instance SET started_at = $2, heartbeat_at = now() - $3::interval WHERE instance = $1`,
		f.instDead, f.instDeadStarted, f.instDeadHeartbeatAge)
	exec(t, pool, `UPDATE live_session SET created_at = $2 WHERE session_id = $1`, f.aliceSess, f.base.Add(-5*time.Minute))
	exec(t, pool, `UPDATE live_session SET created_at = $2 WHERE session_id = $1`, f.bobSess, f.base.Add(-50*time.Minute))
	return f
}

func TestAdminCheckSchema(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := storepg.NewAdmin(pool, 0).CheckSchema(ctx); !errors.Is(err, storepg.ErrNoSchema) {
		t.Fatalf("CheckSchema on an empty database = %v, want ErrNoSchema", err)
	}
	if err := storepg.NewAdmin(pgtest.NewPool(t), 0).CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema on a migrated database = %v", err)
	}
}

func TestAdminQueueStats(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	s, err := f.admin.QueueStats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(s.Now); d < -time.Minute || d > time.Minute {
		t.Errorf("Now = %v, not the database's current time", s.Now)
	}
	want := []storepg.ConnectionQueue{
		{ConnectionID: f.alice, Label: "Alice", Known: true, Depth: 4, InFlight: 1, TotalBytes: 1000, Oldest: f.base.Add(-40 * time.Minute)},
		{ConnectionID: f.orphan, Depth: 2, TotalBytes: 30, Oldest: f.base.Add(-time.Hour)},
		{ConnectionID: f.bob, Label: "Bob", Known: true, Depth: 1, TotalBytes: 50, Oldest: f.base.Add(-3 * time.Hour)},
	}
	checkQueues(t, s.Connections, want)
	wantTotals := storepg.QueueTotals{Connections: 3, Depth: 7, InFlight: 1, TotalBytes: 1080, Oldest: f.base.Add(-3 * time.Hour)}
	if !totalsEqual(s.Totals, wantTotals) {
		t.Errorf("Totals = %+v, want %+v", s.Totals, wantTotals)
	}

	// --limit: the deepest only, totals still over everything.
	s, err = f.admin.QueueStats(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkQueues(t, s.Connections, want[:1])
	if !totalsEqual(s.Totals, wantTotals) {
		t.Errorf("Totals with limit 1 = %+v, want %+v", s.Totals, wantTotals)
	}

	// Empty queue.
	empty, err := storepg.NewAdmin(pgtest.NewPool(t), 0).QueueStats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(empty.Connections) != 0 || !totalsEqual(empty.Totals, storepg.QueueTotals{}) {
		t.Errorf("empty database: %+v", empty)
	}
}

func totalsEqual(a, b storepg.QueueTotals) bool {
	return a.Connections == b.Connections && a.Depth == b.Depth && a.InFlight == b.InFlight &&
		a.TotalBytes == b.TotalBytes && a.Oldest.Equal(b.Oldest)
}

func checkQueues(t *testing.T, got, want []storepg.ConnectionQueue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d queues %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ConnectionID != w.ConnectionID || g.Label != w.Label || g.Known != w.Known || g.Depth != w.Depth ||
			g.InFlight != w.InFlight || g.TotalBytes != w.TotalBytes || !g.Oldest.Equal(w.Oldest) {
			t.Errorf("queue %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestAdminQueueList(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	l, err := f.admin.QueueList(ctx, strings.ToUpper(f.alice), 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Total != 4 || len(l.Messages) != 4 {
		t.Fatalf("Total %d, %d messages; want 4, 4", l.Total, len(l.Messages))
	}
	type row struct {
		id, state    string
		leaseExpired bool
		key          string
		size         int
		created      time.Time
		attempts     int
		instance     string
	}
	want := []row{
		{f.aliceMsgs[0], "sending", false, f.a1, 100, f.base.Add(-40 * time.Minute), 1, f.instAlive},
		{f.aliceMsgs[1], "sending", true, f.a2, 200, f.base.Add(-30 * time.Minute), 1, f.instAlive},
		{f.aliceMsgs[2], "pending", false, f.a1, 300, f.base.Add(-20 * time.Minute), 0, ""},
		{f.aliceMsgs[3], "pending", false, f.a2, 400, f.base.Add(-10 * time.Minute), 0, ""},
	}
	for i, m := range l.Messages {
		w := want[i]
		got := row{m.ID, m.State, m.LeaseExpired, m.RecipientKey, m.SizeBytes, m.CreatedAt, m.Attempts, m.SendingInstance}
		if got.id != w.id || got.state != w.state || got.leaseExpired != w.leaseExpired || got.key != w.key ||
			got.size != w.size || !got.created.Equal(w.created) || got.attempts != w.attempts || got.instance != w.instance ||
			m.ConnectionID != f.alice {
			t.Errorf("message %d = %+v, want %+v", i, m, w)
		}
		if (m.State == "sending") == m.LeaseExpiresAt.IsZero() {
			t.Errorf("message %d: state %s with lease %v", i, m.State, m.LeaseExpiresAt)
		}
	}

	l, err = f.admin.QueueList(ctx, f.alice, 2)
	if err != nil || l.Total != 4 || len(l.Messages) != 2 || l.Messages[1].ID != f.aliceMsgs[1] {
		t.Errorf("limit 2: total %d, %d messages, %v", l.Total, len(l.Messages), err)
	}
	// A connection without messages lists nothing; one without a record
	// but with messages lists them.
	if l, err := f.admin.QueueList(ctx, f.carol, 0); err != nil || l.Total != 0 || len(l.Messages) != 0 {
		t.Errorf("carol: %+v, %v", l, err)
	}
	if l, err := f.admin.QueueList(ctx, f.orphan, 0); err != nil || l.Total != 2 || len(l.Messages) != 2 {
		t.Errorf("orphan: %+v, %v", l, err)
	}
	for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
		if _, err := f.admin.QueueList(ctx, id, 0); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("QueueList(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestAdminPurge(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	total := func() int { return countRows(t, f.pool, `SELECT count(*) FROM queued_message`) }

	if _, err := f.admin.PurgeQueue(ctx, storepg.PurgeFilter{}, true); !errors.Is(err, storepg.ErrNoPurgeFilter) {
		t.Errorf("no filter: %v, want ErrNoPurgeFilter", err)
	}
	if _, err := f.admin.PurgeQueue(ctx, storepg.PurgeFilter{OlderThan: -time.Minute}, true); err == nil {
		t.Error("negative age accepted")
	}
	for _, id := range []string{uuid.NewString(), "nope"} {
		if _, err := f.admin.PurgeQueue(ctx, storepg.PurgeFilter{ConnectionID: id}, false); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("unknown connection %q: %v, want ErrNotFound", id, err)
		}
	}
	// A connection that exists but has nothing queued is fine.
	if n, err := f.admin.PurgeQueue(ctx, storepg.PurgeFilter{ConnectionID: f.carol}, false); n != 0 || err != nil {
		t.Errorf("carol: %d, %v", n, err)
	}

	cases := []struct {
		name   string
		filter storepg.PurgeFilter
		want   int
		left   int
	}{
		// Older than 25m: alice's -40m and -30m, orphan's two at -1h, bob's -3h.
		{"older than", storepg.PurgeFilter{OlderThan: 25 * time.Minute}, 5, 2},
		// Then alice has -20m and -10m; of those, older than 15m: one.
		{"connection and age", storepg.PurgeFilter{ConnectionID: f.alice, OlderThan: 15 * time.Minute}, 1, 1},
		{"connection", storepg.PurgeFilter{ConnectionID: f.alice}, 1, 0},
	}
	for _, c := range cases {
		before := total()
		n, err := f.admin.PurgeQueue(ctx, c.filter, true)
		if err != nil || n != c.want {
			t.Fatalf("%s, dry run: %d, %v; want %d", c.name, n, err, c.want)
		}
		if total() != before {
			t.Fatalf("%s: dry run deleted messages", c.name)
		}
		n, err = f.admin.PurgeQueue(ctx, c.filter, false)
		if err != nil || n != c.want {
			t.Fatalf("%s: %d, %v; want %d", c.name, n, err, c.want)
		}
		if got := total(); got != c.left {
			t.Fatalf("%s: %d messages left, want %d", c.name, got, c.left)
		}
	}
	// What is left after the three: nothing, since bob's went with the age
	// purge. Check the age purge spared the young ones by id.
	if n := countRows(t, f.pool, `SELECT count(*) FROM queued_message WHERE id = $1`, f.bobMsg); n != 0 {
		t.Error("bob's 3h old message survived the age purge")
	}
}

func TestAdminPurgeManyBatches(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := t.Context()
	conn := uuid.NewString()
	// More than one batch, and one message too young to go.
	exec(t, pool, `
		INSERT INTO queued_message (connection_id, recipient_key, encrypted_message, size_bytes, created_at)
		SELECT $1, 'k', '{}', 2, now() - interval '2 hours' FROM generate_series(1, 12001)`, conn)
	exec(t, pool, `INSERT INTO queued_message (connection_id, recipient_key, encrypted_message, size_bytes)
		VALUES ($1, 'k', '{}', 2)`, conn)
	n, err := storepg.NewAdmin(pool, 0).PurgeQueue(ctx, storepg.PurgeFilter{OlderThan: time.Hour}, false)
	if err != nil || n != 12001 {
		t.Fatalf("PurgeQueue = %d, %v; want 12001", n, err)
	}
	if left := countRows(t, pool, `SELECT count(*) FROM queued_message`); left != 1 {
		t.Fatalf("%d left, want 1", left)
	}
}

func TestAdminConnections(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	l, err := f.admin.Connections(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []storepg.ConnectionSummary{
		{ID: f.carol, Label: "Carol", State: "response-sent", Mediation: "none", Keys: 0, QueueDepth: 0, CreatedAt: f.base.Add(-time.Hour)},
		{ID: f.bob, Label: "Bob", State: "completed", Mediation: "granted", Keys: 1, QueueDepth: 1, CreatedAt: f.base.Add(-2 * time.Hour)},
		{ID: f.alice, Label: "Alice", State: "completed", Mediation: "granted", Keys: 2, QueueDepth: 4, CreatedAt: f.base.Add(-3 * time.Hour)},
	}
	if l.Total != 3 || len(l.Connections) != 3 {
		t.Fatalf("Total %d, %d connections", l.Total, len(l.Connections))
	}
	for i, c := range l.Connections {
		w := want[i]
		if c.ID != w.ID || c.Label != w.Label || c.State != w.State || c.Mediation != w.Mediation ||
			c.Keys != w.Keys || c.QueueDepth != w.QueueDepth || !c.CreatedAt.Equal(w.CreatedAt) {
			t.Errorf("connection %d = %+v, want %+v", i, c, w)
		}
	}
	l, err = f.admin.Connections(ctx, 2)
	if err != nil || l.Total != 3 || len(l.Connections) != 2 || l.Connections[1].ID != f.bob {
		t.Errorf("limit 2: %+v, %v", l, err)
	}
}

func TestAdminConnectionShow(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	d, err := f.admin.Connection(ctx, f.alice)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Connection
	if c.ID != f.alice || c.TheirLabel != "Alice" || c.State != record.StateCompleted || c.Mediation != record.MediationGranted ||
		c.Protocol != "https://didcomm.org/didexchange/1.1" || !c.CreatedAt.Equal(f.base.Add(-3*time.Hour)) {
		t.Errorf("connection = %+v", c)
	}
	var keys []string
	for _, k := range d.Keys {
		keys = append(keys, k.Verkey)
	}
	if !slices.Equal(keys, []string{f.a1, f.a2}) {
		t.Errorf("keys = %v, want %v", keys, []string{f.a1, f.a2})
	}
	if !d.DeviceToken || d.DevicePlatform != "ios" || d.DeviceUpdatedAt.IsZero() {
		t.Errorf("device: %v %q %v", d.DeviceToken, d.DevicePlatform, d.DeviceUpdatedAt)
	}
	if q := d.Queue; q.Depth != 4 || q.InFlight != 1 || q.TotalBytes != 1000 || !q.Oldest.Equal(f.base.Add(-40*time.Minute)) {
		t.Errorf("queue = %+v", q)
	}
	if len(d.Sessions) != 1 || d.Sessions[0].SessionID != f.aliceSess || d.Sessions[0].Instance != f.instAlive {
		t.Errorf("sessions = %+v", d.Sessions)
	}

	d, err = f.admin.Connection(ctx, f.carol)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Keys) != 0 || d.DeviceToken || d.DevicePlatform != "" || !d.DeviceUpdatedAt.IsZero() ||
		d.Queue.Depth != 0 || !d.Queue.Oldest.IsZero() || len(d.Sessions) != 0 {
		t.Errorf("carol = %+v", d)
	}
	for _, id := range []string{f.orphan, "xyz"} {
		if _, err := f.admin.Connection(ctx, id); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("Connection(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestAdminRevoke(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	counts := func(conn string) [4]int {
		return [4]int{
			countRows(t, f.pool, `SELECT count(*) FROM mediation_route WHERE connection_id = $1`, conn),
			countRows(t, f.pool, `SELECT count(*) FROM queued_message WHERE connection_id = $1`, conn),
			countRows(t, f.pool, `SELECT count(*) FROM live_session WHERE connection_id = $1`, conn),
			countRows(t, f.pool, `SELECT count(*) FROM device_info WHERE connection_id = $1`, conn),
		}
	}
	bobBefore, orphanBefore := counts(f.bob), counts(f.orphan)
	instancesBefore := countRows(t, f.pool, `SELECT count(*) FROM mediator_instance`)

	r, err := f.admin.RevokeConnection(ctx, f.alice)
	if err != nil {
		t.Fatal(err)
	}
	want := storepg.Revoked{ConnectionID: f.alice, Label: "Alice", MediationWas: "granted",
		Keys: []string{f.a1, f.a2}, Messages: 4, Sessions: 1, DeviceInfo: true}
	if r.ConnectionID != want.ConnectionID || r.Label != want.Label || r.MediationWas != want.MediationWas ||
		!slices.Equal(r.Keys, want.Keys) || r.Messages != want.Messages || r.Sessions != want.Sessions || r.DeviceInfo != want.DeviceInfo {
		t.Errorf("Revoked = %+v, want %+v", r, want)
	}
	if got := counts(f.alice); got != [4]int{} {
		t.Errorf("alice keeps routes, messages, sessions, device info: %v", got)
	}
	if got := counts(f.bob); got != bobBefore {
		t.Errorf("bob's rows changed: %v, were %v", got, bobBefore)
	}
	if got := counts(f.orphan); got != orphanBefore {
		t.Errorf("orphan's rows changed: %v, were %v", got, orphanBefore)
	}
	if got := countRows(t, f.pool, `SELECT count(*) FROM mediator_instance`); got != instancesBefore {
		t.Errorf("instances %d, were %d", got, instancesBefore)
	}
	c, err := storepg.New(f.pool).ConnectionByID(ctx, f.alice)
	if err != nil || c.Mediation != record.MediationNone || c.State != record.StateCompleted {
		t.Errorf("alice after revoke: %+v, %v", c, err)
	}
	if bob, _ := storepg.New(f.pool).ConnectionByID(ctx, f.bob); bob.Mediation != record.MediationGranted {
		t.Errorf("bob's mediation = %q", bob.Mediation)
	}
	// Nothing routes to alice any more.
	q := queuepg.New(f.pool, queuepg.Options{})
	for _, k := range []string{f.a1, f.a2} {
		if _, err := q.EnqueueForward(ctx, k, payload(20)); !errors.Is(err, queue.ErrUnknownRecipient) {
			t.Errorf("forward to revoked key: %v, want ErrUnknownRecipient", err)
		}
	}
	if _, err := q.EnqueueForward(ctx, f.b1, payload(20)); err != nil {
		t.Errorf("forward to bob: %v", err)
	}

	// Again: nothing left to remove.
	r, err = f.admin.RevokeConnection(ctx, f.alice)
	if err != nil || r.MediationWas != "none" || len(r.Keys) != 0 || r.Messages != 0 || r.Sessions != 0 || r.DeviceInfo {
		t.Errorf("second revoke = %+v, %v", r, err)
	}
	for _, id := range []string{uuid.NewString(), f.orphan, "no"} {
		if _, err := f.admin.RevokeConnection(ctx, id); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("RevokeConnection(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

// A keylist add racing a revoke never leaves a route behind: either the
// revoke deletes it or the add sees the revoked state.
func TestAdminRevokeRacesAddRoute(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	st := storepg.New(f.pool)
	const adders = 8
	for round := range 5 {
		conn := uuid.NewString()
		c := record.Connection{ID: conn, OurKey: newVerkey(t), TheirKey: newVerkey(t), State: record.StateCompleted,
			Mediation: record.MediationGranted, Protocol: "https://didcomm.org/didexchange/1.1"}
		if err := st.InsertConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		results := make([]record.RouteResult, adders)
		errs := make([]error, adders+1)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range adders {
			wg.Go(func() {
				<-start
				results[i], errs[i] = st.AddRoute(ctx, conn, newVerkey(t))
			})
		}
		wg.Go(func() {
			<-start
			_, errs[adders] = f.admin.RevokeConnection(ctx, conn)
		})
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: call %d: %v", round, i, err)
			}
		}
		for i, r := range results {
			if r != record.RouteAdded && r != record.RouteNotGranted {
				t.Errorf("round %d: AddRoute %d = %q, want %q or %q", round, i, r, record.RouteAdded, record.RouteNotGranted)
			}
		}
		if n := countRows(t, f.pool, `SELECT count(*) FROM mediation_route WHERE connection_id = $1`, conn); n != 0 {
			t.Errorf("round %d: %d routes left on the revoked connection (results %v)", round, n, results)
		}
	}
}

func TestAdminSessions(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	l, err := f.admin.Sessions(ctx, storepg.SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Sessions) != 2 {
		t.Fatalf("%d sessions: %+v", len(l.Sessions), l.Sessions)
	}
	// By instance name: i-alive before i-dead.
	a, b := l.Sessions[0], l.Sessions[1]
	if a.SessionID != f.aliceSess || a.ConnectionID != f.alice || a.Protocol != "v2" || a.Instance != f.instAlive ||
		!a.CreatedAt.Equal(f.base.Add(-5*time.Minute)) || a.LastSeen.IsZero() {
		t.Errorf("alice's session = %+v", a)
	}
	if b.SessionID != f.bobSess || b.ConnectionID != f.bob || b.Protocol != "implicit" || b.Instance != f.instDead ||
		!b.CreatedAt.Equal(f.base.Add(-50*time.Minute)) {
		t.Errorf("bob's session = %+v", b)
	}
	for _, c := range []struct {
		filter storepg.SessionFilter
		want   []string
	}{
		{storepg.SessionFilter{Instance: f.instDead}, []string{f.bobSess}},
		{storepg.SessionFilter{ConnectionID: f.alice}, []string{f.aliceSess}},
		{storepg.SessionFilter{Instance: f.instDead, ConnectionID: f.alice}, nil},
		{storepg.SessionFilter{Instance: "nobody"}, nil},
		{storepg.SessionFilter{ConnectionID: "not-a-uuid"}, nil},
	} {
		l, err := f.admin.Sessions(ctx, c.filter)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range l.Sessions {
			ids = append(ids, s.SessionID)
		}
		if !slices.Equal(ids, c.want) {
			t.Errorf("%+v: %v, want %v", c.filter, ids, c.want)
		}
	}
}

func TestAdminInstances(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	exec(t, f.pool, `INSERT INTO mediator_instance (instance, started_at, heartbeat_at) VALUES ('i-idle', $1, now() - interval '20 seconds')`,
		f.base.Add(-time.Hour))
	check := func(ttl time.Duration, want []storepg.Instance) {
		t.Helper()
		l, err := f.admin.Instances(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Instances) != len(want) {
			t.Fatalf("ttl %v: %+v", ttl, l.Instances)
		}
		for i, w := range want {
			g := l.Instances[i]
			if g.Instance != w.Instance || !g.StartedAt.Equal(w.StartedAt) || g.Alive != w.Alive || g.Sessions != w.Sessions {
				t.Errorf("ttl %v: instance %d = %+v, want %+v", ttl, i, g, w)
			}
		}
		dead := l.Instances[0]
		if age := l.Now.Sub(dead.HeartbeatAt); age < f.instDeadHeartbeatAge || age > f.instDeadHeartbeatAge+time.Minute {
			t.Errorf("dead instance's heartbeat age %v", age)
		}
	}
	// Oldest first: i-dead (-3h), i-alive (-2h), i-idle (-1h).
	check(30*time.Second, []storepg.Instance{
		{Instance: f.instDead, StartedAt: f.instDeadStarted, Alive: false, Sessions: 1},
		{Instance: f.instAlive, StartedAt: f.instAliveStarted, Alive: true, Sessions: 1},
		{Instance: "i-idle", StartedAt: f.base.Add(-time.Hour), Alive: true, Sessions: 0},
	})
	check(10*time.Second, []storepg.Instance{
		{Instance: f.instDead, StartedAt: f.instDeadStarted, Alive: false, Sessions: 1},
		{Instance: f.instAlive, StartedAt: f.instAliveStarted, Alive: true, Sessions: 1},
		{Instance: "i-idle", StartedAt: f.base.Add(-time.Hour), Alive: false, Sessions: 0},
	})
	check(time.Hour, []storepg.Instance{
		{Instance: f.instDead, StartedAt: f.instDeadStarted, Alive: true, Sessions: 1},
		{Instance: f.instAlive, StartedAt: f.instAliveStarted, Alive: true, Sessions: 1},
		{Instance: "i-idle", StartedAt: f.base.Add(-time.Hour), Alive: true, Sessions: 0},
	})
}

func TestAdminMediatorKeys(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := t.Context()
	admin := storepg.NewAdmin(pool, 0)
	k, err := admin.MediatorKeys(ctx)
	if err != nil || len(k.Keys) != 0 || k.ConnectionKeys != 0 {
		t.Fatalf("fresh database: %+v, %v", k, err)
	}

	master := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(storepg.New(pool), master)
	if err != nil {
		t.Fatal(err)
	}
	// Routing created first: the listing still puts the invitation key first.
	routing, err := kr.EnsureKey(ctx, record.PurposeRouting)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := kr.EnsureKey(ctx, record.PurposeInvitation)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := kr.NewKey(ctx, record.PurposeConnection); err != nil {
			t.Fatal(err)
		}
	}
	k, err = admin.MediatorKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k.ConnectionKeys != 3 || len(k.Keys) != 2 {
		t.Fatalf("keys = %+v", k)
	}
	wantKeys := []struct {
		verkey  string
		purpose record.KeyPurpose
	}{{keyring.Verkey(inv.Public().(ed25519.PublicKey)), record.PurposeInvitation},
		{keyring.Verkey(routing.Public().(ed25519.PublicKey)), record.PurposeRouting}}
	for i, w := range wantKeys {
		if k.Keys[i].Verkey != w.verkey || k.Keys[i].Purpose != w.purpose || k.Keys[i].CreatedAt.IsZero() {
			t.Errorf("key %d = %+v, want %+v", i, k.Keys[i], w)
		}
	}
}
