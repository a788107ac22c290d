package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/transport"
)

const envelope = `{"protected":"eyJ9","iv":"aXY","ciphertext":"Y3Q","tag":"dGFn"}`

// behaviourHandler acts on the body's first word.
func behaviourHandler(calls *atomic.Int32) transport.Handler {
	return handlerFunc(func(ctx context.Context, packed []byte, s transport.Session) error {
		calls.Add(1)
		switch {
		case bytes.HasPrefix(packed, []byte("none")):
			return nil
		case bytes.HasPrefix(packed, []byte("status400")):
			return statusErr(http.StatusBadRequest)
		case bytes.HasPrefix(packed, []byte("status422")):
			return statusErr(http.StatusUnprocessableEntity)
		case bytes.HasPrefix(packed, []byte("wrapped400")):
			return errors.Join(errors.New("context"), statusErr(http.StatusBadRequest))
		case bytes.HasPrefix(packed, []byte("plain")):
			return errors.New("boom")
		case bytes.HasPrefix(packed, []byte("panic")):
			panic("handler exploded")
		case bytes.HasPrefix(packed, []byte("sendthenerr")):
			if err := s.Send(ctx, []byte("partial")); err != nil {
				return err
			}
			return errors.New("after send")
		default:
			return s.Send(ctx, append([]byte("reply:"), packed...))
		}
	})
}

type chunkedReader struct{ r io.Reader } // hides the length: forces chunked encoding

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestHTTP(t *testing.T) {
	const limit = 1024
	var calls atomic.Int32
	_, ts, _ := newTestServer(t, transport.Config{MaxMessageBytes: limit}, behaviourHandler(&calls))

	type tc struct {
		name       string
		path       string
		ctype      *string // nil: no Content-Type header
		body       string
		chunked    bool
		wantStatus int
		wantCT     string // checked when non-empty
		wantBody   *string
		wantCalled bool
	}
	str := func(s string) *string { return &s }
	empty := str("")
	cases := []tc{
		{name: "envelope-enc", ctype: str("application/didcomm-envelope-enc"), body: envelope,
			wantStatus: 200, wantCT: "application/didcomm-envelope-enc", wantBody: str("reply:" + envelope), wantCalled: true},
		{name: "ssi-agent-wire", ctype: str("application/ssi-agent-wire"), body: envelope,
			wantStatus: 200, wantCT: "application/ssi-agent-wire", wantBody: str("reply:" + envelope), wantCalled: true},
		{name: "json", ctype: str("application/json"), body: envelope,
			wantStatus: 200, wantCT: "application/didcomm-envelope-enc", wantBody: str("reply:" + envelope), wantCalled: true},
		{name: "no content type", ctype: nil, body: envelope,
			wantStatus: 200, wantCT: "application/didcomm-envelope-enc", wantBody: str("reply:" + envelope), wantCalled: true},
		{name: "params ignored", ctype: str("application/didcomm-envelope-enc; charset=utf-8"), body: envelope,
			wantStatus: 200, wantCT: "application/didcomm-envelope-enc", wantBody: str("reply:" + envelope), wantCalled: true},
		{name: "case insensitive", ctype: str("Application/SSI-Agent-Wire;charset=UTF-8"), body: envelope,
			wantStatus: 200, wantCT: "application/ssi-agent-wire", wantCalled: true},
		{name: "under a path", path: "/mediator/didcomm", ctype: str("application/didcomm-envelope-enc"), body: envelope,
			wantStatus: 200, wantBody: str("reply:" + envelope), wantCalled: true},
		{name: "text/plain rejected", ctype: str("text/plain"), body: envelope, wantStatus: 415},
		{name: "form rejected", ctype: str("application/x-www-form-urlencoded"), body: envelope, wantStatus: 415},
		{name: "malformed content type", ctype: str("application/"), body: envelope, wantStatus: 415},
		{name: "no reply is 202 empty", ctype: str("application/didcomm-envelope-enc"), body: "none",
			wantStatus: 202, wantBody: empty, wantCalled: true},
		{name: "HTTPStatus 400", ctype: str("application/didcomm-envelope-enc"), body: "status400", wantStatus: 400, wantCalled: true},
		{name: "HTTPStatus 422", ctype: str("application/didcomm-envelope-enc"), body: "status422", wantStatus: 422, wantCalled: true},
		{name: "wrapped HTTPStatus", ctype: str("application/didcomm-envelope-enc"), body: "wrapped400", wantStatus: 400, wantCalled: true},
		{name: "plain error 500", ctype: str("application/didcomm-envelope-enc"), body: "plain", wantStatus: 500, wantCalled: true},
		{name: "panic 500", ctype: str("application/didcomm-envelope-enc"), body: "panic", wantStatus: 500, wantCalled: true},
		{name: "error after send keeps the reply", ctype: str("application/didcomm-envelope-enc"), body: "sendthenerr",
			wantStatus: 200, wantBody: str("partial"), wantCalled: true},
		{name: "empty body 400", ctype: str("application/didcomm-envelope-enc"), body: "", wantStatus: 400},
		{name: "at the limit", ctype: str("application/didcomm-envelope-enc"), body: "none" + strings.Repeat("x", limit-4),
			wantStatus: 202, wantCalled: true},
		{name: "oversize 413", ctype: str("application/didcomm-envelope-enc"), body: strings.Repeat("x", limit+1), wantStatus: 413},
		{name: "oversize chunked 413", ctype: str("application/didcomm-envelope-enc"), body: strings.Repeat("x", 3*limit),
			chunked: true, wantStatus: 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := calls.Load()
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = chunkedReader{body}
			}
			req, err := http.NewRequest(http.MethodPost, ts.URL+c.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if c.ctype != nil {
				req.Header.Set("Content-Type", *c.ctype)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, c.wantStatus, got)
			}
			if c.wantCT != "" && resp.Header.Get("Content-Type") != c.wantCT {
				t.Errorf("Content-Type = %q, want %q", resp.Header.Get("Content-Type"), c.wantCT)
			}
			if c.wantBody != nil && string(got) != *c.wantBody {
				t.Errorf("body = %q, want %q", got, *c.wantBody)
			}
			if called := calls.Load() != before; called != c.wantCalled {
				t.Errorf("handler called = %v, want %v", called, c.wantCalled)
			}
		})
	}
}

