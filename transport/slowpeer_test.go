package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/transport"
)

// Tests for slow and lying peers: bodies that announce more than they send,
// WebSocket messages that never finish, and wallets that read slowly.

// rawPost opens a TCP connection and sends the head of a DIDComm POST that
// announces contentLength bytes, followed by the first bytes of its body.
func rawPost(t *testing.T, ts *httptest.Server, contentLength int, body []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: mediator\r\nContent-Type: application/didcomm-envelope-enc\r\nContent-Length: %d\r\n\r\n", contentLength)
	if _, err := c.Write(append([]byte(head), body...)); err != nil {
		t.Fatal(err)
	}
	return c
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Many connections announcing a maximum-size body and sending one byte must
// not make the server allocate what they announced (it used to preallocate
// Content-Length: 100 × 5 MiB here).
func TestHTTPAnnouncedLengthIsNotAllocated(t *testing.T) {
	const (
		conns     = 100
		announced = 5 << 20
	)
	var calls atomic.Int32
	_, ts, _ := newTestServer(t, transport.Config{
		MaxMessageBytes:    announced,
		MessageReadTimeout: 2 * time.Second,
	}, behaviourHandler(&calls))

	before := heapAlloc()
	goroutines := runtime.NumGoroutine()
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = rawPost(t, ts, announced, []byte("x"))
	}
	// Every connection has a server goroutine (blocked reading its body).
	waitFor(t, "server goroutines for every connection", func() bool {
		return runtime.NumGoroutine() >= goroutines+conns
	})
	time.Sleep(100 * time.Millisecond) // let them reach the body read
	grown := int64(heapAlloc()) - int64(before)
	t.Logf("heap growth with %d connections announcing %d bytes: %d KiB", conns, announced, grown>>10)
	if limit := int64(16 << 20); grown > limit { // the old preallocation: 500 MiB
		t.Errorf("heap grew by %d bytes for %d stalled bodies, want < %d", grown, conns, limit)
	}

	// They were stuck in the body read: MessageReadTimeout answers them 400.
	for i, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(eventually))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("conn %d: status %d, want 400 after MessageReadTimeout", i, resp.StatusCode)
		}
		if !resp.Close {
			t.Errorf("conn %d: connection kept after an unread body", i)
		}
	}
	if calls.Load() != 0 {
		t.Errorf("handler called %d times", calls.Load())
	}
}

// Large bodies count against MaxInFlightBytes; when it is spent a large
// POST gets 503 with Retry-After while small ones still go through, and
// the budget comes back when the hog goes.
func TestHTTPInFlightBudget(t *testing.T) {
	lim := &limitLog{}
	accept := handlerFunc(func(context.Context, []byte, transport.Session) error { return nil }) // 202
	s, ts, _ := newTestServer(t, transport.Config{
		MaxMessageBytes:  1 << 20,
		MaxInFlightBytes: 512 << 10,
		OnLimit:          lim.hook,
	}, accept)

	// The hog announces 1 MiB, sends 400 KiB and stalls: its buffer has
	// grown to 512 KiB, 448 KiB of it from the budget.
	hog := rawPost(t, ts, 1<<20, bytes.Repeat([]byte("h"), 400<<10))
	waitFor(t, "the hog's buffer grown", func() bool { return transport.InFlightBytes(s) == 448<<10 })

	large := strings.Repeat("l", 200<<10) // needs 192 KiB of the budget
	var resp *http.Response
	waitFor(t, "a large POST refused while the hog holds the budget", func() bool {
		resp = post(t, ts.URL, large, nil)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if n := lim.count(transport.LimitInFlightBytes); n == 0 {
		t.Errorf("OnLimit(%q) not called", transport.LimitInFlightBytes)
	}
	// Messages within the free 64 KiB are not refused.
	if resp := post(t, ts.URL, strings.Repeat("s", 60<<10), nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("small POST during the hog: %d, want 202", resp.StatusCode)
	}

	// Refused and finished messages gave their share back.
	waitFor(t, "only the hog's share in use", func() bool { return transport.InFlightBytes(s) == 448<<10 })

	_ = hog.Close()
	waitFor(t, "the large POST accepted once the hog is gone", func() bool {
		return post(t, ts.URL, large, nil).StatusCode == http.StatusAccepted
	})
	waitFor(t, "nothing in use when idle", func() bool { return transport.InFlightBytes(s) == 0 })
}

// A WebSocket message started but never finished is cut off after
// MessageReadTimeout, although the client keeps sending fragments and
// answering pings (each used to push the read deadline back).
func TestWSUnfinishedMessageTimesOut(t *testing.T) {
	const msgTimeout = 500 * time.Millisecond
	h := newHooks()
	cfg := transport.Config{PingInterval: 50 * time.Millisecond, MessageReadTimeout: msgTimeout}
	h.install(&cfg)
	got := make(chan inbound, 1)
	_, ts, _ := newTestServer(t, cfg, echoHandler(got))

	// A small write buffer: every 512 bytes written go out as a fragment.
	d := websocket.Dialer{WriteBufferSize: 512}
	c, resp, err := d.Dial(wsURL(ts, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	sess := recv(t, h.openCh, "OnSocketOpen")

	var pings atomic.Int32
	defaultPing := c.PingHandler()
	c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return defaultPing(data) // answers with a pong
	})
	closeErr := make(chan error, 1)
	go func() { // reading makes gorilla answer pings
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				closeErr <- err
				return
			}
		}
	}()

	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one endless message, a fragment every 20ms
		defer wg.Done()
		w, err := c.NextWriter(websocket.BinaryMessage)
		if err != nil {
			return
		}
		chunk := bytes.Repeat([]byte("f"), 512)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	waitClosed(t, sess.Done(), "server session of an unfinished message")
	if elapsed := time.Since(start); elapsed < msgTimeout {
		t.Errorf("closed after %v, before MessageReadTimeout %v", elapsed, msgTimeout)
	}
	if pings.Load() < 3 {
		t.Errorf("client saw %d pings: the keepalive was not exercised", pings.Load())
	}
	var ce *websocket.CloseError
	if err := recv(t, closeErr, "client close"); !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("client read error = %v, want close 1008", err)
	}
	select {
	case in := <-got:
		t.Errorf("unfinished message reached the handler (%d bytes)", len(in.data))
	default:
	}
}

