package pickup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// benchPayload1K is a packed-envelope-shaped JSON object of exactly 1 KiB.
func benchPayload1K() []byte {
	head := `{"protected":"eyJlbmMiOiJ4Y2hhY2hhMjBwb2x5MTMwNV9pZXRmIiwidHlwIjoiSldNLzEuMCJ9","iv":"aXYtYXYtaXYtaXY","tag":"dGFnLXRhZy10YWc","ciphertext":"`
	tail := `"}`
	return []byte(head + strings.Repeat("A", 1024-len(head)-len(tail)) + tail)
}

func benchKey(b *testing.B) ed25519.PrivateKey {
	b.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func benchRequest(b *testing.B, typ string, fields string) *didcomm.Message {
	b.Helper()
	m, err := didcomm.Parse([]byte(`{"@type":"` + typ + `","@id":"` + uuid.NewString() + `"` + fields +
		`,"~transport":{"return_route":"all"}}`))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkBuildDelivery measures turning 10 claimed 1 KiB messages into
// the delivery a wallet receives: building it and marshalling it (what the
// agent does before packing), and with the authcrypt pack as well.
func BenchmarkBuildDelivery(b *testing.B) {
	payload := benchPayload1K()
	now := time.Now()
	msgs := make([]queue.Message, 10)
	for i := range msgs {
		msgs[i] = queue.Message{ID: uuid.NewString(), ConnectionID: uuid.NewString(), RecipientKey: "key",
			Payload: payload, ReceivedAt: now}
	}
	req := benchRequest(b, "https://didcomm.org/messagepickup/2.0/delivery-request", `,"limit":10`)
	b.Run("marshal", func(b *testing.B) {
		b.SetBytes(int64(len(msgs) * len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			d := buildDelivery(didcomm.ReplyHeader(TypeV2Delivery, req), "", msgs)
			if _, err := json.Marshal(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal+pack", func(b *testing.B) {
		ours, theirs := benchKey(b), benchKey(b).Public().(ed25519.PublicKey)
		b.SetBytes(int64(len(msgs) * len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			d := buildDelivery(didcomm.ReplyHeader(TypeV2Delivery, req), "", msgs)
			plain, err := json.Marshal(d)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := envelope.PackAuthcrypt(plain, ours, theirs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchSession is a transport.Session that only tells its kind.
type benchSession struct{ done chan struct{} }

func (s benchSession) ID() string                         { return "bench-session" }
func (s benchSession) Kind() transport.Kind               { return transport.KindHTTP }
func (s benchSession) RemoteAddr() string                 { return "192.0.2.1:1" }
func (s benchSession) Send(context.Context, []byte) error { return nil }
func (s benchSession) Done() <-chan struct{}              { return s.done }
func (s benchSession) Close()                             {}

// BenchmarkDeliveryRequest measures a pickup v2 delivery-request for 10
// queued 1 KiB messages on the in-memory queue: claim, build, marshal (the
// reply's pack is in BenchmarkBuildDelivery). Queueing the next 10 and
// acknowledging the delivered ones happen outside the timer.
func BenchmarkDeliveryRequest(b *testing.B) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	svc := New(mem, Options{Instance: "bench", Logger: slog.New(slog.DiscardHandler)})
	connID := uuid.NewString()
	recipient := base58.Encode(benchKey(b).Public().(ed25519.PublicKey))
	payload := benchPayload1K()
	// Other wallets' messages in the same store, as on a busy mediator.
	for range 1000 {
		if _, err := mem.Enqueue(ctx, uuid.NewString(), recipient, payload); err != nil {
			b.Fatal(err)
		}
	}
	var delivered []string
	conv := Conversation{ConnectionID: connID, Session: benchSession{done: make(chan struct{})},
		Send: func(_ context.Context, msg any) error {
			d, ok := msg.(delivery)
			if !ok {
				b.Fatalf("reply %T, want a delivery", msg)
			}
			if _, err := json.Marshal(d); err != nil {
				return err
			}
			delivered = delivered[:0]
			for _, a := range d.Attach {
				delivered = append(delivered, a.ID)
			}
			return nil
		}}
	req := benchRequest(b, "https://didcomm.org/messagepickup/2.0/delivery-request", `,"limit":10`)
	b.SetBytes(10 * int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for range 10 {
			if _, err := mem.Enqueue(ctx, connID, recipient, payload); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := svc.Handle(ctx, conv, req); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if len(delivered) != 10 {
			b.Fatalf("delivered %d messages, want 10", len(delivered))
		}
		if n, err := mem.Ack(ctx, connID, delivered); err != nil || n != 10 {
			b.Fatalf("Ack = %d, %v", n, err)
		}
		b.StartTimer()
	}
}