func TestHTTPSessionContract(t *testing.T) {
	type result struct {
		sess        transport.Session
		first       error
		second      error
		doneAtSend  bool
		hasDeadline bool
	}
	results := make(chan result, 1)
	_, ts, _ := newTestServer(t, transport.Config{}, handlerFunc(func(ctx context.Context, packed []byte, s transport.Session) error {
		var r result
		r.sess = s
		_, r.hasDeadline = ctx.Deadline()
		r.first = s.Send(ctx, []byte("one"))
		r.second = s.Send(ctx, []byte("two"))
		r.doneAtSend = isClosed(s.Done())
		results <- r
		return nil
	}))

	resp, err := http.Post(ts.URL, "application/didcomm-envelope-enc", strings.NewReader(envelope))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "one" {
		t.Fatalf("got %d %q, want 200 \"one\"", resp.StatusCode, body)
	}
	r := recv(t, results, "handler result")
	if r.first != nil {
		t.Errorf("first Send: %v", r.first)
	}
	if !errors.Is(r.second, transport.ErrReplyUsed) {
		t.Errorf("second Send = %v, want ErrReplyUsed", r.second)
	}
	if r.doneAtSend {
		t.Error("Done closed while the handler was running")
	}
	if !r.hasDeadline {
		t.Error("handler context has no deadline")
	}
	if r.sess.Kind() != transport.KindHTTP {
		t.Errorf("Kind = %q", r.sess.Kind())
	}
	if _, err := uuid.Parse(r.sess.ID()); err != nil {
		t.Errorf("ID %q is not a UUID: %v", r.sess.ID(), err)
	}
	if r.sess.RemoteAddr() == "" {
		t.Error("RemoteAddr empty")
	}
	waitClosed(t, r.sess.Done(), "Done after the request")
	if err := r.sess.Send(context.Background(), []byte("late")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Send after the request = %v, want ErrClosed", err)
	}
}