// A WebSocket message that would overspend MaxInFlightBytes closes the
// socket with 1013 (try again later); a smaller one is handled.
func TestWSInFlightBudget(t *testing.T) {
	lim := &limitLog{}
	cfg := transport.Config{MaxInFlightBytes: 64 << 10, OnLimit: lim.hook}
	got := make(chan inbound, 1)
	_, ts, _ := newTestServer(t, cfg, echoHandler(got))
	c := dial(t, ts, "/")

	// 100 KiB: a 128 KiB buffer, 64 KiB of it from the budget.
	if err := c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte("a"), 100<<10)); err != nil {
		t.Fatal(err)
	}
	if in := recv(t, got, "100 KiB message"); len(in.data) != 100<<10 {
		t.Fatalf("handler got %d bytes", len(in.data))
	}
	// 300 KiB: would need a 512 KiB buffer.
	if err := c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte("b"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(eventually))
	var ce *websocket.CloseError
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
			t.Fatalf("read = %v, want close 1013", err)
		}
		break
	}
	if lim.count(transport.LimitInFlightBytes) != 1 {
		t.Errorf("OnLimit(%q) calls = %d, want 1", transport.LimitInFlightBytes, lim.count(transport.LimitInFlightBytes))
	}
}

// throttledConn reads at most rate bytes per second, in small pieces.
type throttledConn struct {
	net.Conn
	rate  float64 // bytes per second
	start time.Time
	total int
}

func (c *throttledConn) Read(p []byte) (int, error) {
	if c.start.IsZero() {
		c.start = time.Now()
	}
	if len(p) > 4<<10 {
		p = p[:4<<10]
	}
	n, err := c.Conn.Read(p)
	c.total += n
	due := c.start.Add(time.Duration(float64(c.total) / c.rate * float64(time.Second)))
	time.Sleep(time.Until(due))
	return n, err
}

// dialThrottled connects with a small receive buffer and reads at rate.
func dialThrottled(rate float64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
		return &throttledConn{Conn: c, rate: rate}, nil
	}
}

// smallSendBufferListener keeps the kernel from absorbing a large write,
// so that the server really waits for a slow reader.
type smallSendBufferListener struct{ net.Listener }

func (l smallSendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

func newSlowLinkServer(t *testing.T, cfg transport.Config, h transport.Handler) (*transport.Server, *httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = newLogger(logs)
	s := transport.NewServer(cfg, h)
	ts := httptest.NewUnstartedServer(s)
	ts.Listener = smallSendBufferListener{ts.Listener}
	ts.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), eventually)
		defer cancel()
		_ = s.Shutdown(ctx)
		ts.Close()
	})
	return s, ts, logs
}

// Slow-reader parameters: a 512 KiB delivery read at 256 KiB/s takes about
// 2s, far over WriteTimeout; WriteTimeout + size/MinWriteRate is 4.3s.
const (
	slowPayload      = 512 << 10
	slowReadRate     = 256 << 10
	slowWriteTimeout = 300 * time.Millisecond
	slowMinWriteRate = 128 << 10
)

