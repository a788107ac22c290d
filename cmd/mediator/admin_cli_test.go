package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

// adminEnv lists the environment variables the admin commands read; the
// tests clear them so that the runner's environment cannot leak in.
var adminEnv = []string{"MEDIATOR_DATABASE_URL", "MEDIATOR_DATABASE_PASSWORD_FILE",
	"MEDIATOR_INSTANCE_TTL", "MEDIATOR_HEALTHCHECK_URL", "MEDIATOR_HEALTHCHECK_TIMEOUT"}

// runCLI runs the real App in-process and returns what it printed and its
// error. The tests in this file do not run in parallel: urfave/cli keeps
// state in flags shared between App instances.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	for _, k := range adminEnv {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.RunContext(context.Background(), append([]string{"mediator"}, args...))
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("mediator %s: %v\noutput:\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var cellSep = regexp.MustCompile(`\s{2,}`)

// splitTable splits tabwriter output into rows of cells (columns are at least
// two spaces apart; cells hold single spaces at most).
func splitTable(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, cellSep.Split(strings.TrimSpace(line), -1))
	}
	return rows
}

func checkTable(t *testing.T, out string, want [][]string) {
	t.Helper()
	got := splitTable(out)
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("row %d = %q, want %q\noutput:\n%s", i, got[i], want[i], out)
		}
	}
}

func decodeJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", out)
	}
	return m
}

func keysOf(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func checkKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := keysOf(m); !slices.Equal(got, want) {
		t.Errorf("%s fields = %v, want %v", what, got, want)
	}
}

func isRFC3339UTC(v any) bool {
	s, ok := v.(string)
	if !ok || !strings.HasSuffix(s, "Z") {
		return false
	}
	_, err := time.Parse(time.RFC3339, s)
	return err == nil
}

// cliFixture is a migrated database seeded through storepg and queuepg.
// Every age is a whole number of minutes of at least an hour, so that the
// tables' ages ("4h0m") do not depend on how long the test takes:
//
//   - alice (created 2d2h ago): granted, keys a1 and a2, push token; four
//     messages of 100, 200, 300, 400 bytes queued 4h, 3h, 2h, 1h ago; the
//     oldest in flight, the second's lease expired; a live session on
//     i-alive (since 3h, last seen 1h ago).
//   - bob (created 1d2h ago): granted, key b1; one 50-byte message queued
//     1d6h ago; a live session on i-dead (since 5h, last seen 3h ago).
//   - carol (created 2h ago): handshake not finished, no mediation.
//   - orphan: no record, two messages of 10 and 20 bytes queued 1h30m ago.
//   - instances: i-dead (started 12h ago, heartbeat 3h ago), i-alive
//     (started 10h ago, heartbeat 1h ago).
type cliFixture struct {
	pool                    *pgxpool.Pool
	url                     string
	alice, bob, carol, orph string
	a1, a2, b1              string
	aliceMsgs               []string
	aliceSess, bobSess      string
	instAlive, instDead     string
	bobMsg                  string
}

func randomVerkey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base58.Encode(pub)
}

func jsonOfSize(n int) []byte {
	return []byte(`{"c":"` + strings.Repeat("x", n-8) + `"}`)
}

func sqlExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func sqlCount(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func newCLIFixture(t *testing.T) *cliFixture {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	// The database's clock, which the commands' ages are computed against.
	var base time.Time
	if err := pool.QueryRow(ctx, `SELECT date_trunc('second', now())`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	f := &cliFixture{
		pool: pool, url: pool.Config().ConnString(),
		alice: uuid.NewString(), bob: uuid.NewString(), carol: uuid.NewString(), orph: uuid.NewString(),
		a1: randomVerkey(t), a2: randomVerkey(t), b1: randomVerkey(t),
		aliceSess: "sess-alice", bobSess: "sess-bob", instAlive: "i-alive", instDead: "i-dead",
	}
	st := storepg.New(pool)
	for _, c := range []record.Connection{
		{ID: f.alice, TheirLabel: "Alice", State: record.StateCompleted, Mediation: record.MediationGranted,
			CreatedAt: base.Add(-50 * time.Hour)},
		{ID: f.bob, TheirLabel: "Bob", State: record.StateCompleted, Mediation: record.MediationGranted,
			CreatedAt: base.Add(-26 * time.Hour)},
		{ID: f.carol, TheirLabel: "Carol", State: record.StateResponseSent, CreatedAt: base.Add(-2 * time.Hour)},
	} {
		c.OurKey, c.TheirKey = randomVerkey(t), randomVerkey(t)
		c.Protocol, c.TheirEndpoint = "https://didcomm.org/didexchange/1.1", "didcomm:transport/queue"
		if err := st.InsertConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct{ conn, key string }{{f.alice, f.a1}, {f.alice, f.a2}, {f.bob, f.b1}} {
		if res, err := st.AddRoute(ctx, r.conn, r.key); err != nil || res != record.RouteAdded {
			t.Fatalf("AddRoute = %q, %v", res, err)
		}
	}
	sqlExec(t, pool, `UPDATE mediation_route SET created_at = $2 WHERE recipient_key = $1`, f.a1, base.Add(-49*time.Hour))
	sqlExec(t, pool, `UPDATE mediation_route SET created_at = $2 WHERE recipient_key = $1`, f.a2, base.Add(-48*time.Hour))
	token, platform := "the-secret-push-token", "android"
	if err := st.SetDeviceInfo(ctx, f.alice, &token, &platform); err != nil {
		t.Fatal(err)
	}
	sqlExec(t, pool, `UPDATE device_info SET updated_at = $1`, base.Add(-47*time.Hour))

	q := queuepg.New(pool, queuepg.Options{Lease: 24 * time.Hour, InstanceTTL: time.Minute})
	age := func(id string, d time.Duration) {
		sqlExec(t, pool, `UPDATE queued_message SET created_at = $2 WHERE id = $1`, id, base.Add(-d))
	}
	for i, key := range []string{f.a1, f.a2, f.a1, f.a2} {
		res, err := q.EnqueueForward(ctx, key, jsonOfSize(100*(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		age(res.ID, time.Duration(4-i)*time.Hour)
		f.aliceMsgs = append(f.aliceMsgs, res.ID)
	}
	res, err := q.EnqueueForward(ctx, f.b1, jsonOfSize(50))
	if err != nil {
		t.Fatal(err)
	}
	age(res.ID, 30*time.Hour)
	f.bobMsg = res.ID
	for _, size := range []int{10, 20} {
		res, err := q.Enqueue(ctx, f.orph, f.b1, jsonOfSize(size))
		if err != nil {
			t.Fatal(err)
		}
		age(res.ID, 90*time.Minute)
	}
	if msgs, err := q.Claim(ctx, queue.Filter{ConnectionID: f.alice}, 2, queue.Holder{Instance: f.instAlive, Session: f.aliceSess}); err != nil || len(msgs) != 2 {
		t.Fatalf("Claim = %d, %v", len(msgs), err)
	}
	sqlExec(t, pool, `UPDATE queued_message SET lease_expires_at = now() - interval '1 minute' WHERE id = $1`, f.aliceMsgs[1])

	for _, s := range []queue.Session{
		{ID: f.aliceSess, ConnectionID: f.alice, Instance: f.instAlive, Protocol: queue.ProtocolLiveV2},
		{ID: f.bobSess, ConnectionID: f.bob, Instance: f.instDead, Protocol: queue.ProtocolImplicit},
	} {
		if err := q.RegisterSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	sqlExec(t, pool, `UPDATE live_session SET created_at = $2, last_seen = $3 WHERE session_id = $1`,
		f.aliceSess, base.Add(-3*time.Hour), base.Add(-time.Hour))
	sqlExec(t, pool, `UPDATE live_session SET created_at = $2, last_seen = $3 WHERE session_id = $1`,
		f.bobSess, base.Add(-5*time.Hour), base.Add(-3*time.Hour))
	sqlExec(t, pool, `UPDATE mediator_instance SET started_at = $2, heartbeat_at = $3 WHERE instance = $1`,
		f.instAlive, base.Add(-10*time.Hour), base.Add(-time.Hour))
	sqlExec(t, pool, `UPDATE mediator_instance SET started_at = $2, heartbeat_at = $3 WHERE instance = $1`,
		f.instDead, base.Add(-12*time.Hour), base.Add(-3*time.Hour))
	return f
}

func didKeyOf(t *testing.T, verkey string) string {
	t.Helper()
	d, err := diddoc.DIDKeyFromVerkey(verkey)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ---- errors common to the database commands ----

func TestAdminCLIDatabaseErrors(t *testing.T) {
	dbCommands := [][]string{
		{"queue", "stats"}, {"queue", "list", "--connection", uuid.NewString()},
		{"queue", "purge", "--older-than", "1h"}, {"connections", "list"}, {"connections", "show", uuid.NewString()},
		{"connections", "revoke", uuid.NewString()}, {"sessions", "list"}, {"instances", "list"}, {"keys", "show"},
	}
	for _, args := range dbCommands {
		_, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "--database-url (or MEDIATOR_DATABASE_URL) is required") {
			t.Errorf("%v without a database: %v", args, err)
		}
	}

	// An existing database that was never migrated is not touched.
	empty := pgtest.NewDatabase(t)
	_, err := runCLI(t, "queue", "stats", "--database-url", empty)
	if err == nil || !strings.Contains(err.Error(), "has no mediator schema: run `mediator migrate` first") {
		t.Errorf("unmigrated database: %v", err)
	}
	// A database that does not exist is not created.
	missing := pgtest.ReserveDatabase(t, "mtest_admin_missing_"+strings.ReplaceAll(uuid.NewString()[:8], "-", ""))
	_, err = runCLI(t, "keys", "show", "--database-url", missing)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing database: %v", err)
	}

	f := newCLIFixture(t)
	unknown := uuid.NewString()
	for _, args := range [][]string{
		{"connections", "show", "--database-url", f.url, unknown},
		{"connections", "revoke", "--database-url", f.url, unknown},
		{"queue", "list", "--database-url", f.url, "--connection", unknown},
		{"queue", "purge", "--database-url", f.url, "--connection", unknown},
		{"connections", "show", "--database-url", f.url, "not-a-uuid"},
	} {
		_, err := runCLI(t, args...)
		want := fmt.Sprintf("connection %q not found", args[len(args)-1])
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", args[:2], err, want)
		}
	}
	_, err = runCLI(t, "queue", "purge", "--database-url", f.url)
	if err == nil || err.Error() != "queue purge needs --connection ID and/or --older-than DURATION: it never empties every queue" {
		t.Errorf("purge without filters: %v", err)
	}
	_, err = runCLI(t, "queue", "list", "--database-url", f.url)
	if err == nil || !strings.Contains(err.Error(), "--connection ID is required") {
		t.Errorf("queue list without --connection: %v", err)
	}
	_, err = runCLI(t, "connections", "show", "--database-url", f.url)
	if err == nil || err.Error() != "give the id: mediator connections show [flags] ID" {
		t.Errorf("show without id: %v", err)
	}
	_, err = runCLI(t, "connections", "show", "--database-url", f.url, f.alice, "--json")
	if err == nil || !strings.Contains(err.Error(), "flags go before it") {
		t.Errorf("show with a flag after the id: %v", err)
	}
	if sqlCount(t, f.pool, `SELECT count(*) FROM queued_message`) != 7 {
		t.Error("a failed command changed the queue")
	}
}

// ---- queue ----

func TestAdminCLIQueueStats(t *testing.T) {
	f := newCLIFixture(t)
	out := mustRun(t, "queue", "stats", "--database-url", f.url)
	checkTable(t, out, [][]string{
		{"CONNECTION", "LABEL", "DEPTH", "IN FLIGHT", "OLDEST", "BYTES"},
		{f.alice, "Alice", "4", "1", "4h0m", "1000 B"},
		{f.orph, "(no record)", "2", "0", "1h30m", "30 B"},
		{f.bob, "Bob", "1", "0", "1d6h", "50 B"},
		{"TOTAL", "3 connections", "7", "1", "1d6h", "1.1 KiB"},
	})

	out = mustRun(t, "queue", "stats", "--database-url", f.url, "--limit", "1")
	checkTable(t, out, [][]string{
		{"CONNECTION", "LABEL", "DEPTH", "IN FLIGHT", "OLDEST", "BYTES"},
		{f.alice, "Alice", "4", "1", "4h0m", "1000 B"},
		{"TOTAL", "3 connections", "7", "1", "1d6h", "1.1 KiB"},
		{"(the 1 deepest of 3 queues; --limit 0 shows all)"},
	})

	doc := decodeJSON(t, mustRun(t, "queue", "stats", "--database-url", f.url, "--json"))
	checkKeys(t, "document", doc, "generated_at", "connections", "totals")
	if !isRFC3339UTC(doc["generated_at"]) {
		t.Errorf("generated_at = %v", doc["generated_at"])
	}
	totals := doc["totals"].(map[string]any)
	checkKeys(t, "totals", totals, "connections", "depth", "in_flight", "total_bytes", "oldest_at", "oldest_age_seconds")
	if totals["connections"] != 3.0 || totals["depth"] != 7.0 || totals["in_flight"] != 1.0 || totals["total_bytes"] != 1080.0 {
		t.Errorf("totals = %v", totals)
	}
	if a := totals["oldest_age_seconds"].(float64); a < 30*3600 || a > 30*3600+60 || !isRFC3339UTC(totals["oldest_at"]) {
		t.Errorf("totals oldest = %v, %v", totals["oldest_at"], a)
	}
	conns := doc["connections"].([]any)
	if len(conns) != 3 {
		t.Fatalf("%d connections", len(conns))
	}
	first := conns[0].(map[string]any)
	checkKeys(t, "connection", first, "connection_id", "label", "connection_known", "depth", "in_flight",
		"total_bytes", "oldest_at", "oldest_age_seconds")
	if first["connection_id"] != f.alice || first["label"] != "Alice" || first["connection_known"] != true ||
		first["depth"] != 4.0 || first["in_flight"] != 1.0 || first["total_bytes"] != 1000.0 {
		t.Errorf("first = %v", first)
	}
	if orphan := conns[1].(map[string]any); orphan["connection_id"] != f.orph || orphan["connection_known"] != false {
		t.Errorf("orphan = %v", orphan)
	}

	// An empty queue: zero totals, null oldest.
	empty := pgtest.NewPool(t).Config().ConnString()
	checkTable(t, mustRun(t, "queue", "stats", "--database-url", empty), [][]string{
		{"CONNECTION", "LABEL", "DEPTH", "IN FLIGHT", "OLDEST", "BYTES"},
		{"TOTAL", "0 connections", "0", "0", "-", "0 B"},
	})
	doc = decodeJSON(t, mustRun(t, "queue", "stats", "--database-url", empty, "--json"))
	if c := doc["connections"].([]any); len(c) != 0 {
		t.Errorf("connections = %v", c)
	}
	if tot := doc["totals"].(map[string]any); tot["oldest_at"] != nil || tot["oldest_age_seconds"] != nil || tot["depth"] != 0.0 {
		t.Errorf("empty totals = %v", tot)
	}
}

func TestAdminCLIQueueList(t *testing.T) {
	f := newCLIFixture(t)
	out := mustRun(t, "queue", "list", "--database-url", f.url, "--connection", f.alice)
	checkTable(t, out, [][]string{
		{"ID", "STATE", "RECIPIENT KEY", "SIZE", "AGE", "ATTEMPTS"},
		{f.aliceMsgs[0], "sending", f.a1, "100 B", "4h0m", "1"},
		{f.aliceMsgs[1], "sending, lease expired", f.a2, "200 B", "3h0m", "1"},
		{f.aliceMsgs[2], "pending", f.a1, "300 B", "2h0m", "0"},
		{f.aliceMsgs[3], "pending", f.a2, "400 B", "1h0m", "0"},
	})
	if strings.Contains(out, "xxxx") {
		t.Error("queue list printed a payload")
	}
	out = mustRun(t, "queue", "list", "--database-url", f.url, "--connection", f.alice, "--limit", "1")
	checkTable(t, out, [][]string{
		{"ID", "STATE", "RECIPIENT KEY", "SIZE", "AGE", "ATTEMPTS"},
		{f.aliceMsgs[0], "sending", f.a1, "100 B", "4h0m", "1"},
		{"(the 1 oldest of 4 messages; --limit 0 shows all)"},
	})
	// A connection with nothing queued: just the header.
	checkTable(t, mustRun(t, "queue", "list", "--database-url", f.url, "--connection", f.carol),
		[][]string{{"ID", "STATE", "RECIPIENT KEY", "SIZE", "AGE", "ATTEMPTS"}})

	out = mustRun(t, "queue", "list", "--database-url", f.url, "--connection", f.alice, "--json")
	if strings.Contains(out, "xxxx") {
		t.Error("queue list --json printed a payload")
	}
	doc := decodeJSON(t, out)
	checkKeys(t, "document", doc, "generated_at", "total", "messages")
	msgs := doc["messages"].([]any)
	if doc["total"] != 4.0 || len(msgs) != 4 {
		t.Fatalf("total %v, %d messages", doc["total"], len(msgs))
	}
	m0, m1, m2 := msgs[0].(map[string]any), msgs[1].(map[string]any), msgs[2].(map[string]any)
	checkKeys(t, "message", m0, "id", "connection_id", "state", "lease_expired", "recipient_key", "size_bytes",
		"created_at", "attempts", "lease_expires_at", "sending_instance")
	if m0["id"] != f.aliceMsgs[0] || m0["connection_id"] != f.alice || m0["state"] != "sending" || m0["lease_expired"] != false ||
		m0["recipient_key"] != f.a1 || m0["size_bytes"] != 100.0 || m0["attempts"] != 1.0 ||
		m0["sending_instance"] != f.instAlive || !isRFC3339UTC(m0["created_at"]) || !isRFC3339UTC(m0["lease_expires_at"]) {
		t.Errorf("message 0 = %v", m0)
	}
	if m1["lease_expired"] != true || m1["state"] != "sending" {
		t.Errorf("message 1 = %v", m1)
	}
	if m2["state"] != "pending" || m2["lease_expires_at"] != nil || m2["sending_instance"] != "" || m2["attempts"] != 0.0 {
		t.Errorf("message 2 = %v", m2)
	}
}

func TestAdminCLIQueuePurge(t *testing.T) {
	f := newCLIFixture(t)
	count := func() int { return sqlCount(t, f.pool, `SELECT count(*) FROM queued_message`) }

	// Older than 2h30m: alice's 4h and 3h, bob's 1d6h.
	out := mustRun(t, "queue", "purge", "--database-url", f.url, "--older-than", "150m", "--dry-run")
	if out != "dry run: 3 messages would be deleted\n" || count() != 7 {
		t.Errorf("dry run: %q, %d left", out, count())
	}
	doc := decodeJSON(t, mustRun(t, "queue", "purge", "--database-url", f.url, "--older-than", "150m", "--dry-run", "--json"))
	checkKeys(t, "purge", doc, "dry_run", "connection_id", "older_than_seconds", "matched", "deleted")
	if doc["dry_run"] != true || doc["matched"] != 3.0 || doc["deleted"] != 0.0 || doc["older_than_seconds"] != 9000.0 || count() != 7 {
		t.Errorf("dry run JSON = %v, %d left", doc, count())
	}
	if out := mustRun(t, "queue", "purge", "--database-url", f.url, "--older-than", "150m"); out != "deleted 3 messages\n" {
		t.Errorf("purge by age: %q", out)
	}
	if count() != 4 || sqlCount(t, f.pool, `SELECT count(*) FROM queued_message WHERE id = $1`, f.bobMsg) != 0 {
		t.Errorf("after purge by age: %d left", count())
	}
	// Connection and age: alice's 2h one only.
	if out := mustRun(t, "queue", "purge", "--database-url", f.url, "--connection", f.alice, "--older-than", "90m"); out != "deleted 1 message\n" {
		t.Errorf("purge by connection and age: %q", out)
	}
	doc = decodeJSON(t, mustRun(t, "queue", "purge", "--database-url", f.url, "--connection", f.orph, "--json"))
	if doc["dry_run"] != false || doc["matched"] != 2.0 || doc["deleted"] != 2.0 || doc["connection_id"] != f.orph {
		t.Errorf("purge by connection JSON = %v", doc)
	}
	left := sqlCount(t, f.pool, `SELECT count(*) FROM queued_message WHERE id = $1`, f.aliceMsgs[3])
	if count() != 1 || left != 1 {
		t.Errorf("%d left (alice's newest: %d)", count(), left)
	}
}

// ---- connections ----

func TestAdminCLIConnectionsList(t *testing.T) {
	f := newCLIFixture(t)
	header := []string{"ID", "LABEL", "STATE", "MEDIATION", "KEYS", "QUEUE", "CREATED"}
	checkTable(t, mustRun(t, "connections", "list", "--database-url", f.url), [][]string{
		header,
		{f.carol, "Carol", "response-sent", "none", "0", "0", "2h0m ago"},
		{f.bob, "Bob", "completed", "granted", "1", "1", "1d2h ago"},
		{f.alice, "Alice", "completed", "granted", "2", "4", "2d2h ago"},
	})
	checkTable(t, mustRun(t, "connections", "list", "--database-url", f.url, "--limit", "2"), [][]string{
		header,
		{f.carol, "Carol", "response-sent", "none", "0", "0", "2h0m ago"},
		{f.bob, "Bob", "completed", "granted", "1", "1", "1d2h ago"},
		{"(the 2 newest of 3 connections; --limit 0 shows all)"},
	})
	doc := decodeJSON(t, mustRun(t, "connections", "list", "--database-url", f.url, "--json"))
	checkKeys(t, "document", doc, "generated_at", "total", "connections")
	conns := doc["connections"].([]any)
	if doc["total"] != 3.0 || len(conns) != 3 {
		t.Fatalf("%v", doc)
	}
	a := conns[2].(map[string]any)
	checkKeys(t, "connection", a, "id", "label", "state", "mediation", "keys", "queue_depth", "created_at")
	if a["id"] != f.alice || a["label"] != "Alice" || a["state"] != "completed" || a["mediation"] != "granted" ||
		a["keys"] != 2.0 || a["queue_depth"] != 4.0 || !isRFC3339UTC(a["created_at"]) {
		t.Errorf("alice = %v", a)
	}
}

func TestAdminCLIConnectionsShow(t *testing.T) {
	f := newCLIFixture(t)
	out := mustRun(t, "connections", "show", "--database-url", f.url, f.alice)
	if strings.Contains(out, "the-secret-push-token") {
		t.Fatal("connections show printed the push token")
	}
	c, err := storepg.New(f.pool).ConnectionByID(t.Context(), f.alice)
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, out, [][]string{
		{"id:", f.alice},
		{"label:", "Alice"},
		{"state:", "completed"},
		{"protocol:", "https://didcomm.org/didexchange/1.1"},
		{"mediation:", "granted"},
		{"our did:", "-"},
		{"our key:", c.OurKey},
		{"their did:", "-"},
		{"their key:", c.TheirKey},
		{"their endpoint:", "didcomm:transport/queue"},
		{"invitation id:", "-"},
		{"thread id:", "-"},
		{"created:", "2d2h ago"},
		{"updated:", "2d2h ago"},
		{"device token:", "yes (platform android, updated 1d23h ago)"},
		{"queue:", "4 messages (1 in flight), 1000 B, oldest 4h0m"},
		{"live sessions:", "1"},
		{"keys:", "2"},
		{""},
		{"SESSION", "CONNECTION", "PROTOCOL", "INSTANCE", "AGE", "LAST SEEN"},
		{f.aliceSess, f.alice, "v2", f.instAlive, "3h0m", "1h0m ago"},
		{""},
		{"KEY (BASE58)", "DID:KEY", "ADDED"},
		{f.a1, didKeyOf(t, f.a1), "2d1h ago"},
		{f.a2, didKeyOf(t, f.a2), "2d0h ago"},
	})

	carol := splitTable(mustRun(t, "connections", "show", "--database-url", f.url, f.carol))
	if len(carol) != 18 || !slices.Equal(carol[14], []string{"device token:", "no"}) ||
		!slices.Equal(carol[15], []string{"queue:", "0 messages"}) || !slices.Equal(carol[17], []string{"keys:", "0"}) {
		t.Errorf("carol:\n%q", carol)
	}

	out = mustRun(t, "connections", "show", "--database-url", f.url, "--json", f.alice)
	if strings.Contains(out, "the-secret-push-token") {
		t.Fatal("connections show --json printed the push token")
	}
	doc := decodeJSON(t, out)
	checkKeys(t, "document", doc, "generated_at", "id", "label", "state", "protocol", "mediation", "our_did", "our_key",
		"their_did", "their_key", "their_endpoint", "invitation_id", "thread_id", "created_at", "updated_at",
		"keys", "device", "queue", "live_sessions")
	if doc["id"] != f.alice || doc["mediation"] != "granted" || doc["our_key"] != c.OurKey || doc["their_key"] != c.TheirKey {
		t.Errorf("doc = %v", doc)
	}
	keys := doc["keys"].([]any)
	if len(keys) != 2 {
		t.Fatalf("keys = %v", keys)
	}
	k0 := keys[0].(map[string]any)
	checkKeys(t, "key", k0, "verkey", "did_key", "created_at")
	if k0["verkey"] != f.a1 || k0["did_key"] != didKeyOf(t, f.a1) || !isRFC3339UTC(k0["created_at"]) {
		t.Errorf("key 0 = %v", k0)
	}
	dev := doc["device"].(map[string]any)
	checkKeys(t, "device", dev, "token_present", "platform", "updated_at")
	if dev["token_present"] != true || dev["platform"] != "android" {
		t.Errorf("device = %v", dev)
	}
	q := doc["queue"].(map[string]any)
	checkKeys(t, "queue", q, "depth", "in_flight", "total_bytes", "oldest_at", "oldest_age_seconds")
	if q["depth"] != 4.0 || q["in_flight"] != 1.0 || q["total_bytes"] != 1000.0 {
		t.Errorf("queue = %v", q)
	}
	ls := doc["live_sessions"].([]any)
	if len(ls) != 1 || ls[0].(map[string]any)["session_id"] != f.aliceSess {
		t.Errorf("live sessions = %v", ls)
	}
}

func TestAdminCLIConnectionsRevoke(t *testing.T) {
	f := newCLIFixture(t)
	counts := func(conn string) [4]int {
		return [4]int{
			sqlCount(t, f.pool, `SELECT count(*) FROM mediation_route WHERE connection_id = $1`, conn),
			sqlCount(t, f.pool, `SELECT count(*) FROM queued_message WHERE connection_id = $1`, conn),
			sqlCount(t, f.pool, `SELECT count(*) FROM live_session WHERE connection_id = $1`, conn),
			sqlCount(t, f.pool, `SELECT count(*) FROM device_info WHERE connection_id = $1`, conn),
		}
	}
	bob, orphan := counts(f.bob), counts(f.orph)
	out := mustRun(t, "connections", "revoke", "--database-url", f.url, f.alice)
	lines := strings.Split(out, "\n")
	if want := fmt.Sprintf("revoked connection %s (Alice): mediation granted -> none", f.alice); lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	checkTable(t, strings.Join(lines[1:], "\n"), [][]string{
		{"keys removed:", "2"},
		{f.a1, didKeyOf(t, f.a1)},
		{f.a2, didKeyOf(t, f.a2)},
		{"messages removed:", "4"},
		{"live sessions removed:", "1"},
		{"device token removed:", "yes"},
	})
	if got := counts(f.alice); got != [4]int{} {
		t.Errorf("alice keeps %v", got)
	}
	if got := counts(f.bob); got != bob {
		t.Errorf("bob: %v, was %v", got, bob)
	}
	if got := counts(f.orph); got != orphan {
		t.Errorf("orphan: %v, was %v", got, orphan)
	}
	// The record stays, without mediation, and shows so.
	checkTable(t, mustRun(t, "connections", "list", "--database-url", f.url), [][]string{
		{"ID", "LABEL", "STATE", "MEDIATION", "KEYS", "QUEUE", "CREATED"},
		{f.carol, "Carol", "response-sent", "none", "0", "0", "2h0m ago"},
		{f.bob, "Bob", "completed", "granted", "1", "1", "1d2h ago"},
		{f.alice, "Alice", "completed", "none", "0", "0", "2d2h ago"},
	})

	doc := decodeJSON(t, mustRun(t, "connections", "revoke", "--database-url", f.url, "--json", f.bob))
	checkKeys(t, "revoke", doc, "connection_id", "label", "mediation_was", "mediation", "keys_removed",
		"messages_removed", "sessions_removed", "device_info_removed")
	kr := doc["keys_removed"].([]any)
	if doc["connection_id"] != f.bob || doc["mediation_was"] != "granted" || doc["mediation"] != "none" || len(kr) != 1 ||
		doc["messages_removed"] != 1.0 || doc["sessions_removed"] != 1.0 || doc["device_info_removed"] != false {
		t.Errorf("revoke bob = %v", doc)
	}
	if k := kr[0].(map[string]any); k["verkey"] != f.b1 || k["did_key"] != didKeyOf(t, f.b1) {
		t.Errorf("bob's key = %v", k)
	}
	if got := counts(f.orph); got != orphan {
		t.Errorf("orphan after bob's revoke: %v, was %v", got, orphan)
	}
}

// ---- sessions, instances, keys ----

func TestAdminCLISessionsList(t *testing.T) {
	f := newCLIFixture(t)
	header := []string{"SESSION", "CONNECTION", "PROTOCOL", "INSTANCE", "AGE", "LAST SEEN"}
	aliceRow := []string{f.aliceSess, f.alice, "v2", f.instAlive, "3h0m", "1h0m ago"}
	bobRow := []string{f.bobSess, f.bob, "implicit", f.instDead, "5h0m", "3h0m ago"}
	checkTable(t, mustRun(t, "sessions", "list", "--database-url", f.url), [][]string{header, aliceRow, bobRow})
	checkTable(t, mustRun(t, "sessions", "list", "--database-url", f.url, "--instance", f.instDead), [][]string{header, bobRow})
	checkTable(t, mustRun(t, "sessions", "list", "--database-url", f.url, "--connection", f.alice), [][]string{header, aliceRow})
	checkTable(t, mustRun(t, "sessions", "list", "--database-url", f.url, "--instance", "nobody"), [][]string{header})
	if _, err := runCLI(t, "sessions", "list", "--database-url", f.url, "--connection", "x"); err == nil {
		t.Error("--connection x accepted")
	}

	doc := decodeJSON(t, mustRun(t, "sessions", "list", "--database-url", f.url, "--json"))
	checkKeys(t, "document", doc, "generated_at", "sessions")
	ss := doc["sessions"].([]any)
	if len(ss) != 2 {
		t.Fatalf("sessions = %v", ss)
	}
	s := ss[1].(map[string]any)
	checkKeys(t, "session", s, "session_id", "connection_id", "protocol", "instance", "created_at", "last_seen_at")
	if s["session_id"] != f.bobSess || s["connection_id"] != f.bob || s["protocol"] != "implicit" || s["instance"] != f.instDead ||
		!isRFC3339UTC(s["created_at"]) || !isRFC3339UTC(s["last_seen_at"]) {
		t.Errorf("session = %v", s)
	}
}

func TestAdminCLIInstancesList(t *testing.T) {
	f := newCLIFixture(t)
	header := []string{"INSTANCE", "STARTED", "HEARTBEAT AGE", "ALIVE", "SESSIONS"}
	// Default TTL 30s: both heartbeats are far older.
	checkTable(t, mustRun(t, "instances", "list", "--database-url", f.url), [][]string{
		header,
		{f.instDead, "12h0m ago", "3h0m", "no", "1"},
		{f.instAlive, "10h0m ago", "1h0m", "no", "1"},
	})
	checkTable(t, mustRun(t, "instances", "list", "--database-url", f.url, "--instance-ttl", "2h"), [][]string{
		header,
		{f.instDead, "12h0m ago", "3h0m", "no", "1"},
		{f.instAlive, "10h0m ago", "1h0m", "yes", "1"},
	})
	doc := decodeJSON(t, mustRun(t, "instances", "list", "--database-url", f.url, "--instance-ttl", "2h", "--json"))
	checkKeys(t, "document", doc, "generated_at", "instance_ttl_seconds", "instances")
	ins := doc["instances"].([]any)
	if doc["instance_ttl_seconds"] != 7200.0 || len(ins) != 2 {
		t.Fatalf("%v", doc)
	}
	in := ins[1].(map[string]any)
	checkKeys(t, "instance", in, "instance", "started_at", "heartbeat_at", "heartbeat_age_seconds", "alive", "sessions")
	if age := in["heartbeat_age_seconds"].(float64); in["instance"] != f.instAlive || in["alive"] != true || in["sessions"] != 1.0 ||
		age < 3600 || age > 3660 || !isRFC3339UTC(in["started_at"]) || !isRFC3339UTC(in["heartbeat_at"]) {
		t.Errorf("instance = %v", in)
	}
	if _, err := runCLI(t, "instances", "list", "--database-url", f.url, "--instance-ttl", "0s"); err == nil {
		t.Error("--instance-ttl 0s accepted")
	}
}

func TestAdminCLIKeysShow(t *testing.T) {
	pool := pgtest.NewPool(t)
	url := pool.Config().ConnString()
	checkTable(t, mustRun(t, "keys", "show", "--database-url", url), [][]string{
		{"no invitation or routing key yet: the first `mediator serve` or `mediator invitation` creates them"},
		{"connection keys: 0"},
	})
	// The same from the serve config file, whose other settings it skips.
	cfg := filepath.Join(t.TempDir(), "mediator.yaml")
	if err := os.WriteFile(cfg, []byte("database-url: "+url+"\nlisten: 127.0.0.1:1\nqueue-soft-cap: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkTable(t, mustRun(t, "keys", "show", "--config", cfg), [][]string{
		{"no invitation or routing key yet: the first `mediator serve` or `mediator invitation` creates them"},
		{"connection keys: 0"},
	})
	if err := os.WriteFile(cfg, []byte("database-url: "+url+"\nlistne: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "keys", "show", "--config", cfg); err == nil || !strings.Contains(err.Error(), `unknown setting "listne"`) {
		t.Errorf("keys show with a typo in the config file: %v, want the unknown setting named", err)
	}

	master := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(storepg.New(pool), master)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var verkeys []string
	for _, p := range []record.KeyPurpose{record.PurposeInvitation, record.PurposeRouting, record.PurposeConnection, record.PurposeConnection} {
		priv, err := kr.NewKey(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		verkeys = append(verkeys, base58.Encode(priv[32:]))
	}
	sqlExec(t, pool, `UPDATE mediator_key SET created_at = now() - interval '3 hours'`)
	out := mustRun(t, "keys", "show", "--database-url", url)
	checkTable(t, out, [][]string{
		{"PURPOSE", "KEY (BASE58)", "DID:KEY", "CREATED"},
		{"invitation", verkeys[0], didKeyOf(t, verkeys[0]), "3h0m ago"},
		{"routing", verkeys[1], didKeyOf(t, verkeys[1]), "3h0m ago"},
		{"connection keys: 2"},
	})
	for _, v := range verkeys[2:] {
		if strings.Contains(out, v) {
			t.Error("keys show printed a connection key")
		}
	}
	doc := decodeJSON(t, mustRun(t, "keys", "show", "--database-url", url, "--json"))
	checkKeys(t, "document", doc, "generated_at", "keys", "connection_keys")
	ks := doc["keys"].([]any)
	if doc["connection_keys"] != 2.0 || len(ks) != 2 {
		t.Fatalf("%v", doc)
	}
	k := ks[1].(map[string]any)
	checkKeys(t, "key", k, "purpose", "verkey", "did_key", "created_at")
	if k["purpose"] != "routing" || k["verkey"] != verkeys[1] || k["did_key"] != didKeyOf(t, verkeys[1]) || !isRFC3339UTC(k["created_at"]) {
		t.Errorf("routing key = %v", k)
	}
}

// ---- healthcheck, version, completion, help ----

func TestAdminCLIHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	defer ok.Close()
	out, err := runCLI(t, "healthcheck", "--url", ok.URL+"/healthz")
	if err != nil || out != "healthy: "+ok.URL+"/healthz answered 200\n" {
		t.Errorf("200: %q, %v", out, err)
	}

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	_, err = runCLI(t, "healthcheck", "--url", down.URL+"/readyz")
	if want := "unhealthy: GET " + down.URL + "/readyz: 503 Service Unavailable: database unavailable"; err == nil || err.Error() != want {
		t.Errorf("503: %v, want %q", err, want)
	}

	redirect := httptest.NewServer(http.RedirectHandler(ok.URL+"/healthz", http.StatusFound))
	defer redirect.Close()
	if _, err := runCLI(t, "healthcheck", "--url", redirect.URL); err == nil || !strings.Contains(err.Error(), "302 Found") {
		t.Errorf("redirect: %v", err)
	}

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	start := time.Now()
	_, err = runCLI(t, "healthcheck", "--url", slow.URL, "--timeout", "200ms")
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("slow server: %v after %v", err, time.Since(start))
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	if _, err := runCLI(t, "healthcheck", "--url", closedURL); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("closed server: %v", err)
	}

	// The environment variable sets the URL.
	for _, k := range adminEnv {
		t.Setenv(k, "")
	}
	t.Setenv("MEDIATOR_HEALTHCHECK_URL", down.URL)
	app := newApp()
	var buf bytes.Buffer
	app.Writer, app.ErrWriter = &buf, &buf
	if err := app.RunContext(context.Background(), []string{"mediator", "healthcheck"}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("MEDIATOR_HEALTHCHECK_URL: %v", err)
	}
}

func TestAdminCLIVersion(t *testing.T) {
	out := mustRun(t, "version")
	rows := splitTable(out)
	if len(rows) != 5 || !slices.Equal(rows[0], []string{"version:", version}) ||
		!slices.Equal(rows[1], []string{"go:", runtime.Version()}) || rows[2][0] != "revision:" ||
		!slices.Equal(rows[4], []string{"platform:", runtime.GOOS + "/" + runtime.GOARCH}) {
		t.Errorf("version:\n%s", out)
	}
	doc := decodeJSON(t, mustRun(t, "version", "--json"))
	checkKeys(t, "version", doc, "version", "go_version", "revision", "revision_time", "modified")
	if doc["version"] != version || doc["go_version"] != runtime.Version() {
		t.Errorf("version JSON = %v", doc)
	}
}

func TestAdminCLICompletion(t *testing.T) {
	bash := mustRun(t, "completion", "bash")
	for _, want := range []string{"--generate-bash-completion", "complete -o bashdefault -o default -F _mediator_bash_autocomplete mediator\n"} {
		if !strings.Contains(bash, want) {
			t.Errorf("bash script lacks %q:\n%s", want, bash)
		}
	}
	zsh := mustRun(t, "completion", "zsh")
	if !strings.HasPrefix(zsh, "#compdef mediator\n") || !strings.Contains(zsh, "--generate-bash-completion") ||
		!strings.Contains(zsh, "compdef _mediator_zsh_autocomplete mediator\n") {
		t.Errorf("zsh script:\n%s", zsh)
	}
	if strings.Contains(bash+zsh, "PROG") {
		t.Error("program name placeholder left in a script")
	}
	if _, err := runCLI(t, "completion", "fish"); err == nil || err.Error() != `completion "fish": give bash or zsh` {
		t.Errorf("fish: %v", err)
	}
	if _, err := runCLI(t, "completion"); err == nil {
		t.Error("completion without a shell accepted")
	}

	// What the scripts ask the binary. urfave/cli reads os.Args to tell
	// flag from command completion, so set it as the shell would.
	complete := func(args ...string) []string {
		t.Helper()
		saved := os.Args
		defer func() { os.Args = saved }()
		os.Args = append([]string{"mediator"}, args...)
		return strings.Fields(mustRun(t, args...))
	}
	top := complete("--generate-bash-completion")
	for _, want := range []string{"serve", "queue", "connections", "sessions", "instances", "keys", "healthcheck", "version", "completion"} {
		if !slices.Contains(top, want) {
			t.Errorf("top-level completion %v lacks %q", top, want)
		}
	}
	if sub := complete("queue", "--generate-bash-completion"); !slices.Equal(sub, []string{"stats", "list", "purge"}) {
		t.Errorf("queue completion = %v", sub)
	}
	if sub := complete("connections", "--generate-bash-completion"); !slices.Equal(sub, []string{"list", "show", "revoke"}) {
		t.Errorf("connections completion = %v", sub)
	}
	if flags := complete("queue", "purge", "--ol", "--generate-bash-completion"); !slices.Equal(flags, []string{"--older-than"}) {
		t.Errorf("queue purge --ol completion = %v", flags)
	}
	if shells := complete("completion", "--generate-bash-completion"); !slices.Equal(shells, []string{"bash", "zsh"}) {
		t.Errorf("completion completion = %v", shells)
	}
}

// TestAdminCLIHelp checks that every operator command documents itself with
// an example.
func TestAdminCLIHelp(t *testing.T) {
	for _, args := range [][]string{
		{"queue"}, {"queue", "stats"}, {"queue", "list"}, {"queue", "purge"},
		{"connections"}, {"connections", "list"}, {"connections", "show"}, {"connections", "revoke"},
		{"sessions"}, {"sessions", "list"}, {"instances"}, {"instances", "list"}, {"keys"}, {"keys", "show"},
		{"healthcheck"}, {"version"}, {"completion"},
	} {
		out, err := runCLI(t, append(args, "--help")...)
		if err != nil || !strings.Contains(out, "Example:") || !strings.Contains(out, "mediator "+strings.Join(args, " ")) {
			t.Errorf("mediator %s --help: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
