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
	if err := st.InsertConnection(ctx, record.Connection{ID: s.conn, OurKey: "our", TheirKey: "their"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.AddRoute(ctx, s.conn, s.key); err != nil {
		tb.Fatal(err)
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
		SELECT $1::uuid, ARRAY[$2::text], $3, $4::jsonb, $5, now() + g * interval '1 microsecond'
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

// TestClaimPlanUsesIndex checks what keeps claims flat under load: with a
// large backlog of other connections, the claim and the stats read one
// connection's range of the (connection_id, created_at, id) index and never
// scan the table.
func TestClaimPlanUsesIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 rows")
	}
	s := newBenchSetup(t)
	backlog(t, s.pool, 100_000)
	fill(t, s.pool, s.conn, s.key, 50)
	if _, err := s.pool.Exec(t.Context(), "ANALYZE queued_message"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		query string
		args  []any
	}{
		{"claim", claimSQL, []any{s.conn, "", 10, time.Minute, "i", "s"}},
		{"claim by key", claimSQL, []any{s.conn, s.key, 10, time.Minute, "i", "s"}},
		{"stats", statsSQL, []any{s.conn, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := s.pool.Query(t.Context(), "EXPLAIN "+tc.query, tc.args...)
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
			if !strings.Contains(p, "queued_message_connection_created_idx") || strings.Contains(p, "Seq Scan") {
				t.Errorf("plan does not read the connection's index range:\n%s", p)
			}
		})
	}

	// And the claim itself, timed with EXPLAIN ANALYZE, touches only this
	// connection's rows.
	var plan strings.Builder
	rows, err := s.pool.Query(t.Context(), "EXPLAIN (ANALYZE, BUFFERS) "+claimSQL, s.conn, "", 10, time.Minute, "i", "s")
	if err != nil {
		t.Fatal(err)
	}
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
	t.Logf("claim with a 100,000-row backlog:\n%s", plan.String())
}

// TestClaimIsPlannedPerCall guards perCallPlan: Claim and Stats must not
// leave a named prepared statement (whose plan would turn generic) behind.
func TestClaimIsPlannedPerCall(t *testing.T) {
	s := newBenchSetup(t)
	cfg := s.pool.Config()
	cfg.MaxConns = 1 // so the check below sees the connection Claim used
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	q := New(pool, Options{})
	fill(t, pool, s.conn, s.key, 20)
	for range 10 {
		if _, err := q.Claim(t.Context(), queue.Filter{ConnectionID: s.conn}, 1, queue.Holder{}); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Stats(t.Context(), queue.Filter{ConnectionID: s.conn}); err != nil {
			t.Fatal(err)
		}
	}
	var named int
	err = pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_prepared_statements
		WHERE (statement LIKE '%FOR UPDATE SKIP LOCKED%' OR statement LIKE '%sum(size_bytes)%')
		AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&named)
	if err != nil {
		t.Fatal(err)
	}
	if named != 0 {
		t.Errorf("%d named prepared statements for Claim/Stats; their plans would go generic", named)
	}
}
