package transport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/transport"
)

// limitLog records OnLimit calls.
type limitLog struct {
	mu    sync.Mutex
	names []string
}

func (l *limitLog) hook(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

func (l *limitLog) count(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.names {
		if v == name {
			n++
		}
	}
	return n
}

func post(t *testing.T, url, body string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/didcomm-envelope-enc")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// MaxSockets 2: the third upgrade gets 503 with Retry-After, and a slot
// freed by a closed socket can be taken again.
func TestMaxSockets(t *testing.T) {
	var limits limitLog
	h := newHooks()
	cfg := transport.Config{MaxSockets: 2, OnLimit: limits.hook}
	h.install(&cfg)
	srv, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 16)))

	first := dial(t, ts, "/")
	firstSess := recv(t, h.openCh, "first OnSocketOpen")
	dial(t, ts, "/")
	recv(t, h.openCh, "second OnSocketOpen")

	_, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/"), nil)
	if err == nil {
		t.Fatal("third upgrade succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third upgrade: response %v, err %v; want 503", resp, err)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Error("503 without Retry-After")
	}
	_ = resp.Body.Close()
	if got := srv.OpenSockets(); got != 2 {
		t.Errorf("OpenSockets = %d, want 2", got)
	}
	if n := limits.count(transport.LimitSockets); n != 1 {
		t.Errorf("OnLimit(%q) called %d times, want 1", transport.LimitSockets, n)
	}

	// Plain POSTs are not sockets: still served.
	if resp := post(t, ts.URL, "none", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST at the socket limit = %d, want 202", resp.StatusCode)
	}

	_ = first.Close()
	waitClosed(t, firstSess.Done(), "first socket")
	waitFor(t, "a slot to free up", func() bool { return srv.OpenSockets() == 1 })
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/"), nil)
	if err != nil {
		t.Fatalf("upgrade after a socket closed: %v (%v)", err, resp)
	}
	_ = resp.Body.Close()
	_ = c.Close()
}

// Rate 5/s, burst 5: five POSTs at once pass, the sixth gets 429 with
// Retry-After and never reaches the handler.
func TestIPRateHTTP(t *testing.T) {
	var (
		limits limitLog
		calls  atomic.Int32
	)
	_, ts, _ := newTestServer(t, transport.Config{IPRate: 5, IPBurst: 5, OnLimit: limits.hook}, behaviourHandler(&calls))
	for i := range 5 {
		if resp := post(t, ts.URL, "none", nil); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("request %d = %d, want 202", i+1, resp.StatusCode)
		}
	}
	resp := post(t, ts.URL, "none", nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th request = %d, want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1 (a token is back within 200ms)", ra)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("handler called %d times, want 5", n)
	}
	if n := limits.count(transport.LimitIPRate); n != 1 {
		t.Errorf("OnLimit(%q) called %d times, want 1", transport.LimitIPRate, n)
	}
	// Other requests (invitation, health) are not rate limited.
	for range 10 {
		r, err := http.Get(ts.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		_ = r.Body.Close()
		if r.StatusCode == http.StatusTooManyRequests {
			t.Fatal("a GET that is not a DIDComm request was rate limited")
		}
	}
	// A token comes back after 1/rate.
	time.Sleep(250 * time.Millisecond)
	if resp := post(t, ts.URL, "none", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("request after 250ms = %d, want 202", resp.StatusCode)
	}
}

// X-Forwarded-For picks the bucket only when the peer is a trusted proxy.
func TestIPRateForwardedFor(t *testing.T) {
	const rate, burst = 1, 2
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }

	t.Run("untrusted peer", func(t *testing.T) {
		var calls atomic.Int32
		_, ts, _ := newTestServer(t, transport.Config{IPRate: rate, IPBurst: burst}, behaviourHandler(&calls))
		codes := []int{}
		for _, ip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
			codes = append(codes, post(t, ts.URL, "none", xff(ip)).StatusCode)
		}
		if codes[2] != http.StatusTooManyRequests {
			t.Errorf("statuses %v: a client rotating X-Forwarded-For escaped the limit", codes)
		}
	})

	t.Run("trusted proxy", func(t *testing.T) {
		var calls atomic.Int32
		cfg := transport.Config{IPRate: rate, IPBurst: burst,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}}
		_, ts, _ := newTestServer(t, cfg, behaviourHandler(&calls))
		status := func(v string) int { return post(t, ts.URL, "none", xff(v)).StatusCode }
		// Client A through two proxies (10.0.0.5 is trusted: skipped).
		for i := range burst {
			if st := status("198.51.100.7, 10.0.0.5"); st != http.StatusAccepted {
				t.Fatalf("client A request %d = %d", i+1, st)
			}
		}
		if st := status("198.51.100.7, 10.0.0.5"); st != http.StatusTooManyRequests {
			t.Errorf("client A over its burst = %d, want 429", st)
		}
		// A forged left-most entry does not give A a new bucket.
		if st := status("203.0.113.99, 198.51.100.7"); st != http.StatusTooManyRequests {
			t.Errorf("client A with a forged entry = %d, want 429", st)
		}
		// Client B has its own bucket.
		if st := status("198.51.100.8"); st != http.StatusAccepted {
			t.Errorf("client B = %d, want 202", st)
		}
		// IPv6 clients are counted by /64.
		for i := range burst {
			if st := status("2001:db8:1:2::" + string(rune('a'+i))); st != http.StatusAccepted {
				t.Fatalf("IPv6 request %d = %d", i+1, st)
			}
		}
		if st := status("2001:db8:1:2:ffff::1"); st != http.StatusTooManyRequests {
			t.Errorf("another address of the same /64 = %d, want 429", st)
		}
	})
}

