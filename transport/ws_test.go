package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/transport"
)

type inbound struct {
	data   string
	sessID string
	kind   transport.Kind
	ctxOK  bool
}

// echoHandler records every message and answers "echo:<msg>" n times for
// messages starting with "echo"; "panic" panics, "fail" returns an error.
func echoHandler(got chan<- inbound) transport.Handler {
	return handlerFunc(func(ctx context.Context, packed []byte, s transport.Session) error {
		_, hasDeadline := ctx.Deadline()
		got <- inbound{data: string(packed), sessID: s.ID(), kind: s.Kind(), ctxOK: ctx.Err() == nil && hasDeadline}
		msg := string(packed)
		switch {
		case msg == "panic":
			panic("handler exploded")
		case msg == "fail":
			return errors.New("handler failed")
		case strings.HasPrefix(msg, "echo3"):
			for i := range 3 {
				if err := s.Send(ctx, fmt.Appendf(nil, "echo:%s:%d", msg, i)); err != nil {
					return err
				}
			}
		case strings.HasPrefix(msg, "echo"):
			return s.Send(ctx, []byte("echo:"+msg))
		}
		return nil
	})
}

// hooks records socket hook calls.
type hooks struct {
	opened, closed atomic.Int32
	openCh         chan transport.Session
	closeCh        chan transport.Session
}

func newHooks() *hooks {
	return &hooks{openCh: make(chan transport.Session, 16), closeCh: make(chan transport.Session, 16)}
}

func (h *hooks) install(cfg *transport.Config) {
	cfg.OnSocketOpen = func(s transport.Session) { h.opened.Add(1); h.openCh <- s }
	cfg.OnSocketClose = func(s transport.Session) { h.closed.Add(1); h.closeCh <- s }
}

func TestWSFramesInOrder(t *testing.T) {
	got := make(chan inbound, 64)
	_, ts, _ := newTestServer(t, transport.Config{}, echoHandler(got))
	c := dial(t, ts, "/some/mount/path")
	const n = 20
	for i := range n {
		typ := websocket.BinaryMessage // Credo sends binary
		if i%2 == 1 {
			typ = websocket.TextMessage
		}
		if err := c.WriteMessage(typ, fmt.Appendf(nil, "msg-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var first inbound
	for i := range n {
		in := recv(t, got, "message")
		if want := fmt.Sprintf("msg-%02d", i); in.data != want {
			t.Fatalf("message %d = %q, want %q", i, in.data, want)
		}
		if i == 0 {
			first = in
		} else if in.sessID != first.sessID {
			t.Fatalf("session id changed within a socket: %s → %s", first.sessID, in.sessID)
		}
		if in.kind != transport.KindWebSocket {
			t.Fatalf("kind = %q", in.kind)
		}
		if !in.ctxOK {
			t.Fatal("handler context cancelled or without deadline")
		}
	}
	if _, err := uuid.Parse(first.sessID); err != nil {
		t.Errorf("session id %q: %v", first.sessID, err)
	}
}

func TestWSSendTextFrames(t *testing.T) {
	cases := []struct {
		name    string
		msgType int
		msg     string
		want    []string
	}{
		{"binary in, one reply", websocket.BinaryMessage, "echo-a", []string{"echo:echo-a"}},
		{"text in, one reply", websocket.TextMessage, "echo-b", []string{"echo:echo-b"}},
		{"multiple sends", websocket.BinaryMessage, "echo3", []string{"echo:echo3:0", "echo:echo3:1", "echo:echo3:2"}},
	}
	got := make(chan inbound, 64)
	_, ts, _ := newTestServer(t, transport.Config{}, echoHandler(got))
	c := dial(t, ts, "/")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.WriteMessage(tc.msgType, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.want {
				_ = c.SetReadDeadline(time.Now().Add(eventually))
				typ, data, err := c.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				if typ != websocket.TextMessage {
					t.Errorf("frame type = %d, want text", typ)
				}
				if string(data) != want {
					t.Errorf("reply = %q, want %q", data, want)
				}
			}
		})
	}
}

func TestWSConcurrentSends(t *testing.T) {
	h := newHooks()
	cfg := transport.Config{}
	h.install(&cfg)
	got := make(chan inbound, 1)
	_, ts, _ := newTestServer(t, cfg, echoHandler(got))
	c := dial(t, ts, "/")
	sess := recv(t, h.openCh, "OnSocketOpen")

	const senders, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				// Payloads larger than a write buffer so interleaving would corrupt frames.
				msg := fmt.Sprintf("%02d-%03d-%s", g, i, strings.Repeat("x", 6000))
				if err := sess.Send(context.Background(), []byte(msg)); err != nil {
					errs <- err
				}
			}
		})
	}
	seen := make(map[string]bool)
	for range senders * each {
		_ = c.SetReadDeadline(time.Now().Add(eventually))
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.TextMessage || len(data) != 6007 || !strings.HasSuffix(string(data), "xxxx") {
			t.Fatalf("corrupt frame: type %d len %d", typ, len(data))
		}
		seen[string(data[:6])] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	if len(seen) != senders*each {
		t.Errorf("distinct messages = %d, want %d", len(seen), senders*each)
	}
}

