package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wait is the generous deadline for anything the tests wait on.
const wait = 10 * time.Second

type call struct {
	header http.Header
	body   []byte
	fields map[string]any
}

// hook is a webhook receiver. status, when set, picks the answer to the n-th
// request (1-based); block, when set, runs before answering.
type hook struct {
	t      *testing.T
	srv    *httptest.Server
	calls  chan call
	n      atomic.Int64
	status func(n int64) int
	block  func(r *http.Request, n int64)
}

func newHook(t *testing.T, status func(n int64) int) *hook {
	t.Helper()
	h := &hook{t: t, calls: make(chan call, 1000), status: status}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := h.n.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		c := call{header: r.Header.Clone(), body: body}
		if err := json.Unmarshal(body, &c.fields); err != nil {
			t.Errorf("body is not JSON: %v: %s", err, body)
		}
		if r.Method != http.MethodPost {
			t.Errorf("method = %s, want POST", r.Method)
		}
		h.calls <- c
		if h.block != nil {
			h.block(r, n)
		}
		code := http.StatusOK
		if h.status != nil {
			code = h.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) next() call {
	h.t.Helper()
	select {
	case c := <-h.calls:
		return c
	case <-time.After(wait):
		h.t.Fatal("timed out waiting for a webhook call")
		return call{}
	}
}

// drain returns the calls received so far without waiting.
func (h *hook) drain() []call {
	var out []call
	for {
		select {
		case c := <-h.calls:
			out = append(out, c)
		default:
			return out
		}
	}
}

// outcomes counts OnResult calls.
type outcomes struct {
	mu sync.Mutex
	m  map[string]int
}

func (o *outcomes) record(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]int{}
	}
	o.m[s]++
}

func (o *outcomes) get(s string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[s]
}

func (o *outcomes) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for o.get(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d %q outcomes (have %d)", n, s, o.get(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestWebhook builds a started Webhook with tiny backoff; Close is
// registered as cleanup (a second Close is harmless).
func newTestWebhook(t *testing.T, cfg WebhookConfig) (*Webhook, *outcomes, *syncBuffer) {
	t.Helper()
	o := &outcomes{}
	logs := &syncBuffer{}
	if cfg.OnResult == nil {
		cfg.OnResult = o.record
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.backoffBase = time.Millisecond
	w.backoffMax = 4 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = w.Close(ctx)
	})
	return w, o, logs
}

func closeWebhook(t *testing.T, w *Webhook) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func ev(conn, msg string) Event {
	return Event{ConnectionID: conn, MessageID: msg, RecipientKey: "key-" + conn, QueuedAt: time.Now()}
}

func TestSingleEventSigned(t *testing.T) {
	h := newHook(t, nil)
	secret := []byte("s3cret-hmac-key")
	w, o, logs := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Secret: secret, Coalesce: 20 * time.Millisecond})
	w.Start(t.Context())

	at := time.Date(2024, 5, 1, 12, 0, 0, 123000000, time.FixedZone("CEST", 2*3600))
	w.MessageQueued(t.Context(), Event{
		ConnectionID: "conn-1",
		MessageID:    "msg-1",
		RecipientKey: "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K",
		QueuedAt:     at,
	})
	c := h.next()

	want := map[string]any{
		"type":          "message-queued",
		"connection_id": "conn-1",
		"message_id":    "msg-1",
		"recipient_key": "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K",
		"queued_at":     "2024-05-01T10:00:00.123Z",
		"coalesced":     float64(1),
	}
	if len(c.fields) != len(want) {
		t.Errorf("fields = %v, want exactly %v", c.fields, want)
	}
	for k, v := range want {
		if c.fields[k] != v {
			t.Errorf("%s = %#v, want %#v", k, c.fields[k], v)
		}
	}
	if got, err := time.Parse(time.RFC3339, c.fields["queued_at"].(string)); err != nil || !got.Equal(at) {
		t.Errorf("queued_at parses to %v, %v; want %v", got, err, at)
	}
	if ct := c.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if ua := c.header.Get("User-Agent"); ua != "didcomm-mediator" {
		t.Errorf("User-Agent = %q", ua)
	}
	if c.header.Get("X-Mediator-Delivery") == "" {
		t.Error("no X-Mediator-Delivery header")
	}

	// Verify the signature the way a receiver would.
	ts := c.header.Get("X-Mediator-Timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		t.Fatalf("X-Mediator-Timestamp = %q: %v", ts, err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + string(c.body)))
	wantSig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	gotSig := c.header.Get("X-Mediator-Signature")
	if !hmac.Equal([]byte(gotSig), []byte(wantSig)) {
		t.Errorf("X-Mediator-Signature = %q, want %q", gotSig, wantSig)
	}
	if Sign(secret, ts, c.body) != wantSig {
		t.Error("Sign disagrees with the documented scheme")
	}

	o.waitFor(t, OutcomeDelivered, 1)
	closeWebhook(t, w)
	if extra := h.drain(); len(extra) != 0 {
		t.Errorf("%d extra calls", len(extra))
	}
	if strings.Contains(logs.String(), string(secret)) {
		t.Error("secret appears in logs")
	}
}