// A wallet reading slowly receives a large frame whole: the write deadline
// grows with the frame, and pings due meanwhile neither break the write nor
// count the time as silence (PingInterval is far shorter than the write).
func TestWSSlowReaderGetsLargeFrame(t *testing.T) {
	h := newHooks()
	cfg := transport.Config{
		WriteTimeout: slowWriteTimeout,
		MinWriteRate: slowMinWriteRate,
		PingInterval: 250 * time.Millisecond,
	}
	h.install(&cfg)
	_, ts, _ := newSlowLinkServer(t, cfg, echoHandler(make(chan inbound, 1)))

	d := websocket.Dialer{NetDialContext: dialThrottled(slowReadRate)}
	c, resp, err := d.Dial(wsURL(ts, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	sess := recv(t, h.openCh, "OnSocketOpen")

	frames := make(chan []byte, 2)
	go func() {
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				close(frames)
				return
			}
			frames <- data
		}
	}()

	payload := bytes.Repeat([]byte("0123456789abcdef"), slowPayload/16)
	start := time.Now()
	if err := sess.Send(context.Background(), payload); err != nil {
		t.Fatalf("Send of %d bytes to a slow reader: %v", len(payload), err)
	}
	took := time.Since(start)
	t.Logf("Send of %d KiB took %v", len(payload)>>10, took)
	if took < 2*slowWriteTimeout {
		t.Errorf("Send took %v: the kernel absorbed the frame, the test proves nothing", took)
	}
	if got := recv(t, frames, "large frame"); !bytes.Equal(got, payload) {
		t.Fatalf("frame of %d bytes, want the %d sent", len(got), len(payload))
	}

	// The socket survived its keepalive and still works.
	time.Sleep(3 * cfg.PingInterval)
	if isClosed(sess.Done()) {
		t.Fatal("socket closed after the slow delivery")
	}
	if err := sess.Send(context.Background(), []byte("after")); err != nil {
		t.Fatalf("Send after: %v", err)
	}
	if got := recv(t, frames, "frame after"); string(got) != "after" {
		t.Fatalf("frame = %q", got)
	}
}

// The same for an HTTP reply.
func TestHTTPSlowReaderGetsLargeReply(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), slowPayload/16)
	sent := make(chan error, 1)
	var took atomic.Int64
	h := handlerFunc(func(ctx context.Context, _ []byte, s transport.Session) error {
		start := time.Now()
		err := s.Send(ctx, payload)
		took.Store(int64(time.Since(start)))
		sent <- err
		return err
	})
	_, ts, _ := newSlowLinkServer(t, transport.Config{
		WriteTimeout: slowWriteTimeout,
		MinWriteRate: slowMinWriteRate,
	}, h)

	client := &http.Client{Transport: &http.Transport{DialContext: dialThrottled(slowReadRate), DisableCompression: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(ts.URL, "application/didcomm-envelope-enc", strings.NewReader("request"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, payload) {
		t.Fatalf("status %d, %d bytes; want 200 and the %d sent", resp.StatusCode, len(body), len(payload))
	}
	if err := recv(t, sent, "Send result"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	t.Logf("Send of %d KiB took %v", len(payload)>>10, time.Duration(took.Load()))
	if d := time.Duration(took.Load()); d < 2*slowWriteTimeout {
		t.Errorf("Send took %v: the kernel absorbed the reply, the test proves nothing", d)
	}
}

// A reply that cannot be written within its deadline fails, and the
// handler error that follows is logged at WARN although the status was 200.
func TestHTTPHandlerErrorAfterReplyIsWarned(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), slowPayload)
	sent := make(chan error, 1)
	h := handlerFunc(func(ctx context.Context, _ []byte, s transport.Session) error {
		err := s.Send(ctx, payload)
		sent <- err
		return err
	})
	_, ts, logs := newSlowLinkServer(t, transport.Config{WriteTimeout: 100 * time.Millisecond, MinWriteRate: 4 << 20}, h)

	// A client that never reads its reply, with a small receive buffer.
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	const req = "request"
	if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: mediator\r\nContent-Length: %d\r\n\r\n%s", len(req), req); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, sent, "Send result"); err == nil {
		t.Fatal("Send to a client that does not read succeeded")
	}
	waitFor(t, "the request logged at WARN", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "didcomm http request") {
				return strings.Contains(line, "level=WARN") && strings.Contains(line, "status=200") &&
					strings.Contains(line, "reply_err=")
			}
		}
		return false
	})
}