func TestWSOversizeCloses1009(t *testing.T) {
	const limit = 1024
	h := newHooks()
	cfg := transport.Config{MaxMessageBytes: limit}
	h.install(&cfg)
	got := make(chan inbound, 4)
	_, ts, _ := newTestServer(t, cfg, echoHandler(got))
	c := dial(t, ts, "/")
	sess := recv(t, h.openCh, "OnSocketOpen")

	// Exactly at the limit is fine.
	atLimit := "echo" + strings.Repeat("y", limit-4)
	if err := c.WriteMessage(websocket.BinaryMessage, []byte(atLimit)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(eventually))
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "echo:"+atLimit {
		t.Fatalf("at-limit message: %v", err)
	}
	recv(t, got, "at-limit message")

	if err := c.WriteMessage(websocket.BinaryMessage, []byte(strings.Repeat("z", 4*limit))); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read after oversize = %v, want a close error", err)
	}
	if ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("close code = %d, want 1009", ce.Code)
	}
	if !strings.Contains(ce.Text, "1024") {
		t.Errorf("close reason %q does not state the limit", ce.Text)
	}
	waitClosed(t, sess.Done(), "server session after oversize")
	select {
	case in := <-got:
		t.Errorf("oversize message reached the handler (%d bytes)", len(in.data))
	default:
	}
}

func TestWSKeepalive(t *testing.T) {
	t.Run("silent client that answers pings stays open", func(t *testing.T) {
		// The pong must come back within one PingInterval; keep that margin
		// large enough for a loaded machine running -race.
		const ping = time.Second
		h := newHooks()
		cfg := transport.Config{PingInterval: ping}
		h.install(&cfg)
		_, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 4)))
		c := dial(t, ts, "/")
		sess := recv(t, h.openCh, "OnSocketOpen")

		var pings atomic.Int32
		defaultPing := c.PingHandler()
		c.SetPingHandler(func(data string) error {
			pings.Add(1)
			return defaultPing(data)
		})
		frames := make(chan string, 4)
		go func() { // the client only reads (gorilla answers pings while reading)
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					close(frames)
					return
				}
				frames <- string(data)
			}
		}()
		// Wait for many ping periods (count-based, not time-based).
		waitFor(t, "three pings", func() bool { return pings.Load() >= 3 })
		if isClosed(sess.Done()) {
			t.Fatal("server closed a client that answers pings")
		}
		if err := sess.Send(context.Background(), []byte("still here")); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if got := recv(t, frames, "frame"); got != "still here" {
			t.Fatalf("frame = %q", got)
		}
	})

	t.Run("client that never answers pings is closed", func(t *testing.T) {
		h := newHooks()
		cfg := transport.Config{PingInterval: 20 * time.Millisecond}
		h.install(&cfg)
		_, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 4)))
		c := dial(t, ts, "/")
		sess := recv(t, h.openCh, "OnSocketOpen")
		c.SetPingHandler(func(string) error { return nil }) // swallow pings, no pong
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		waitClosed(t, sess.Done(), "server session of a client that never pongs")
		recv(t, h.closeCh, "OnSocketClose")
	})
}

