package queuepg_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/queuepg"
)

func randomKey(t *testing.T) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base58.Encode(b[:])
}

// RunExpiry removes the messages older than the TTL, in batches, spares the
// young and the leased ones, and reports the count to OnExpired.
func TestRunExpiry(t *testing.T) {
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	q := queuepg.New(pool, queuepg.Options{Instance: "test"})
	conn, key := uuid.NewString(), randomKey(t)
	var ids []string
	for range 5 {
		m, err := q.Enqueue(ctx, conn, key, []byte(`{"m":1}`))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// Age four of them by two hours; lease one of those.
	if _, err := pool.Exec(ctx, `UPDATE queued_message SET created_at = now() - interval '2 hours' WHERE id = ANY($1::uuid[])`, ids[:4]); err != nil {
		t.Fatal(err)
	}
	leased, err := q.Claim(ctx, queue.Filter{ConnectionID: conn}, 1, queue.Holder{Instance: "test", Session: "s"})
	if err != nil || len(leased) != 1 || leased[0].ID == ids[4] {
		t.Fatalf("Claim = %v, %v; want one of the aged messages", leased, err)
	}

	expired := make(chan int, 4)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.RunExpiry(rctx, queue.ExpiryOptions{TTL: time.Hour, Every: 20 * time.Millisecond, Batch: 2,
			OnExpired: func(n int) { expired <- n }, Logger: slog.New(slog.DiscardHandler)})
	}()
	select {
	case n := <-expired:
		if n != 3 {
			t.Errorf("OnExpired(%d), want 3", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no expiry pass reported")
	}
	time.Sleep(100 * time.Millisecond) // a few more passes: nothing more to take
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-expired:
		t.Errorf("a later pass reported %d", n)
	default:
	}
	var left []string
	rows, _ := pool.Query(ctx, `SELECT id::text FROM queued_message ORDER BY created_at`)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0] != leased[0].ID || left[1] != ids[4] {
		t.Errorf("left %v, want the leased %s and the young %s", left, leased[0].ID, ids[4])
	}
}

// One instance at a time runs a pass: while another holds the expiry lock,
// ExpireMessages returns 0 at once.
func TestExpireOneInstanceAtATime(t *testing.T) {
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	q := queuepg.New(pool, queuepg.Options{Instance: "a"})
	conn := uuid.NewString()
	if _, err := q.Enqueue(ctx, conn, randomKey(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE queued_message SET created_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	other, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const lockID = 0x6d65646578706972 // queuepg's expireLockID
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockID)); err != nil {
		t.Fatal(err)
	}
	if n, err := q.ExpireMessages(ctx, time.Hour, 0); err != nil || n != 0 {
		t.Errorf("ExpireMessages while another instance runs = %d, %v; want 0", n, err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(lockID)); err != nil {
		t.Fatal(err)
	}
	other.Release()
	if n, err := q.ExpireMessages(ctx, time.Hour, 0); err != nil || n != 1 {
		t.Errorf("ExpireMessages after = %d, %v; want 1", n, err)
	}
}
