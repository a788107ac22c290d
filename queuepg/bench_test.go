package queuepg

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

// payload1K is a packed-envelope-shaped JSON object of exactly 1 KiB.
var payload1K = func() []byte {
	head := `{"protected":"eyJlbmMiOiJ4Y2hhY2hhMjBwb2x5MTMwNV9pZXRmIiwidHlwIjoiSldNLzEuMCJ9","iv":"aXYtYXYtaXYtaXY","tag":"dGFnLXRhZy10YWc","ciphertext":"`
	tail := `"}`
	return []byte(head + strings.Repeat("A", 1024-len(head)-len(tail)) + tail)
}()

var durable = flag.Bool("durable", false,
	"benchmark with synchronous_commit on: include the disk's fsync in every commit")

// benchSetup is a migrated database with one mediation connection and its
// routed recipient key.
type benchSetup struct {
	pool *pgxpool.Pool
	q    *Queue
	conn string
	key  string
}

func newBenchSetup(tb testing.TB) benchSetup {
	tb.Helper()
	pool := pgtest.NewPool(tb)
	ctx := context.Background()
	if !*durable {
		// By default measure the queries, not the disk: on a shared test
		// machine one WAL fsync takes anywhere from 1 to 60 ms and drowns
		// everything else. -durable measures what production pays.
		cfg := pool.Config()
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
		fast, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(fast.Close)
		pool = fast
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		tb.Fatal(err)
	}
	s := benchSetup{pool: pool, q: New(pool, Options{}), conn: uuid.NewString(), key: base58.Encode(raw[:])}
	st := storepg.New(pool)
	if err := st.InsertConnection(ctx, record.Connection{ID: s.conn, OurKey: "our", TheirKey: "their",
		Mediation: record.MediationGranted}); err != nil {
		tb.Fatal(err)
	}
	if res, err := st.AddRoute(ctx, s.conn, s.key); err != nil || res != record.RouteAdded {
		tb.Fatalf("AddRoute = %q, %v", res, err)
	}
	return s
}

// fill queues n 1 KiB messages for connection in one statement, a
// microsecond apart so their order is defined.
func fill(tb testing.TB, pool *pgxpool.Pool, connection, key string, n int) {
	tb.Helper()
	did, err := didKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = pool.Exec(context.Background(), `
		INSERT INTO queued_message (connection_id, recipient_dids, recipient_key, encrypted_message, size_bytes, created_at)
		SELECT $1::uuid, ARRAY[$2::text], $3, $4::bytea, $5, now() + g * interval '1 microsecond'
		FROM generate_series(1, $6::int) g`,
		connection, did, key, payload1K, len(payload1K), n)
	if err != nil {
		tb.Fatal(err)
	}
}

// backlog queues n small messages spread over 10,000 other connections, the
// way a busy mediator's table looks, and refreshes the planner's statistics.
func backlog(tb testing.TB, pool *pgxpool.Pool, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := pool.Exec(ctx, `
		INSERT INTO queued_message (connection_id, recipient_dids, recipient_key, encrypted_message, size_bytes, created_at)
		SELECT md5((g % 10000)::text)::uuid, '{}', 'backlog-key', '{"ciphertext":"x"}', 18,
		       now() - interval '1 hour' + g * interval '1 millisecond'
		FROM generate_series(1, $1::int) g`, n)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE queued_message"); err != nil {
		tb.Fatal(err)
	}
}

func BenchmarkEnqueueForward(b *testing.B) {
	s := newBenchSetup(b)
	b.SetBytes(int64(len(payload1K)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.q.EnqueueForward(context.Background(), s.key, payload1K); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClaimAck measures one delivery round: claim a batch of the oldest
// messages, then acknowledge it. ns/op is per batch.
func BenchmarkClaimAck(b *testing.B) {
	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := newBenchSetup(b)
			benchClaimAck(b, s, batch)
		})
	}
}

// BenchmarkClaimWithBacklog shows that a claim's cost does not depend on how
// many messages other connections have queued: compare backlog=0 with
// backlog=200000.
func BenchmarkClaimWithBacklog(b *testing.B) {
	for _, n := range []int{0, 200_000} {
		s := newBenchSetup(b)
		backlog(b, s.pool, n)
		b.Run(fmt.Sprintf("backlog=%d", n), func(b *testing.B) {
			benchClaimAck(b, s, 10)
		})
	}
}

