package mediator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

// forwardBench is an agent with one mediation whose recipient key is
// routed, and a packed forward to that key.
type forwardBench struct {
	agent  *mediator.Agent
	packed []byte
}

func newForwardBench(b *testing.B, st mediator.Store, q interface {
	mediator.Queue
	pickup.Queue
}, keys *keyring.Keyring) forwardBench {
	b.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	pk := pickup.New(q, pickup.Options{Instance: "bench", Logger: logger})
	a, err := mediator.New(ctx, mediator.Config{Endpoints: []string{"http://127.0.0.1:1"}, AutoGrant: true,
		Instance: "bench", Logger: logger}, st, q, keys, pk)
	if err != nil {
		b.Fatal(err)
	}
	conn := record.Connection{ID: uuid.NewString(), OurKey: "bench-our-key", TheirKey: "bench-their-key",
		State: record.StateCompleted, Mediation: record.MediationGranted}
	if err := st.InsertConnection(ctx, conn); err != nil {
		b.Fatal(err)
	}
	_, recipient, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	recipientPub := recipient.Public().(ed25519.PublicKey)
	if res, err := st.AddRoute(ctx, conn.ID, base58.Encode(recipientPub)); err != nil || res != record.RouteAdded {
		b.Fatalf("AddRoute = %q, %v", res, err)
	}
	return forwardBench{agent: a, packed: packForward(b, recipientPub, a.RoutingVerkey())}
}

// packForward builds what a sender posts: a ~700-byte basicmessage
// authcrypted for the recipient (about 1.5 KiB packed, what gets queued),
// in a forward anoncrypted for the routing key.
func packForward(b *testing.B, recipient ed25519.PublicKey, routingVerkey string) []byte {
	b.Helper()
	_, sender, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	plain := `{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"` + uuid.NewString() +
		`","content":"` + strings.Repeat("x", 600) + `"}`
	inner, err := envelope.PackAuthcrypt([]byte(plain), sender, recipient)
	if err != nil {
		b.Fatal(err)
	}
	fwd, err := json.Marshal(map[string]any{"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
		"to": base58.Encode(recipient), "msg": json.RawMessage(inner)})
	if err != nil {
		b.Fatal(err)
	}
	routing, err := base58.Decode(routingVerkey)
	if err != nil {
		b.Fatal(err)
	}
	packed, err := envelope.PackAnoncrypt(fwd, routing)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(inner)))
	return packed
}

func masterKey(b *testing.B) []byte {
	b.Helper()
	master := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		b.Fatal(err)
	}
	return master
}

// BenchmarkForwardHandling measures HandleInbound of a packed anoncrypt
// forward (as posted over HTTP): unpack, parse, route lookup and insert.
//
//   - memstore: the CPU cost of the agent alone.
//   - queuepg: one forward at a time on PostgreSQL with the server's own
//     durability settings (each forward waits for its commit).
//   - queuepg-parallel: 8 forwards in flight at once, as under load; ns/op
//     is the inverse of the throughput.
func BenchmarkForwardHandling(b *testing.B) {
	b.Run("memstore", func(b *testing.B) {
		mem := memstore.New(memstore.Options{})
		keys, err := keyring.New(mem, masterKey(b))
		if err != nil {
			b.Fatal(err)
		}
		fb := newForwardBench(b, mem, mem, keys)
		benchForwards(b, fb, false)
	})
	pg := func(b *testing.B) forwardBench {
		pool := pgtest.NewPool(b)
		st := storepg.New(pool)
		keys, err := keyring.New(st, masterKey(b))
		if err != nil {
			b.Fatal(err)
		}
		return newForwardBench(b, st, queuepg.New(pool, queuepg.Options{}), keys)
	}
	b.Run("queuepg", func(b *testing.B) { benchForwards(b, pg(b), false) })
	b.Run("queuepg-parallel", func(b *testing.B) { benchForwards(b, pg(b), true) })
}

func benchForwards(b *testing.B, fb forwardBench, parallel bool) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			if err := fb.agent.HandleInbound(ctx, fb.packed, nil); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(4) // 4 × GOMAXPROCS goroutines: 8 on a 2-core machine
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fb.agent.HandleInbound(ctx, fb.packed, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "forwards/s")
}