func TestWSDoneOnDisconnect(t *testing.T) {
	cases := []struct {
		name  string
		close func(c *websocket.Conn)
	}{
		{"abrupt TCP close", func(c *websocket.Conn) { _ = c.NetConn().Close() }},
		{"clean close frame", func(c *websocket.Conn) {
			_ = c.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
			// Wait for the server's close echo, as a well-behaved client does.
			_ = c.SetReadDeadline(time.Now().Add(eventually))
			_, _, _ = c.ReadMessage()
			_ = c.Close()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHooks()
			cfg := transport.Config{}
			h.install(&cfg)
			s, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 4)))
			c := dial(t, ts, "/")
			sess := recv(t, h.openCh, "OnSocketOpen")
			if n := s.OpenSockets(); n != 1 {
				t.Errorf("OpenSockets = %d, want 1", n)
			}
			if isClosed(sess.Done()) {
				t.Fatal("Done closed on an open socket")
			}
			tc.close(c)
			waitClosed(t, sess.Done(), "Done after disconnect")
			closedSess := recv(t, h.closeCh, "OnSocketClose")
			if closedSess.ID() != sess.ID() {
				t.Errorf("OnSocketClose session %s, opened %s", closedSess.ID(), sess.ID())
			}
			if n := s.OpenSockets(); n != 0 {
				t.Errorf("OpenSockets = %d after close, want 0", n)
			}
			if err := sess.Send(context.Background(), []byte("x")); !errors.Is(err, transport.ErrClosed) {
				t.Errorf("Send after close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestWSHooksOnceEach(t *testing.T) {
	h := newHooks()
	cfg := transport.Config{}
	h.install(&cfg)
	got := make(chan inbound, 4)
	s, ts, _ := newTestServer(t, cfg, echoHandler(got))
	c := dial(t, ts, "/")
	sess := recv(t, h.openCh, "OnSocketOpen")
	for _, m := range []string{"echo1", "echo2"} {
		if err := c.WriteMessage(websocket.BinaryMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Close()
	waitClosed(t, sess.Done(), "Done")
	recv(t, h.closeCh, "OnSocketClose")
	// Shutdown waits for every socket goroutine, so no late hook call can follow.
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if o, cl := h.opened.Load(), h.closed.Load(); o != 1 || cl != 1 {
		t.Errorf("OnSocketOpen ×%d, OnSocketClose ×%d; want 1 each", o, cl)
	}
}

func TestWSShutdownClosesWith1001(t *testing.T) {
	h := newHooks()
	cfg := transport.Config{}
	h.install(&cfg)
	s, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 4)))

	const n = 3
	codes := make(chan int, n)
	var sessions []transport.Session
	for range n {
		c := dial(t, ts, "/")
		sessions = append(sessions, recv(t, h.openCh, "OnSocketOpen"))
		go func() {
			for {
				_, _, err := c.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						codes <- ce.Code
					} else {
						codes <- -1
					}
					return
				}
			}
		}()
	}
	if got := s.OpenSockets(); got != n {
		t.Fatalf("OpenSockets = %d, want %d", got, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range n {
		if code := recv(t, codes, "client close"); code != websocket.CloseGoingAway {
			t.Errorf("client saw close code %d, want 1001", code)
		}
	}
	for _, sess := range sessions {
		if !isClosed(sess.Done()) {
			t.Error("Shutdown returned with a socket not done")
		}
	}
	if got := s.OpenSockets(); got != 0 {
		t.Errorf("OpenSockets = %d after Shutdown", got)
	}
	if cl := h.closed.Load(); cl != n {
		t.Errorf("OnSocketClose ×%d, want %d", cl, n)
	}
	// New sockets are refused.
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/"), nil)
	if err == nil {
		t.Fatal("dial after Shutdown succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Shutdown: %v", err)
	}
}

func TestWSHandlerFailuresKeepSocket(t *testing.T) {
	got := make(chan inbound, 8)
	_, ts, _ := newTestServer(t, transport.Config{}, echoHandler(got))
	c := dial(t, ts, "/")
	for _, bad := range []string{"panic", "fail"} {
		if err := c.WriteMessage(websocket.BinaryMessage, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.BinaryMessage, []byte("echo-after-"+bad)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(eventually))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("socket died after %s: %v", bad, err)
		}
		if want := "echo:echo-after-" + bad; string(data) != want {
			t.Fatalf("got %q, want %q", data, want)
		}
	}
}

