package mediator_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/metrics"
	"github.com/openmediator/mediator/transport"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log records so far and forgets them.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(s.b.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %s: %v", l, err)
		}
		out = append(out, m)
	}
	s.b.Reset()
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func findLog(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// HandleInbound with a real metrics registry: forwards are counted by type,
// transport and outcome, accepted ones timed; log lines carry the session,
// connection and message type and never the payload.
func TestInboundMetricsAndLogs(t *testing.T) {
	mx := metrics.New(metrics.Options{NoRuntime: true})
	logs := &syncBuffer{}
	e := newEnv(t, func(c *mediator.Config) {
		c.Observer = mx
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	p := e.grant(t)
	key, _ := newVerkey(t)
	e.keylistUpdate(t, p, [2]string{key, "add"})
	logs.lines(t)
	sender := newPeer(t)
	secret := "inner payload text " + uuid.NewString()
	inner := packedFor(t, sender, key, secret)

	// Accepted over HTTP.
	s := newSession(transport.KindHTTP)
	if err := e.handle(t, forwardTo(t, e, key, inner), s); err != nil {
		t.Fatal(err)
	}
	lines := logs.lines(t)
	// Refused: nobody registered this key.
	unknown, _ := newVerkey(t)
	if err := e.handle(t, forwardTo(t, e, unknown, inner), newSession(transport.KindHTTP)); httpStatus(err) != 404 {
		t.Fatalf("forward to an unknown key: %v", err)
	}
	// Accepted over a WebSocket, and an unreadable message.
	if err := e.handle(t, forwardTo(t, e, key, inner), newSession(transport.KindWebSocket)); err != nil {
		t.Fatal(err)
	}
	if err := e.handle(t, []byte(`{"protected":"x"}`), newSession(transport.KindHTTP)); httpStatus(err) != 400 {
		t.Fatalf("garbage: %v", err)
	}

	want := map[[3]string]float64{
		{"routing/1/forward", "http", "ok"}:                1,
		{"routing/1/forward", "http", "unknown_recipient"}: 1,
		{"routing/1/forward", "ws", "ok"}:                  1,
		{"none", "http", "bad_request"}:                    1,
	}
	for labels, n := range want {
		if got := inboundCount(t, mx, labels); got != n {
			t.Errorf("mediator_inbound_messages_total{type=%q,transport=%q,outcome=%q} = %v, want %v",
				labels[0], labels[1], labels[2], got, n)
		}
	}
	// The handshake and mediation before were counted too, by their types.
	if got := inboundCount(t, mx, [3]string{"coordinate-mediation/1/mediate-request", "http", "ok"}); got != 1 {
		t.Errorf("mediate-request counted %v times", got)
	}
	if n := testutil.CollectAndCount(mx.Registry(), "mediator_forward_accept_seconds"); n != 1 {
		t.Fatalf("%d forward accept histograms", n)
	}
	if got := histogramCount(t, mx, "mediator_forward_accept_seconds"); got != 2 {
		t.Errorf("forward accept latency observed %d times, want 2 (the accepted forwards)", got)
	}

	// The accepted forward's log lines.
	done := findLog(lines, "inbound message")
	if done == nil {
		t.Fatalf("no inbound message log line in %v", lines)
	}
	for k, v := range map[string]any{"session": s.ID(), "connection": p.connID, "msg_type": "routing/1/forward", "outcome": "ok"} {
		if done[k] != v {
			t.Errorf("inbound message log: %s = %v, want %v (%v)", k, done[k], v, done)
		}
	}
	queued := findLog(lines, "forward queued")
	if queued == nil || queued["session"] != s.ID() || queued["msg_type"] != "routing/1/forward" || queued["connection"] != p.connID {
		t.Errorf("forward queued log line lacks session/msg_type/connection: %v", queued)
	}
	if all := logs.String(); strings.Contains(all, secret) || strings.Contains(all, string(inner[:40])) {
		t.Errorf("payload in the logs: %s", all)
	}
}

// A message on a connection gets the connection on its log lines, and a
// sender-chosen type is shortened.
func TestLogContextOnConnection(t *testing.T) {
	logs := &syncBuffer{}
	e := newEnv(t, func(c *mediator.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	p := e.connect(t)
	logs.lines(t)
	longType := "https://didcomm.org/made-up/1.0/" + strings.Repeat("x", 5000)
	s := newSession(transport.KindWebSocket)
	if err := e.send(t, p, withReturnRoute(map[string]any{"@type": longType, "@id": uuid.NewString()}, "all"), s); err != nil {
		t.Fatal(err)
	}
	l := findLog(logs.lines(t), "unsupported message type")
	if l == nil {
		t.Fatal("no unsupported message type log line")
	}
	if l["session"] != s.ID() || l["connection"] != p.connID {
		t.Errorf("log line lacks session or connection: %v", l)
	}
	for _, k := range []string{"type", "msg_type"} {
		if v, _ := l[k].(string); len(v) > 200 || v == "" {
			t.Errorf("%s logged with %d bytes", k, len(v))
		}
	}
}

func inboundCount(t *testing.T, mx *metrics.Metrics, labels [3]string) float64 {
	t.Helper()
	families, err := mx.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "mediator_inbound_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["type"] == labels[0] && got["transport"] == labels[1] && got["outcome"] == labels[2] {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func histogramCount(t *testing.T, mx *metrics.Metrics, name string) uint64 {
	t.Helper()
	families, err := mx.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