func TestNoSignatureWithoutSecret(t *testing.T) {
	h := newHook(t, nil)
	w, _, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("c", "m"))
	c := h.next()
	for _, k := range []string{"X-Mediator-Signature", "X-Mediator-Timestamp"} {
		if v, ok := c.header[k]; ok {
			t.Errorf("%s present without a secret: %q", k, v)
		}
	}
}

func TestBurstCoalescesToOneCall(t *testing.T) {
	h := newHook(t, nil)
	// A window that cannot end during the test: Close ends it, so the count
	// does not depend on timing.
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Hour})
	w.Start(t.Context())
	for i := 1; i <= 50; i++ {
		w.MessageQueued(t.Context(), ev("conn-A", fmt.Sprintf("msg-%d", i)))
	}
	closeWebhook(t, w)
	calls := h.drain()
	if len(calls) != 1 {
		t.Fatalf("got %d calls, want 1", len(calls))
	}
	if got := calls[0].fields["coalesced"]; got != float64(50) {
		t.Errorf("coalesced = %v, want 50", got)
	}
	if got := calls[0].fields["message_id"]; got != "msg-50" {
		t.Errorf("message_id = %v, want msg-50", got)
	}
	if o.get(OutcomeDelivered) != 1 {
		t.Errorf("delivered = %d, want 1", o.get(OutcomeDelivered))
	}
}

func TestTwoConnectionsTwoCalls(t *testing.T) {
	h := newHook(t, nil)
	w, _, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Hour})
	w.Start(t.Context())
	for i := 1; i <= 3; i++ {
		w.MessageQueued(t.Context(), ev("conn-A", fmt.Sprintf("a-%d", i)))
		w.MessageQueued(t.Context(), ev("conn-B", fmt.Sprintf("b-%d", i)))
	}
	w.MessageQueued(t.Context(), ev("conn-B", "b-4"))
	closeWebhook(t, w)

	got := map[string]call{}
	for _, c := range h.drain() {
		got[c.fields["connection_id"].(string)] = c
	}
	if len(got) != 2 || int(h.n.Load()) != 2 {
		t.Fatalf("calls for %v (%d requests), want one each for conn-A and conn-B", got, h.n.Load())
	}
	if c := got["conn-A"]; c.fields["coalesced"] != float64(3) || c.fields["message_id"] != "a-3" {
		t.Errorf("conn-A call = %v", c.fields)
	}
	if c := got["conn-B"]; c.fields["coalesced"] != float64(4) || c.fields["message_id"] != "b-4" {
		t.Errorf("conn-B call = %v", c.fields)
	}
}

func TestWindowEndsByItself(t *testing.T) {
	h := newHook(t, nil)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("A", "a1"))
	w.MessageQueued(t.Context(), ev("B", "b1"))
	seen := map[string]bool{}
	for range 2 {
		seen[h.next().fields["connection_id"].(string)] = true
	}
	if !seen["A"] || !seen["B"] {
		t.Errorf("calls for %v, want A and B", seen)
	}
	o.waitFor(t, OutcomeDelivered, 2)
}

func TestEventsDuringInFlightCallAreKept(t *testing.T) {
	h := newHook(t, nil)
	release := make(chan struct{})
	h.block = func(_ *http.Request, n int64) {
		if n == 1 {
			<-release
		}
	}
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())

	w.MessageQueued(t.Context(), ev("conn", "m1"))
	first := h.next() // the first call is now in flight and held
	if first.fields["message_id"] != "m1" {
		t.Fatalf("first call = %v", first.fields)
	}
	w.MessageQueued(t.Context(), ev("conn", "m2"))
	w.MessageQueued(t.Context(), ev("conn", "m3"))
	close(release)

	second := h.next()
	if second.fields["message_id"] != "m3" || second.fields["coalesced"] != float64(2) {
		t.Errorf("second call = %v, want m3 coalesced 2", second.fields)
	}
	o.waitFor(t, OutcomeDelivered, 2)
}

