package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/metrics"
	"github.com/openmediator/mediator/queuepg"
)

// adminReady is a readiness check a test can turn off.
type adminReady struct {
	mu  sync.Mutex
	err error
}

func (r *adminReady) set(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *adminReady) check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func adminGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAdminHandler(t *testing.T) {
	mx := metrics.New(metrics.Options{Version: "test"})
	mx.Inbound("http", "routing/1/forward", "ok")
	mx.LimitRejected("message_size")
	mx.WatchLiveSessions(func() map[string]int { return map[string]int{"v2": 2} })
	ready := &adminReady{}
	srv := httptest.NewServer(adminHandler(mx.Registry(), ready.check, false, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	code, body := adminGet(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, name := range []string{
		`mediator_inbound_messages_total{outcome="ok",transport="http",type="routing/1/forward"} 1`,
		`mediator_limit_rejections_total{limit="message_size"} 1`,
		`mediator_live_sessions{protocol="v2"} 2`,
		"# TYPE mediator_forward_accept_seconds histogram",
		"# TYPE mediator_queued_to_delivered_seconds histogram",
		"# TYPE mediator_notification_lag_seconds histogram",
		"mediator_queue_messages 0",
		"mediator_queue_oldest_message_age_seconds 0",
		"mediator_queue_in_flight_messages 0",
		"mediator_websockets_open 0",
		"mediator_redeliveries_total 0",
		`mediator_webhook_results_total{outcome="failed"} 0`,
		`mediator_build_info{version="test"} 1`,
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}

	if code, body := adminGet(t, srv.URL+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := adminGet(t, srv.URL+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
	ready.set(errors.New("database unavailable: connection refused"))
	if code, body := adminGet(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable ||
		body != "not ready: database unavailable: connection refused\n" {
		t.Errorf("/readyz when not ready: %d %q", code, body)
	}
	// Still alive.
	if code, _ := adminGet(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz when not ready: %d", code)
	}
	for _, path := range []string{"/", "/debug/pprof/", "/debug/pprof/heap"} {
		if code, _ := adminGet(t, srv.URL+path); code != http.StatusNotFound {
			t.Errorf("%s without --admin-pprof: %d, want 404", path, code)
		}
	}
	resp, err := http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", resp.StatusCode)
	}
}

// startAdminListener on a real port: mediator_ready follows the check, and
// shutdown stops it.
func TestStartAdminListener(t *testing.T) {
	mx := metrics.New(metrics.Options{NoRuntime: true})
	ready := &adminReady{}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	shutdown, err := startAdminListener(context.Background(), "127.0.0.1:0", false, mx.Registry(), ready.check, log)
	if err != nil {
		t.Fatal(err)
	}
	var started struct{ Addr string }
	if err := json.Unmarshal(bytes.SplitN(logs.Bytes(), []byte("\n"), 2)[0], &started); err != nil || started.Addr == "" {
		t.Fatalf("no address logged: %s", logs.String())
	}
	base := "http://" + started.Addr
	if _, body := adminGet(t, base+"/metrics"); !strings.Contains(body, "\nmediator_ready 1\n") {
		t.Errorf("mediator_ready not 1 when ready:\n%s", body)
	}
	ready.set(errors.New("the DIDComm listener is not serving"))
	if _, body := adminGet(t, base+"/metrics"); !strings.Contains(body, "\nmediator_ready 0\n") {
		t.Errorf("mediator_ready not 0 when not ready")
	}
	if code, body := adminGet(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not serving") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("admin listener still serving after shutdown")
	}

	// Disabled.
	shutdown, err = startAdminListener(context.Background(), "", false, mx.Registry(), ready.check, log)
	if err != nil || shutdown(ctx) != nil {
		t.Fatalf("disabled listener: %v", err)
	}
	// A bad address is an error that names the flag.
	if _, err := startAdminListener(context.Background(), "127.0.0.1:notaport", false, metrics.New(metrics.Options{NoRuntime: true}).Registry(),
		ready.check, log); err == nil || !strings.Contains(err.Error(), "--admin-listen") {
		t.Errorf("bad address: %v", err)
	}
}

func TestAdminListenFlag(t *testing.T) {
	parse := func(args []string, env map[string]string) string {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		var got string
		app := &cli.App{Name: "mediator", Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{{
			Name: "serve", Flags: adminFlags(),
			Action: func(c *cli.Context) error { got = c.String(flagAdminListen.Name); return nil },
		}}}
		if err := app.Run(append([]string{"mediator", "serve"}, args...)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := parse(nil, nil); got != "127.0.0.1:9090" {
		t.Errorf("default = %q", got)
	}
	if got := parse([]string{"--admin-listen", "0.0.0.0:9100"}, nil); got != "0.0.0.0:9100" {
		t.Errorf("flag = %q", got)
	}
	if got := parse([]string{"--admin-listen="}, nil); got != "" {
		t.Errorf("empty flag = %q, want disabled", got)
	}
	t.Run("env", func(t *testing.T) {
		if got := parse(nil, map[string]string{"MEDIATOR_ADMIN_LISTEN": "10.0.0.5:9090"}); got != "10.0.0.5:9090" {
			t.Errorf("env = %q", got)
		}
	})
	t.Run("empty env", func(t *testing.T) {
		if got := parse(nil, map[string]string{"MEDIATOR_ADMIN_LISTEN": ""}); got != "" {
			t.Errorf("empty env = %q, want disabled", got)
		}
	})
}

func TestReadiness(t *testing.T) {
	var serving atomic.Bool
	var pingErr error
	st := &stores{ping: func(context.Context) error { return pingErr }}
	ready := readiness(&serving, st)
	ctx := context.Background()
	if err := ready(ctx); err == nil || !strings.Contains(err.Error(), "not serving") {
		t.Errorf("before serving: %v", err)
	}
	serving.Store(true)
	if err := ready(ctx); err != nil {
		t.Errorf("serving, in memory: %v", err)
	}
	pingErr = errors.New("connection refused")
	if err := ready(ctx); err == nil || !strings.Contains(err.Error(), "database unavailable: connection refused") {
		t.Errorf("database down: %v", err)
	}
	pingErr = nil

	// With a database whose LISTEN connection is not up (Run not started).
	pool, err := pgxpool.New(ctx, "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st.cluster = queuepg.New(pool, queuepg.Options{Instance: "i"})
	if err := ready(ctx); err == nil || !strings.Contains(err.Error(), "LISTEN") {
		t.Errorf("LISTEN down: %v", err)
	}
}

// With --admin-pprof the profiler's index and named profiles are served.
func TestAdminHandlerPprof(t *testing.T) {
	mx := metrics.New(metrics.Options{NoRuntime: true})
	srv := httptest.NewServer(adminHandler(mx.Registry(), (&adminReady{}).check, true, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	code, body := adminGet(t, srv.URL+"/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d, index lists goroutine: %v", code, strings.Contains(body, "goroutine"))
	}
	if code, body := adminGet(t, srv.URL+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK ||
		!strings.Contains(body, "TestAdminHandlerPprof") {
		t.Errorf("/debug/pprof/goroutine?debug=1: %d, names this test: %v", code, strings.Contains(body, "TestAdminHandlerPprof"))
	}
	if code, _ := adminGet(t, srv.URL+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics beside pprof: %d", code)
	}
}
