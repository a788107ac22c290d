package memstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/queue"
)

func TestDepth(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	m := memstore.New(memstore.Options{Now: clk.Now, Lease: time.Minute})
	if d, err := m.Depth(ctx); err != nil || d != (queue.Depth{}) {
		t.Fatalf("empty: %+v %v", d, err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conn, key := uuid.NewString(), base58.Encode(pub)
	for range 3 {
		if _, err := m.Enqueue(ctx, conn, key, []byte(`{"ciphertext":"x"}`)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(10 * time.Second)
	}
	if _, err := m.Claim(ctx, queue.Filter{ConnectionID: conn}, 2, queue.Holder{Instance: "i", Session: "s"}); err != nil {
		t.Fatal(err)
	}
	want := queue.Depth{Messages: 3, InFlight: 2, OldestAge: 30 * time.Second}
	if d, err := m.Depth(ctx); err != nil || d != want {
		t.Fatalf("depth = %+v, %v; want %+v", d, err, want)
	}
	clk.Advance(2 * time.Minute)
	want = queue.Depth{Messages: 3, InFlight: 0, OldestAge: 150 * time.Second}
	if d, err := m.Depth(ctx); err != nil || d != want {
		t.Fatalf("after the lease: depth = %+v, %v; want %+v", d, err, want)
	}
}
