package pickup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// fakeSocket is a WebSocket-like transport.Session that records raw sends.
type fakeSocket struct {
	id   string
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	sent map[string]int // payload → times written
}

func newFakeSocket() *fakeSocket {
	return &fakeSocket{id: uuid.NewString(), done: make(chan struct{}), sent: map[string]int{}}
}

func (s *fakeSocket) ID() string            { return s.id }
func (s *fakeSocket) Kind() transport.Kind  { return transport.KindWebSocket }
func (s *fakeSocket) RemoteAddr() string    { return "192.0.2.1:1234" }
func (s *fakeSocket) Done() <-chan struct{} { return s.done }
func (s *fakeSocket) Close()                { s.once.Do(func() { close(s.done) }) }
func (s *fakeSocket) Send(_ context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[string(b)]++
	// Let other goroutines in between, to vary the interleavings.
	runtime.Gosched()
	return nil
}

func (s *fakeSocket) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

func testVerkey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base58.Encode(pub)
}

func quietService(q Queue, opts Options) *Service {
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return New(q, opts)
}

func liveOf(s *Service, connectionID string) *liveSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[connectionID]
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A wake-up that arrives after the pusher's last look at again, while it
// still holds pushing, is not lost: the pusher goes round once more.
func TestWakeDuringUnlockIsNotLost(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	s := quietService(st, Options{Implicit: true})
	conn, key := uuid.NewString(), testVerkey(t)
	if _, err := st.Enqueue(ctx, conn, key, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	hooked := make(chan struct{})
	s.afterDrain = func() {
		once.Do(func() {
			// Between the final again.Swap(false) and pushing.Unlock: a
			// forward arrives and wakes the session, whose lock is held.
			if _, err := st.Enqueue(ctx, conn, key, []byte(`{"n":2}`)); err != nil {
				t.Error(err)
			}
			s.wake(ctx, liveOf(s, conn))
			close(hooked)
		})
	}
	sock := newFakeSocket()
	s.Implicit(ctx, Conversation{ConnectionID: conn, Session: sock})
	<-hooked
	waitUntil(t, "both messages pushed without a reconcile", func() bool { return sock.distinct() == 2 })
	sock.Close()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// Many producers queue messages and wake the session while pushes run:
// every message is pushed, and no reconcile is needed.
func TestWakeStress(t *testing.T) {
	for _, protocol := range []string{queue.ProtocolImplicit, queue.ProtocolLiveV2} {
		t.Run(protocol, func(t *testing.T) {
			rounds := 200
			if testing.Short() {
				rounds = 20
			}
			for r := range rounds {
				wakeStressRound(t, protocol, r)
			}
		})
	}
}

func wakeStressRound(t *testing.T, protocol string, round int) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	s := quietService(st, Options{Implicit: true, LiveBatch: 3, MaxBatchBytes: 64})
	conn, key := uuid.NewString(), testVerkey(t)
	sock := newFakeSocket()

	var pushed sync.Map // v2: attachment ids written
	var nPushed, nAcked atomic.Int64
	acks := make(chan []string, 1024)
	stop := make(chan struct{})
	conv := Conversation{ConnectionID: conn, Session: sock, Send: func(_ context.Context, msg any) error {
		d, ok := msg.(delivery)
		if !ok {
			return nil // status replies
		}
		ids := make([]string, len(d.Attach))
		for i, a := range d.Attach {
			if _, dup := pushed.LoadOrStore(a.ID, true); !dup {
				nPushed.Add(1)
			}
			ids[i] = a.ID
		}
		acks <- ids
		return nil
	}}
	var ackers sync.WaitGroup
	if protocol == queue.ProtocolLiveV2 {
		msg, err := didcomm.Parse([]byte(`{"@type":"https://didcomm.org/messagepickup/2.0/live-delivery-change","@id":"on","live_delivery":true}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Handle(ctx, conv, msg); err != nil {
			t.Fatal(err)
		}
		// The wallet acknowledges each push, which wakes the session again.
		ackers.Add(1)
		go func() {
			defer ackers.Done()
			for {
				var ids []string
				select {
				case ids = <-acks:
				case <-stop:
					return
				}
				list, _ := json.Marshal(ids)
				m, err := didcomm.Parse([]byte(`{"@type":"https://didcomm.org/messagepickup/2.0/messages-received","@id":"mr","message_id_list":` + string(list) + `}`))
				if err != nil {
					t.Error(err)
					return
				}
				if err := s.Handle(ctx, conv, m); err != nil {
					t.Error(err)
				}
				nAcked.Add(int64(len(ids)))
			}
		}()
	} else {
		s.Implicit(ctx, conv)
	}
	if s.LiveSessions() != 1 {
		t.Fatalf("round %d: no live session", round)
	}

	const producers, each = 8, 6
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := st.Enqueue(ctx, conn, key, fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)); err != nil {
					t.Error(err)
					return
				}
				s.MessageQueued(ctx, conn)
				if i%2 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	const total = producers * each
	got := func() int {
		if protocol == queue.ProtocolLiveV2 {
			return int(nPushed.Load())
		}
		return sock.distinct()
	}
	deadline := time.Now().Add(5 * time.Second)
	for got() < total {
		if time.Now().After(deadline) {
			t.Fatalf("round %d: %d of %d messages pushed; a wake-up was lost", round, got(), total)
		}
		time.Sleep(200 * time.Microsecond)
	}
	if protocol == queue.ProtocolLiveV2 {
		// Everything acknowledged: nothing is left to push.
		waitUntil(t, "all acknowledged", func() bool { return nAcked.Load() == total })
		close(stop)
		ackers.Wait()
	}
	sock.Close()
	waitUntil(t, "session ended", func() bool { return s.LiveSessions() == 0 })
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// Each WebSocket costs at most one goroutine in the service, whether it
// spoke pickup, went live, changed mode, or all of these.
func TestOneWatcherPerSocket(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	s := quietService(st, Options{Implicit: true})
	nop := func(context.Context, any) error { return nil }
	parse := func(raw string) *didcomm.Message {
		m, err := didcomm.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	liveOn := parse(`{"@type":"https://didcomm.org/messagepickup/2.0/live-delivery-change","@id":"on","live_delivery":true}`)
	liveOff := parse(`{"@type":"https://didcomm.org/messagepickup/2.0/live-delivery-change","@id":"off","live_delivery":false}`)
	statusReq := parse(`{"@type":"https://didcomm.org/messagepickup/2.0/status-request","@id":"sr"}`)

	// Let earlier tests' goroutines go.
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	const n = 300
	socks := make([]*fakeSocket, n)
	for i := range socks {
		sock := newFakeSocket()
		socks[i] = sock
		conv := Conversation{ConnectionID: uuid.NewString(), Session: sock, Send: nop}
		switch i % 3 {
		case 0: // live v2, switched off and on again
			for _, m := range []*didcomm.Message{statusReq, liveOn, liveOff, liveOn} {
				if err := s.Handle(ctx, conv, m); err != nil {
					t.Fatal(err)
				}
			}
		case 1: // implicit
			s.Implicit(ctx, conv)
		case 2: // polls only
			if err := s.Handle(ctx, conv, statusReq); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The old design used two goroutines for a live socket that spoke
	// pickup (4n/3 in all here).
	waitUntil(t, "pushes settle", func() bool { return runtime.NumGoroutine()-before <= n+10 })
	if got := s.LiveSessions(); got != 2*n/3 {
		t.Fatalf("LiveSessions = %d, want %d", got, 2*n/3)
	}
	for _, sock := range socks {
		sock.Close()
	}
	waitUntil(t, "sessions end", func() bool { return s.LiveSessions() == 0 })
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	left := len(s.sockets)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d sockets remembered after they all closed", left)
	}
	waitUntil(t, "watchers exit", func() bool { return runtime.NumGoroutine()-before <= 5 })
}

// wakeCounter is a Registry that counts WakeConnection calls.
type wakeCounter struct {
	*memstore.Memory
	wakes atomic.Int64
}

func (w *wakeCounter) WakeConnection(context.Context, string) error {
	w.wakes.Add(1)
	return nil
}

func TestAckGraceWake(t *testing.T) {
	const grace = 300 * time.Millisecond
	setup := func(t *testing.T) (*Service, *wakeCounter) {
		ctx := context.Background()
		st := memstore.New(memstore.Options{AckGrace: grace})
		reg := &wakeCounter{Memory: st}
		s := quietService(st, Options{Implicit: true, Registry: reg, AckGrace: grace})
		sock := newFakeSocket()
		s.Implicit(ctx, Conversation{ConnectionID: uuid.NewString(), Session: sock})
		sock.Close()
		return s, reg
	}
	t.Run("fires", func(t *testing.T) {
		s, reg := setup(t)
		waitUntil(t, "wake after the grace", func() bool { return reg.wakes.Load() == 1 })
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.timers) != 0 {
			t.Fatalf("%d timers remembered after firing", len(s.timers))
		}
	})
	t.Run("stopped by Close", func(t *testing.T) {
		s, reg := setup(t)
		waitUntil(t, "grace timer started", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.live) == 0 && len(s.timers) == 1
		})
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(grace + 200*time.Millisecond)
		if n := reg.wakes.Load(); n != 0 {
			t.Fatalf("%d wakes after Close, want 0", n)
		}
	})
}

// Close waits for an ack-grace wake that is already running.
func TestCloseWaitsForRunningGraceWake(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	reg := &blockingWake{Memory: st, started: make(chan struct{}), release: make(chan struct{})}
	s := quietService(st, Options{Implicit: true, Registry: reg, AckGrace: time.Millisecond})
	sock := newFakeSocket()
	s.Implicit(ctx, Conversation{ConnectionID: uuid.NewString(), Session: sock})
	sock.Close()
	<-reg.started
	closed := make(chan error, 1)
	go func() { closed <- s.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a grace wake was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(reg.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

type blockingWake struct {
	*memstore.Memory
	once             sync.Once
	started, release chan struct{}
}

func (b *blockingWake) WakeConnection(context.Context, string) error {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return nil
}
