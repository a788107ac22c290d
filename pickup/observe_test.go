package pickup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/internal/logctx"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// recorder is a pickup.Observer that remembers every call.
type recorder struct {
	mu          sync.Mutex
	delivered   []string // "method waited"
	redelivered int
}

func (r *recorder) Delivered(method string, waited time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered = append(r.delivered, method+" "+waited.String())
}

func (r *recorder) Redelivered(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.redelivered += n
}

// take returns and forgets the Delivered calls so far.
func (r *recorder) take() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, n := r.delivered, r.redelivered
	r.delivered, r.redelivered = nil, 0
	return d, n
}

func (r *recorder) waitDelivered(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.delivered)
		r.mu.Unlock()
		if got >= n {
			d, _ := r.take()
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries observed, want %d", got, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var _ pickup.Observer = (*recorder)(nil)

func TestObserverDeliveryRequest(t *testing.T) {
	ctx := context.Background()
	obs := &recorder{}
	f := newFixture(t, pickup.Options{Observer: obs})
	conn, key := uuid.NewString(), newVerkey(t)
	f.enqueue(t, conn, key, payload(1), time.Second)
	f.enqueue(t, conn, key, payload(2), 2*time.Second)
	// Queued 3s and 2s ago.

	w := newWallet(conn, newSession(transport.KindHTTP))
	req := parseMsg(t, `{"@type":"https://didcomm.org/messagepickup/2.0/delivery-request","@id":"dr","limit":10}`)
	if err := f.svc.Handle(ctx, w.conv, req); err != nil {
		t.Fatal(err)
	}
	w.take(t)
	if d, n := obs.take(); !slices.Equal(d, []string{"delivery 3s", "delivery 2s"}) || n != 0 {
		t.Fatalf("observed %v, %d redelivered", d, n)
	}

	// Not acknowledged: after the lease (a minute) they are handed out again.
	f.clock.Advance(2 * time.Minute)
	if err := f.svc.Handle(ctx, w.conv, req); err != nil {
		t.Fatal(err)
	}
	w.take(t)
	if d, n := obs.take(); !slices.Equal(d, []string{"delivery 2m3s", "delivery 2m2s"}) || n != 2 {
		t.Fatalf("observed %v, %d redelivered; want two redeliveries", d, n)
	}

	// A delivery that could not be written is not delivered (but claimed
	// again, so a redelivery).
	f.clock.Advance(2 * time.Minute)
	w.setFail(errors.New("socket gone"))
	if err := f.svc.Handle(ctx, w.conv, req); err == nil {
		t.Fatal("delivery to a failing wallet succeeded")
	}
	if d, n := obs.take(); len(d) != 0 || n != 2 {
		t.Fatalf("observed %v, %d redelivered after a failed send", d, n)
	}
}

func TestObserverBatchPickup(t *testing.T) {
	ctx := context.Background()
	obs := &recorder{}
	f := newFixture(t, pickup.Options{Observer: obs})
	conn, key := uuid.NewString(), newVerkey(t)
	f.enqueue(t, conn, key, payload(1), 500*time.Millisecond)
	w := newWallet(conn, newSession(transport.KindHTTP))
	if err := f.svc.Handle(ctx, w.conv, parseMsg(t, `{"@type":"https://didcomm.org/messagepickup/1.0/batch-pickup","@id":"b","batch_size":5}`)); err != nil {
		t.Fatal(err)
	}
	w.take(t)
	if d, n := obs.take(); !slices.Equal(d, []string{"batch 500ms"}) || n != 0 {
		t.Fatalf("observed %v, %d redelivered", d, n)
	}
}

// writingSession is a WebSocket-like session that records raw sends.
type writingSession struct {
	*session
	mu   sync.Mutex
	sent int
}

func (s *writingSession) Send(context.Context, []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent++
	return nil
}

func TestObserverLiveAndImplicit(t *testing.T) {
	ctx := context.Background()
	obs := &recorder{}
	logs := &logBuffer{}
	f := newFixture(t, pickup.Options{Observer: obs, Implicit: true,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	// Live mode (v2) on one socket.
	liveConn, key := uuid.NewString(), newVerkey(t)
	liveSock := &writingSession{session: newSession(transport.KindWebSocket)}
	lw := newWallet(liveConn, liveSock)
	if err := f.svc.Handle(ctx, lw.conv, parseMsg(t,
		`{"@type":"https://didcomm.org/messagepickup/2.0/live-delivery-change","@id":"on","live_delivery":true,"~transport":{"return_route":"all"}}`)); err != nil {
		t.Fatal(err)
	}
	lw.take(t) // status

	// Implicit pickup on another.
	implConn := uuid.NewString()
	implSock := &writingSession{session: newSession(transport.KindWebSocket)}
	f.svc.Implicit(ctx, newWallet(implConn, implSock).conv)

	if got := f.svc.LiveSessionsByProtocol(); got[queue.ProtocolLiveV2] != 1 || got[queue.ProtocolImplicit] != 1 || len(got) != 2 {
		t.Fatalf("LiveSessionsByProtocol = %v", got)
	}

	f.enqueue(t, liveConn, key, payload(1), 0)
	f.enqueue(t, implConn, key, payload(2), 0)
	f.clock.Advance(time.Second)
	// Woken by a forward that came on another session.
	fwdCtx := logctx.With(ctx, slog.String("session", "forward-session"), slog.String("msg_type", "routing/1/forward"))
	f.svc.MessageQueued(fwdCtx, liveConn)
	f.svc.MessageQueued(fwdCtx, implConn)
	d := obs.waitDelivered(t, 2)
	slices.Sort(d)
	if !slices.Equal(d, []string{"implicit 1s", "live 1s"}) {
		t.Fatalf("observed %v", d)
	}
	// The push's log line names the socket it went to, not the forward.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"live push"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no live push log line: %s", logs.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, `"msg":"live push"`) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["session"] != liveSock.ID() || rec["connection"] != liveConn || rec["msg_type"] != nil {
			t.Errorf("live push logged with %v, want session %s and connection %s", rec, liveSock.ID(), liveConn)
		}
	}

	implSock.Close()
	deadline = time.Now().Add(5 * time.Second)
	for f.svc.LiveSessionsByProtocol()[queue.ProtocolImplicit] != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("implicit session still counted after its socket closed: %v", f.svc.LiveSessionsByProtocol())
		}
		time.Sleep(2 * time.Millisecond)
	}
	liveSock.Close()
	if err := f.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// logBuffer is a log sink safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