func TestHTTPSessionIDsDiffer(t *testing.T) {
	ids := make(chan string, 2)
	_, ts, _ := newTestServer(t, transport.Config{}, handlerFunc(func(_ context.Context, _ []byte, s transport.Session) error {
		ids <- s.ID()
		return nil
	}))
	for range 2 {
		resp, err := http.Post(ts.URL, "", strings.NewReader(envelope))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if a, b := <-ids, <-ids; a == b {
		t.Errorf("two requests share session id %s", a)
	}
}

func TestHTTPHandlerTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	release := make(chan struct{})
	lateSend := make(chan error, 1)
	h := handlerFunc(func(ctx context.Context, packed []byte, s transport.Session) error {
		switch string(packed) {
		case "respects-ctx-fails":
			<-ctx.Done()
			return ctx.Err()
		case "respects-ctx-ok":
			<-ctx.Done()
			return nil
		case "ignores-ctx":
			<-release
			lateSend <- s.Send(context.Background(), []byte("too late"))
			return nil
		}
		return errors.New("unexpected")
	})
	_, ts, _ := newTestServer(t, transport.Config{HandlerTimeout: timeout}, h)

	cases := []struct {
		body       string
		wantStatus int
	}{
		{"respects-ctx-fails", http.StatusServiceUnavailable},
		{"respects-ctx-ok", http.StatusAccepted},
		{"ignores-ctx", http.StatusServiceUnavailable},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			resp, err := http.Post(ts.URL, "application/didcomm-envelope-enc", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, c.wantStatus)
			}
			if c.wantStatus == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if c.body == "ignores-ctx" {
				close(release)
				if err := recv(t, lateSend, "late send"); !errors.Is(err, transport.ErrClosed) {
					t.Errorf("Send after the watchdog answered = %v, want ErrClosed", err)
				}
			}
		})
	}
}

func TestHTTPRouting(t *testing.T) {
	var calls atomic.Int32
	h := behaviourHandler(&calls)
	other := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Other", "yes")
		_, _ = io.WriteString(w, "other:"+r.Method+" "+r.URL.Path)
	})

	cases := []struct {
		name       string
		other      http.Handler
		method     string
		path       string
		wantStatus int
		wantOther  bool
	}{
		{"GET without Other", nil, http.MethodGet, "/", 404, false},
		{"HEAD without Other", nil, http.MethodHead, "/x", 404, false},
		{"PUT without Other", nil, http.MethodPut, "/", 405, false},
		{"GET to Other", other, http.MethodGet, "/healthz", 200, true},
		{"DELETE to Other", other, http.MethodDelete, "/x", 200, true},
		{"POST is DIDComm even with Other", other, http.MethodPost, "/healthz", 200, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ts, _ := newTestServer(t, transport.Config{Other: c.other}, h)
			req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(envelope))
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, c.wantStatus)
			}
			if got := resp.Header.Get("X-Other") == "yes"; got != c.wantOther {
				t.Errorf("served by Other = %v, want %v (body %q)", got, c.wantOther, body)
			}
			if c.wantStatus == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

func TestHTTPUnderResponseRecorder(t *testing.T) {
	s := transport.NewServer(transport.Config{Logger: newLogger(&syncBuffer{})}, handlerFunc(
		func(ctx context.Context, packed []byte, sess transport.Session) error {
			return sess.Send(ctx, []byte("pong"))
		}))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(envelope))
	req.Header.Set("Content-Type", "application/ssi-agent-wire")
	s.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "pong" || rec.Header().Get("Content-Type") != "application/ssi-agent-wire" {
		t.Fatalf("got %d %q %q", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
	}
}

func TestHTTPAfterShutdown(t *testing.T) {
	s, ts, _ := newTestServer(t, transport.Config{}, handlerFunc(func(context.Context, []byte, transport.Session) error { return nil }))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(ts.URL, "", strings.NewReader(envelope))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", resp.StatusCode)
	}
}

func TestShutdownForcedCancelsHandlers(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	s, ts, _ := newTestServer(t, transport.Config{HandlerTimeout: time.Hour}, handlerFunc(
		func(ctx context.Context, _ []byte, _ transport.Session) error {
			close(started)
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}))
	go func() {
		resp, err := http.Post(ts.URL, "", strings.NewReader(envelope))
		if err == nil {
			resp.Body.Close()
		}
	}()
	recv(t, started, "handler start")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	waitClosed(t, cancelled, "handler context after forced shutdown")
}

func TestLogsNeverContainPayloads(t *testing.T) {
	const secret = "SECRET-PAYLOAD-do-not-log"
	_, ts, logs := newTestServer(t, transport.Config{}, handlerFunc(
		func(ctx context.Context, packed []byte, s transport.Session) error {
			if err := s.Send(ctx, packed); err != nil {
				return err
			}
			return errors.New("handler failed")
		}))
	resp, err := http.Post(ts.URL, "", strings.NewReader(secret))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c := dial(t, ts, "/")
	if err := c.WriteMessage(2, []byte(secret)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	waitFor(t, "socket close logged", func() bool { return strings.Contains(logs.String(), "websocket closed") })
	out := logs.String()
	if strings.Contains(out, secret) {
		t.Fatalf("payload in logs:\n%s", out)
	}
	for _, want := range []string{"session=", "kind=http", "kind=ws", "remote=", "status=200", "bytes_in=", "duration="} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}