func TestDeviceToken(t *testing.T) {
	const token = "fcm-token-very-private"
	h := newHook(t, nil)
	var asked atomic.Value
	w, _, logs := newTestWebhook(t, WebhookConfig{
		URL:      h.srv.URL,
		Coalesce: 10 * time.Millisecond,
		Lookup: func(ctx context.Context, connectionID string) (string, string, bool, error) {
			asked.Store(connectionID)
			return token, "android", true, nil
		},
	})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn-7", "m"))
	c := h.next()
	if c.fields["device_token"] != token || c.fields["device_platform"] != "android" {
		t.Errorf("device fields = %v / %v", c.fields["device_token"], c.fields["device_platform"])
	}
	if asked.Load() != "conn-7" {
		t.Errorf("lookup asked for %v", asked.Load())
	}
	closeWebhook(t, w)
	if strings.Contains(logs.String(), token) {
		t.Error("device token appears in logs")
	}
	if !strings.Contains(logs.String(), `"device_token_present":true`) {
		t.Errorf("logs do not say a token was present:\n%s", logs)
	}
}

func TestDeviceNotRegistered(t *testing.T) {
	h := newHook(t, nil)
	w, _, _ := newTestWebhook(t, WebhookConfig{
		URL:      h.srv.URL,
		Coalesce: 10 * time.Millisecond,
		Lookup: func(context.Context, string) (string, string, bool, error) {
			return "", "", false, nil
		},
	})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	c := h.next()
	for _, k := range []string{"device_token", "device_platform"} {
		if _, ok := c.fields[k]; ok {
			t.Errorf("%s present for an unregistered device", k)
		}
	}
}

func TestDeviceLookupError(t *testing.T) {
	h := newHook(t, nil)
	w, o, logs := newTestWebhook(t, WebhookConfig{
		URL:      h.srv.URL,
		Coalesce: 10 * time.Millisecond,
		Lookup: func(context.Context, string) (string, string, bool, error) {
			return "", "", false, errors.New("db is down")
		},
	})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	c := h.next()
	for _, k := range []string{"device_token", "device_platform"} {
		if _, ok := c.fields[k]; ok {
			t.Errorf("%s present after a lookup error", k)
		}
	}
	o.waitFor(t, OutcomeDelivered, 1)
	if s := logs.String(); !strings.Contains(s, "device lookup failed") || !strings.Contains(s, "db is down") {
		t.Errorf("lookup error not logged:\n%s", s)
	}
}

func TestRetryThenDelivered(t *testing.T) {
	h := newHook(t, func(n int64) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	o.waitFor(t, OutcomeDelivered, 1)
	closeWebhook(t, w)

	calls := h.drain()
	if len(calls) != 3 {
		t.Fatalf("%d attempts, want 3", len(calls))
	}
	if o.get(OutcomeRetry) != 2 || o.get(OutcomeFailed) != 0 {
		t.Errorf("outcomes = %v", o.m)
	}
	id := calls[0].header.Get("X-Mediator-Delivery")
	for _, c := range calls {
		if !bytes.Equal(c.body, calls[0].body) || c.header.Get("X-Mediator-Delivery") != id {
			t.Error("retries differ in body or delivery id")
		}
	}
}

func TestRetryOn429(t *testing.T) {
	h := newHook(t, func(n int64) int {
		if n == 1 {
			return http.StatusTooManyRequests
		}
		return http.StatusNoContent
	})
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	o.waitFor(t, OutcomeDelivered, 1)
	if h.n.Load() != 2 || o.get(OutcomeRetry) != 1 {
		t.Errorf("requests = %d, retries = %d", h.n.Load(), o.get(OutcomeRetry))
	}
}

func TestNoRetryOn400(t *testing.T) {
	h := newHook(t, func(int64) int { return http.StatusBadRequest })
	w, o, logs := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	o.waitFor(t, OutcomeFailed, 1)
	closeWebhook(t, w)
	if n := h.n.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if o.get(OutcomeRetry) != 0 || o.get(OutcomeDelivered) != 0 {
		t.Errorf("outcomes = %v", o.m)
	}
	if !strings.Contains(logs.String(), "webhook call failed") {
		t.Errorf("failure not logged:\n%s", logs)
	}
}

func TestAttemptsExhausted(t *testing.T) {
	h := newHook(t, func(int64) int { return http.StatusInternalServerError })
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond, MaxAttempts: 3})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	o.waitFor(t, OutcomeFailed, 1)
	closeWebhook(t, w)
	if n := h.n.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if o.get(OutcomeRetry) != 2 || o.get(OutcomeDelivered) != 0 {
		t.Errorf("outcomes = %v", o.m)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL + "/hook?token=url-secret"
	srv.Close() // nothing listens there any more
	w, o, logs := newTestWebhook(t, WebhookConfig{URL: dead, Coalesce: 10 * time.Millisecond, MaxAttempts: 2})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("conn", "m"))
	o.waitFor(t, OutcomeFailed, 1)
	if o.get(OutcomeRetry) != 1 {
		t.Errorf("retries = %d, want 1", o.get(OutcomeRetry))
	}
	if strings.Contains(logs.String(), "url-secret") {
		t.Errorf("URL leaked into logs:\n%s", logs)
	}
}