func TestServeAndCancel(t *testing.T) {
	got := make(chan inbound, 4)
	s := transport.NewServer(transport.Config{Logger: newLogger(&syncBuffer{})}, echoHandler(got))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Post(base+"/didcomm", "application/didcomm-envelope-enc", strings.NewReader("echo-http"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST status %d", resp.StatusCode)
	}

	c, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/didcomm", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer c.Close()
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("echo-ws")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "echo:echo-ws" {
		t.Fatalf("ws echo: %q %v", data, err)
	}

	cancel()
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("client read after cancel = %v, want close 1001", err)
	}
	if err := recv(t, served, "Serve return"); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, err := http.Post(base, "", strings.NewReader("x")); err == nil {
		t.Error("listener still accepting after Serve returned")
	}
}

func TestWSHookPanicAndCancelledSend(t *testing.T) {
	closed := make(chan struct{})
	sessCh := make(chan transport.Session, 1)
	cfg := transport.Config{
		OnSocketOpen:  func(s transport.Session) { sessCh <- s; panic("open hook exploded") },
		OnSocketClose: func(transport.Session) { close(closed); panic("close hook exploded") },
	}
	_, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 4)))
	c := dial(t, ts, "/")
	sess := recv(t, sessCh, "OnSocketOpen")
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("echo-x")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "echo:echo-x" {
		t.Fatalf("after a panicking open hook: %q %v", data, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sess.Send(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v", err)
	}
	_ = c.Close()
	waitClosed(t, closed, "OnSocketClose")
}

// A message the handler refuses as the peer's fault (a 4xx error) is logged
// at Info, so that a peer sending garbage cannot flood the log with
// warnings; a failure of ours (5xx, or no status) at Warn. The socket stays.
func TestWSHandlerErrorLogLevel(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"peer's fault", statusErr(http.StatusBadRequest), "level=INFO"},
		{"unknown recipient", statusErr(http.StatusNotFound), "level=INFO"},
		{"ours", statusErr(http.StatusServiceUnavailable), "level=WARN"},
		{"no status", errors.New("database down"), "level=WARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handled := make(chan struct{}, 2)
			_, ts, logs := newTestServer(t, transport.Config{}, handlerFunc(func(ctx context.Context, packed []byte, s transport.Session) error {
				defer func() { handled <- struct{}{} }()
				if string(packed) == "fine" {
					return nil
				}
				return tc.err
			}))
			c := dial(t, ts, "/")
			for _, m := range []string{"garbage", "fine"} {
				if err := c.WriteMessage(websocket.BinaryMessage, []byte(m)); err != nil {
					t.Fatal(err)
				}
				select {
				case <-handled:
				case <-time.After(eventually):
					t.Fatalf("%s: not handled", m)
				}
			}
			var line string
			for l := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(l, "websocket handler error") {
					line = l
				}
			}
			if !strings.Contains(line, tc.want) || !strings.Contains(line, tc.err.Error()) {
				t.Errorf("log line %q, want %s with the error", line, tc.want)
			}
		})
	}
}
