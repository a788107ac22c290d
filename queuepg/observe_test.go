package queuepg_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/queuepg"
)

func TestDepth(t *testing.T) {
	pool := pgtest.NewPool(t)
	q := queuepg.New(pool, queuepg.Options{Instance: "i", Lease: time.Hour})
	ctx := t.Context()
	d, err := q.Depth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d != (queue.Depth{}) {
		t.Fatalf("empty queue: %+v", d)
	}
	conn, key := newMediation(t, pool)
	for range 3 {
		if _, err := q.EnqueueForward(ctx, key, []byte(`{"ciphertext":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Make the oldest one 90s old, and claim two.
	if _, err := pool.Exec(ctx, `UPDATE queued_message SET created_at = now() - interval '90 seconds'
		WHERE id = (SELECT id FROM queued_message ORDER BY created_at LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	if msgs, err := q.Claim(ctx, queue.Filter{ConnectionID: conn}, 2, queue.Holder{Instance: "i", Session: "s"}); err != nil || len(msgs) != 2 {
		t.Fatal(len(msgs), err)
	}
	d, err = q.Depth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Messages != 3 || d.InFlight != 2 || d.OldestAge < 90*time.Second || d.OldestAge > 100*time.Second {
		t.Fatalf("depth = %+v, want 3 messages, 2 in flight, oldest about 90s", d)
	}
	// An expired lease is not in flight any more.
	if _, err := pool.Exec(ctx, `UPDATE queued_message SET lease_expires_at = now() - interval '1 second' WHERE state = 'sending'`); err != nil {
		t.Fatal(err)
	}
	if d, err = q.Depth(ctx); err != nil || d.InFlight != 0 || d.Messages != 3 {
		t.Fatalf("depth after the leases ran out = %+v, %v", d, err)
	}
	if st := q.PoolStat(); st.MaxConns() < 1 || st.AcquireCount() == 0 {
		t.Errorf("pool stat: max %d, acquires %d", st.MaxConns(), st.AcquireCount())
	}
}

// A probe comes back through the listener as a lag, not as a wake-up.
func TestNotifyProbe(t *testing.T) {
	shared := pgtest.NewPool(t)
	q := queuepg.New(shared, queuepg.Options{Instance: "prober", InstanceTTL: time.Minute})
	lags := make(chan time.Duration, 10)
	wakes := make(chan string, 10)
	listening := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Run(ctx, queuepg.ClusterOptions{
			Heartbeat: 100 * time.Millisecond, ReconcileEvery: time.Hour,
			OnWake:      func(_ context.Context, id string) { wakes <- id },
			OnReconcile: func(context.Context) { listening <- struct{}{} },
			OnNotifyLag: func(d time.Duration) { lags <- d },
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-listening:
	case <-time.After(waitLimit):
		t.Fatal("listener did not start")
	}
	before := time.Now()
	if err := q.SendNotifyProbe(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A wake-up after it arrives after it: the probe went the same way.
	sentinel := uuid.NewString()
	if _, err := shared.Exec(t.Context(), "SELECT pg_notify($1, $2)", queuepg.ChannelName("prober"), sentinel); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-lags:
		if d < 0 || d > time.Since(before) {
			t.Errorf("probe lag %v, not within the %v since it was sent", d, time.Since(before))
		}
	case <-time.After(waitLimit):
		t.Fatal("probe not received")
	}
	select {
	case id := <-wakes:
		if id != sentinel {
			t.Errorf("woken for %q: the probe went to OnWake?", id)
		}
	case <-time.After(waitLimit):
		t.Fatal("sentinel not received")
	}

	// Without an instance id there is no channel to probe.
	if err := queuepg.New(shared, queuepg.Options{}).SendNotifyProbe(t.Context()); err == nil {
		t.Error("probe without an instance id succeeded")
	}
}