func TestFullQueueDrops(t *testing.T) {
	h := newHook(t, nil)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Hour, QueueSize: 1})
	// Not started: nothing drains the buffer.
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.MessageQueued(t.Context(), ev("A", "a1"))
		w.MessageQueued(t.Context(), ev("B", "b1")) // no room for a second connection
		w.MessageQueued(t.Context(), ev("A", "a2")) // coalesces: not dropped
		for i := range 100 {
			w.MessageQueued(t.Context(), ev(fmt.Sprintf("C%d", i), "c"))
		}
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("MessageQueued blocked on a full queue")
	}
	if got := o.get(OutcomeDropped); got != 101 {
		t.Errorf("dropped = %d, want 101", got)
	}
	// Close starts the workers itself and flushes what was kept.
	closeWebhook(t, w)
	calls := h.drain()
	if len(calls) != 1 || calls[0].fields["connection_id"] != "A" || calls[0].fields["coalesced"] != float64(2) {
		t.Errorf("calls after Close = %v", calls)
	}
}

func TestFullQueueCountsQueuedForWorkers(t *testing.T) {
	h := newHook(t, nil)
	release := make(chan struct{})
	h.block = func(*http.Request, int64) { <-release }
	defer close(release)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Millisecond, QueueSize: 2})
	w.workers = 1
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("A", "a"))
	h.next() // A in flight, worker held; A's slot is free again
	w.MessageQueued(t.Context(), ev("B", "b"))
	w.MessageQueued(t.Context(), ev("C", "c"))
	w.MessageQueued(t.Context(), ev("D", "d")) // B and C fill the buffer
	if got := o.get(OutcomeDropped); got != 1 {
		t.Errorf("dropped = %d, want 1", got)
	}
}

func TestCloseFlushesPending(t *testing.T) {
	h := newHook(t, nil)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Hour})
	w.Start(t.Context())
	for _, c := range []string{"A", "B", "C"} {
		w.MessageQueued(t.Context(), ev(c, "m-"+c))
	}
	closeWebhook(t, w)
	var conns []string
	for _, c := range h.drain() {
		conns = append(conns, c.fields["connection_id"].(string))
	}
	slices.Sort(conns)
	if !slices.Equal(conns, []string{"A", "B", "C"}) {
		t.Errorf("flushed calls for %v, want A B C", conns)
	}
	if o.get(OutcomeDelivered) != 3 {
		t.Errorf("delivered = %d", o.get(OutcomeDelivered))
	}

	// After Close: no panic, no call, counted as dropped.
	w.MessageQueued(t.Context(), ev("D", "late"))
	if o.get(OutcomeDropped) != 1 {
		t.Errorf("dropped after close = %d, want 1", o.get(OutcomeDropped))
	}
	closeWebhook(t, w) // second Close is harmless
	if extra := h.drain(); len(extra) != 0 {
		t.Errorf("calls after Close: %v", extra)
	}
}

func TestCloseDeadlineAbortsInFlight(t *testing.T) {
	h := newHook(t, nil)
	h.block = func(r *http.Request, _ int64) { <-r.Context().Done() } // never answers
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Hour, Timeout: time.Hour})
	w.Start(t.Context())
	w.MessageQueued(t.Context(), ev("A", "a"))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Close(ctx) }()
	h.next() // the flushed call is in flight and will hang
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Close = %v, want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return after its context ended")
	}
	if o.get(OutcomeFailed) != 1 || o.get(OutcomeDelivered) != 0 {
		t.Errorf("outcomes = %v", o.m)
	}
}