func benchClaimAck(b *testing.B, s benchSetup, batch int) {
	ctx := context.Background()
	fill(b, s.pool, s.conn, s.key, b.N*batch)
	// Clear what earlier rounds of the benchmark left behind, as autovacuum
	// would (it may be off on a test server).
	if _, err := s.pool.Exec(ctx, "VACUUM queued_message"); err != nil {
		b.Fatal(err)
	}
	f := queue.Filter{ConnectionID: s.conn}
	h := queue.Holder{Instance: "bench", Session: "bench"}
	ids := make([]string, 0, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		msgs, err := s.q.Claim(ctx, f, batch, h)
		if err != nil || len(msgs) != batch {
			b.Fatalf("Claim = %d messages, %v; want %d", len(msgs), err, batch)
		}
		ids = ids[:0]
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		if n, err := s.q.Ack(ctx, s.conn, ids); err != nil || n != batch {
			b.Fatalf("Ack = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
}

// TestQueryPlans checks what keeps the queue flat under load. The table has
// a large backlog of other connections, and this connection got a burst of
// messages after the last ANALYZE, so the statistics underrate it (as they
// do for a wallet coming back online between two autovacuum runs). Still:
// the claim and the stats read this connection's range of the
// (connection_id, created_at, id) index in order, and Ack and Release find
// their rows by primary key, never walking a connection's range or every
// in-flight message.
func TestQueryPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 120,000 rows")
	}
	s := newBenchSetup(t)
	backlog(t, s.pool, 100_000)
	fill(t, s.pool, s.conn, s.key, 20_000)
	claimed, err := s.q.Claim(t.Context(), queue.Filter{ConnectionID: s.conn}, 10, queue.Holder{})
	if err != nil || len(claimed) != 10 {
		t.Fatalf("Claim = %d, %v", len(claimed), err)
	}
	var ids []string
	for _, m := range claimed {
		ids = append(ids, m.ID)
	}

	const (
		connIndex  = "queued_message_connection_created_idx"
		pkey       = "queued_message_pkey"
		stateIndex = "queued_message_state_lease_idx"
	)
	for _, tc := range []struct {
		name    string
		query   string
		args    []any
		use     string
		notUse  []string
		analyze bool
		generic bool // planned once for any parameters, as after five runs of a prepared statement
		// settings run before it in its transaction; nil: claimPlanSQL
		// for claims and stats, nothing for the others
		settings []string
	}{
		// An ordered index scan that stops after LIMIT rows: no sort of the
		// connection's whole backlog.
		{"claim", claimSQL, []any{s.conn, "", 10, time.Minute, "i", "s"}, "Index Scan using " + connIndex, []string{"Sort", "Bitmap"}, false, false, nil},
		{"claim by key", claimSQL, []any{s.conn, s.key, 10, time.Minute, "i", "s"}, "Index Scan using " + connIndex, []string{"Sort", "Bitmap"}, false, false, nil},
		{"claim, generic plan", claimSQL, []any{s.conn, "", 10, time.Minute, "i", "s"}, "Index Scan using " + connIndex, []string{"Sort", "Bitmap"}, false, true, nil},
		{"claim by key, generic plan", claimSQL, []any{s.conn, s.key, 10, time.Minute, "i", "s"}, "Index Scan using " + connIndex, []string{"Sort", "Bitmap"}, false, true, nil},
		{"stats", statsSQL, []any{s.conn, ""}, connIndex, []string{"Bitmap"}, false, false, nil},
		{"stats, generic plan", statsSQL, []any{s.conn, ""}, connIndex, []string{"Bitmap"}, false, true, nil},
		{"stats by key, generic plan", statsSQL, []any{s.conn, s.key}, connIndex, []string{"Bitmap"}, false, true, nil},
		{"release", releaseSQL, []any{s.conn, ids, "", ""}, pkey, []string{connIndex, stateIndex}, true, false, nil},
		{"release, generic plan", releaseSQL, []any{s.conn, ids, "", ""}, pkey, []string{connIndex, stateIndex}, false, true, nil},
		{"ack", ackSQL, []any{s.conn, ids}, pkey, []string{connIndex, stateIndex}, true, false, nil},
		{"ack, generic plan", ackSQL, []any{s.conn, ids}, pkey, []string{connIndex, stateIndex}, false, true, nil},
		{"stats after an ack, generic plan", statsSQL, []any{s.conn, ""}, connIndex, []string{"Bitmap"}, false, true, []string{genericPlanSQL, statsAfterAckPlanSQL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			explain := "EXPLAIN "
			if tc.analyze {
				explain = "EXPLAIN (ANALYZE, BUFFERS) "
			}
			// Planned as the queue has them planned: claims under
			// claimPlanSQL, others for these very values.
			tx, err := s.pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			if tc.generic {
				if _, err := tx.Exec(t.Context(), "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
					t.Fatal(err)
				}
			}
			settings := tc.settings
			if settings == nil && (tc.query == claimSQL || tc.query == statsSQL) {
				settings = []string{claimPlanSQL}
			}
			for _, sql := range settings {
				if _, err := tx.Exec(t.Context(), sql); err != nil {
					t.Fatal(err)
				}
			}
			// An unnamed statement, planned for these values (or
			// generically, as plan_cache_mode says).
			args := append([]any{pgx.QueryExecModeCacheDescribe}, tc.args...)
			rows, err := tx.Query(t.Context(), explain+tc.query, args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan strings.Builder
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan.WriteString(line + "\n")
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			p := plan.String()
			bad := !strings.Contains(p, tc.use) || strings.Contains(p, "Seq Scan")
			for _, idx := range tc.notUse {
				bad = bad || strings.Contains(p, idx)
			}
			if bad {
				t.Errorf("plan should use %s and not %v or a Seq Scan:\n%s", tc.use, tc.notUse, p)
			}
		})
	}
}

// A claim that fails half-way changes nothing and does not poison the pool.
func TestClaimFailureRollsBack(t *testing.T) {
	s := newBenchSetup(t)
	ctx := t.Context()
	sent, err := s.q.EnqueueForward(ctx, s.key, payload1K)
	if err != nil {
		t.Fatal(err)
	}
	f := queue.Filter{ConnectionID: s.conn}
	// PostgreSQL text cannot hold NUL: the claim statement fails after BEGIN.
	if _, err := s.q.Claim(ctx, f, 10, queue.Holder{Instance: "bad\x00instance"}); err == nil {
		t.Fatal("Claim with a NUL in the holder succeeded")
	}
	for range 2 * int(s.pool.Config().MaxConns) {
		st, err := s.q.Stats(ctx, f)
		if err != nil || st.Count != 1 {
			t.Fatalf("Stats after the failed claim = %+v, %v; want the message still pending", st, err)
		}
	}
	got, err := s.q.Claim(ctx, f, 10, queue.Holder{Instance: "good"})
	if err != nil || len(got) != 1 || got[0].ID != sent.ID || got[0].Attempts != 1 {
		t.Fatalf("Claim after the failure = %+v, %v; want the message, first attempt", got, err)
	}
}

// Claims and acks run generic plans (claimPlanSQL, genericPlanSQL) that last
// until the next ANALYZE. Made from the statistics of an empty table, as
// autovacuum leaves them between bursts, they must still walk the
// connection's index and probe the primary key: the burst that follows
// would make a sequential scan cost the whole table per delivery.
func TestGenericPlansFromEmptyTable(t *testing.T) {
	s := newBenchSetup(t)
	ctx := t.Context()
	if _, err := s.pool.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, tc := range []struct {
		name, settings, prepare, execute, use string
	}{
		{"claim", claimPlanSQL, "PREPARE stmt(uuid, text, int, interval, text, text) AS " + claimSQL,
			"EXPLAIN EXECUTE stmt(gen_random_uuid(), '', 10, '1 minute', 'i', 's')", "Index Scan using queued_message_connection_created_idx"},
		{"ack", genericPlanSQL, "PREPARE stmt(uuid, uuid[]) AS " + ackSQL,
			"EXPLAIN EXECUTE stmt(gen_random_uuid(), ARRAY[gen_random_uuid()])", "queued_message_pkey"},
		{"stats", statsPlanSQL, "PREPARE stmt(uuid, text) AS " + statsSQL,
			"EXPLAIN EXECUTE stmt(gen_random_uuid(), '')", "Index Scan using queued_message_connection_created_idx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.Exec(ctx, tc.prepare); err != nil {
				t.Fatal(err)
			}
			defer conn.Exec(context.Background(), "DEALLOCATE stmt")
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(ctx, tc.settings); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, tc.execute, pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			p := strings.Join(lines, "\n")
			if !strings.Contains(p, tc.use) || strings.Contains(p, "Seq Scan") {
				t.Errorf("generic plan should use %s and no Seq Scan:\n%s", tc.use, p)
			}
		})
	}
}