// A handler error with status 429 gets Retry-After from RetryAfter().
func TestHandler429RetryAfter(t *testing.T) {
	h := handlerFunc(func(context.Context, []byte, transport.Session) error {
		return retryErr{3500 * time.Millisecond}
	})
	_, ts, _ := newTestServer(t, transport.Config{}, h)
	resp := post(t, ts.URL, "x", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "4" {
		t.Errorf("got %d, Retry-After %q; want 429, 4", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

type retryErr struct{ d time.Duration }

func (e retryErr) Error() string             { return "slow down" }
func (e retryErr) HTTPStatus() int           { return http.StatusTooManyRequests }
func (e retryErr) RetryAfter() time.Duration { return e.d }

// Every WebSocket message counts against the client's bucket; a client far
// over it (more than IPBurst beyond the rate) is closed with 1008, and its
// next upgrade gets 429.
func TestIPRateWebSocket(t *testing.T) {
	const burst = 5
	var limits limitLog
	got := make(chan inbound, 64)
	h := newHooks()
	cfg := transport.Config{IPRate: 1, IPBurst: burst, OnLimit: limits.hook}
	h.install(&cfg)
	_, ts, _ := newTestServer(t, cfg, echoHandler(got))
	c := dial(t, ts, "/") // the upgrade takes one token
	sess := recv(t, h.openCh, "OnSocketOpen")

	start := time.Now()
	for range 20 {
		if err := c.WriteMessage(websocket.BinaryMessage, []byte("msg")); err != nil {
			break // the server may already have closed
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(eventually))
	var ce *websocket.CloseError
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		if !errors.As(err, &ce) {
			t.Fatalf("read = %v, want a close frame", err)
		}
		break
	}
	if ce.Code != websocket.ClosePolicyViolation || ce.Text != "rate limit exceeded" {
		t.Errorf("close = %d %q, want 1008 \"rate limit exceeded\"", ce.Code, ce.Text)
	}
	waitClosed(t, sess.Done(), "server session")
	handled := len(got)
	// 4 tokens left after the upgrade, then 5 of debt; one more if a token
	// came back while the test ran.
	refilled := int(time.Since(start).Seconds())
	if handled < 2*burst-1 || handled > 2*burst-1+refilled {
		t.Errorf("%d messages handled before the close, want %d (+%d refilled)", handled, 2*burst-1, refilled)
	}
	if n := limits.count(transport.LimitIPRate); n != 1 {
		t.Errorf("OnLimit(%q) called %d times, want 1", transport.LimitIPRate, n)
	}
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("upgrade while in debt: %v, %v; want 429", resp, err)
	}
}

// MaxMessageBytes is reported to OnLimit on both transports.
func TestMessageSizeOnLimit(t *testing.T) {
	var limits limitLog
	h := newHooks()
	cfg := transport.Config{MaxMessageBytes: 64, OnLimit: limits.hook}
	h.install(&cfg)
	_, ts, _ := newTestServer(t, cfg, echoHandler(make(chan inbound, 4)))
	if resp := post(t, ts.URL, strings.Repeat("x", 65), nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST = %d, want 413", resp.StatusCode)
	}
	c := dial(t, ts, "/")
	sess := recv(t, h.openCh, "OnSocketOpen")
	if err := c.WriteMessage(websocket.BinaryMessage, []byte(strings.Repeat("x", 65))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(eventually))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("read after oversize = %v, want close 1009", err)
	}
	waitClosed(t, sess.Done(), "oversize socket")
	if n := limits.count(transport.LimitMessageSize); n != 2 {
		t.Errorf("OnLimit(%q) called %d times, want 2", transport.LimitMessageSize, n)
	}
}