func TestConcurrentEventsNotLost(t *testing.T) {
	h := newHook(t, nil)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Millisecond})
	w.Start(t.Context())
	const goroutines, per = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				w.MessageQueued(t.Context(), ev(fmt.Sprintf("conn-%d", (g+i)%5), fmt.Sprintf("m-%d-%d", g, i)))
			}
		})
	}
	wg.Wait()
	closeWebhook(t, w)
	total := 0
	for _, c := range h.drain() {
		total += int(c.fields["coalesced"].(float64))
	}
	if total != goroutines*per {
		t.Errorf("coalesced total = %d, want %d", total, goroutines*per)
	}
	if o.get(OutcomeDropped) != 0 || o.get(OutcomeFailed) != 0 {
		t.Errorf("outcomes = %v", o.m)
	}
}

func TestStartContextStopsWorkers(t *testing.T) {
	h := newHook(t, nil)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	w.Start(ctx)
	cancel()
	w.MessageQueued(t.Context(), ev("A", "a"))
	closeWebhook(t, w) // workers are gone: the entry is abandoned, not sent
	if n := h.n.Load(); n != 0 {
		t.Errorf("%d calls after the Start context ended", n)
	}
	if o.get(OutcomeDropped) != 1 {
		t.Errorf("dropped = %d, want 1", o.get(OutcomeDropped))
	}
}

func TestNewWebhookValidates(t *testing.T) {
	for _, u := range []string{"", "ftp://example.com/x", "http://", "://nope", "example.com/hook"} {
		if _, err := NewWebhook(WebhookConfig{URL: u}); err == nil {
			t.Errorf("NewWebhook(%q) accepted", u)
		}
	}
	if _, err := NewWebhook(WebhookConfig{URL: "https://user:pw@example.com/hook"}); err != nil {
		t.Errorf("valid URL rejected: %v", err)
	}
	if _, err := NewWebhook(WebhookConfig{URL: "https://example.com", QueueSize: -1}); err == nil {
		t.Error("negative QueueSize accepted")
	}
	if _, err := NewWebhook(WebhookConfig{URL: "://user:pw@x"}); err != nil && strings.Contains(err.Error(), "pw") {
		t.Errorf("error leaks URL credentials: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	w, err := NewWebhook(WebhookConfig{URL: "http://example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if w.coalesce != 2*time.Second || w.timeout != 5*time.Second || w.maxAttempts != 5 ||
		w.queueSize != 10000 || w.workers != 4 || cap(w.ready) != 10000 {
		t.Errorf("defaults: %+v", w)
	}
	// Close without Start returns at once when nothing is pending.
	closeWebhook(t, w)
}

func TestBackoffBounds(t *testing.T) {
	w, err := NewWebhook(WebhookConfig{URL: "http://example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 12; attempt++ {
		nominal := min(500*time.Millisecond<<(attempt-1), 30*time.Second)
		for range 50 {
			d := w.backoff(attempt)
			if d < nominal/2 || d > nominal {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, d, nominal/2, nominal)
			}
		}
	}
}

type fakeNotifier struct {
	mu     sync.Mutex
	events []Event
}

func (f *fakeNotifier) MessageQueued(_ context.Context, e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func TestMulti(t *testing.T) {
	a, b := &fakeNotifier{}, &fakeNotifier{}
	var n Notifier = Multi{a, nil, b}
	e := ev("conn", "m")
	n.MessageQueued(t.Context(), e)
	for i, f := range []*fakeNotifier{a, b} {
		if len(f.events) != 1 || f.events[0] != e {
			t.Errorf("notifier %d got %v", i, f.events)
		}
	}
}

func TestMultiWithWebhook(t *testing.T) {
	h := newHook(t, nil)
	w, o, _ := newTestWebhook(t, WebhookConfig{URL: h.srv.URL, Coalesce: 10 * time.Millisecond})
	w.Start(t.Context())
	f := &fakeNotifier{}
	Multi{w, f}.MessageQueued(t.Context(), ev("conn", "m"))
	if h.next().fields["message_id"] != "m" {
		t.Error("webhook did not get the event")
	}
	o.waitFor(t, OutcomeDelivered, 1)
	if len(f.events) != 1 {
		t.Errorf("fake got %d events", len(f.events))
	}
}
