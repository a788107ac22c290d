package metrics_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/metrics"
	"github.com/openmediator/mediator/notify"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// *Metrics is what the packages that do the work need.
var (
	_ mediator.Observer          = (*metrics.Metrics)(nil)
	_ pickup.Observer            = (*metrics.Metrics)(nil)
	_ metrics.LimitObserver      = (*metrics.Metrics)(nil)
	_ func(string)               = (*metrics.Metrics)(nil).WebhookResult
	_ func(time.Duration)        = (*metrics.Metrics)(nil).NotificationLag
	_ func(func() *pgxpool.Stat) = (*metrics.Metrics)(nil).WatchPool
)

func newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Options{Version: "1.2.3", NoRuntime: true})
}

// value is the value of the one series of name with these labels.
func value(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestInbound(t *testing.T) {
	m := newMetrics()
	m.Inbound("http", "routing/1/forward", "ok")
	m.Inbound("http", "routing/1/forward", "ok")
	m.Inbound("ws", "routing/1/forward", "ok")
	m.Inbound("http", "routing/1/forward", "unknown_recipient")
	m.Inbound("ws", "messagepickup/2/delivery-request", "ok")
	// Types the mediator does not handle collapse.
	m.Inbound("http", "basicmessage/1/message", "ok")
	m.Inbound("http", "made-up/9/"+strings.Repeat("x", 500), "ok")
	m.Inbound("http", "", "bad_request")
	m.Inbound("http", "notification/1/problem-report", "ok")
	m.Inbound("http", "didexchange/1/problem_report", "ok")

	want := `
# HELP mediator_inbound_messages_total Inbound DIDComm messages by message type (protocol/major/name; unknown types are "other", unreadable ones "none"), transport (http, ws) and outcome (ok, bad_request, unknown_recipient, too_large, rate_limited, queue_full, refused, timeout, error).
# TYPE mediator_inbound_messages_total counter
mediator_inbound_messages_total{outcome="bad_request",transport="http",type="none"} 1
mediator_inbound_messages_total{outcome="ok",transport="http",type="other"} 2
mediator_inbound_messages_total{outcome="ok",transport="http",type="problem-report"} 2
mediator_inbound_messages_total{outcome="ok",transport="http",type="routing/1/forward"} 2
mediator_inbound_messages_total{outcome="ok",transport="ws",type="messagepickup/2/delivery-request"} 1
mediator_inbound_messages_total{outcome="ok",transport="ws",type="routing/1/forward"} 1
mediator_inbound_messages_total{outcome="unknown_recipient",transport="http",type="routing/1/forward"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mediator_inbound_messages_total"); err != nil {
		t.Fatal(err)
	}
}

func TestTypeLabel(t *testing.T) {
	for _, key := range metrics.MessageTypes() {
		if got := metrics.TypeLabel(key); got != key {
			t.Errorf("TypeLabel(%q) = %q", key, got)
		}
	}
	for key, want := range map[string]string{
		"":                                 metrics.TypeNone,
		"basicmessage/1/message":           metrics.TypeOther,
		"routing/2/forward":                metrics.TypeOther,
		"report-problem/1/problem-report":  metrics.TypeProblemReport,
		"messagepickup/2/problem-report":   metrics.TypeProblemReport,
		"connections/1/problem_report":     metrics.TypeProblemReport,
		"messagepickup/2/delivery-request": "messagepickup/2/delivery-request",
	} {
		if got := metrics.TypeLabel(key); got != want {
			t.Errorf("TypeLabel(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestHistogramsAndCounters(t *testing.T) {
	m := newMetrics()
	m.ForwardAccepted(3 * time.Millisecond)
	m.ForwardAccepted(-time.Second) // clock step: counted as 0
	m.Delivered("live", 2*time.Second)
	m.Delivered("live", 90*time.Second)
	m.Delivered("batch", time.Hour)
	m.Delivered("carrier-pigeon", time.Second)
	m.Redelivered(3)
	m.Redelivered(0)
	m.Redelivered(2)
	m.NotificationLag(4 * time.Millisecond)

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"mediator_forward_accept_seconds", nil, 2},
		{"mediator_queued_to_delivered_seconds", map[string]string{"method": "live"}, 2},
		{"mediator_queued_to_delivered_seconds", map[string]string{"method": "batch"}, 1},
		{"mediator_queued_to_delivered_seconds", map[string]string{"method": "delivery"}, 0},
		{"mediator_queued_to_delivered_seconds", map[string]string{"method": "implicit"}, 0},
		{"mediator_queued_to_delivered_seconds", map[string]string{"method": "other"}, 1},
		{"mediator_redeliveries_total", nil, 5},
		{"mediator_notification_lag_seconds", nil, 1},
	}
	for _, c := range checks {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	want := `
# HELP mediator_forward_accept_seconds Time from receiving a forward (start of its handling) to its queue insert returning, for accepted forwards.
# TYPE mediator_forward_accept_seconds histogram
mediator_forward_accept_seconds_bucket{le="0.001"} 1
mediator_forward_accept_seconds_bucket{le="0.0025"} 1
mediator_forward_accept_seconds_bucket{le="0.005"} 2
mediator_forward_accept_seconds_bucket{le="0.01"} 2
mediator_forward_accept_seconds_bucket{le="0.025"} 2
mediator_forward_accept_seconds_bucket{le="0.05"} 2
mediator_forward_accept_seconds_bucket{le="0.1"} 2
mediator_forward_accept_seconds_bucket{le="0.25"} 2
mediator_forward_accept_seconds_bucket{le="0.5"} 2
mediator_forward_accept_seconds_bucket{le="1"} 2
mediator_forward_accept_seconds_bucket{le="2.5"} 2
mediator_forward_accept_seconds_bucket{le="5"} 2
mediator_forward_accept_seconds_bucket{le="10"} 2
mediator_forward_accept_seconds_bucket{le="+Inf"} 2
mediator_forward_accept_seconds_sum 0.003
mediator_forward_accept_seconds_count 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mediator_forward_accept_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookLimitsSockets(t *testing.T) {
	m := newMetrics()
	for _, o := range []string{notify.OutcomeDelivered, notify.OutcomeDelivered, notify.OutcomeRetry, notify.OutcomeFailed, "surprise"} {
		m.WebhookResult(o)
	}
	m.LimitRejected("message_size")
	m.LimitRejected("message_size")
	m.LimitRejected("ip_rate")
	m.LimitRejected("")
	m.SocketOpened()
	m.SocketOpened()
	m.SocketOpened()
	m.SocketClosed()
	m.QueueSoftCapExceeded()
	m.QueueSoftCapExceeded()
	m.MessagesExpired(7)
	m.MessagesExpired(0)
	m.DirectDelivery(true)
	m.DirectDelivery(false)
	m.DirectDelivery(false)

	want := `
# HELP mediator_direct_deliveries_total Direct delivery attempts of forwards (direct-then-queue) by result: delivered, or failed (the message was queued instead).
# TYPE mediator_direct_deliveries_total counter
mediator_direct_deliveries_total{result="delivered"} 1
mediator_direct_deliveries_total{result="failed"} 2
# HELP mediator_messages_expired_total Queued messages deleted unread because they outlived the message TTL.
# TYPE mediator_messages_expired_total counter
mediator_messages_expired_total 7
# HELP mediator_queue_soft_cap_exceeded_total Messages queued beyond their connection's soft queue cap (queued, with a warning).
# TYPE mediator_queue_soft_cap_exceeded_total counter
mediator_queue_soft_cap_exceeded_total 2
# HELP mediator_limit_rejections_total Requests, messages or connections refused by a configured limit, by limit name.
# TYPE mediator_limit_rejections_total counter
mediator_limit_rejections_total{limit="connection_rate"} 0
mediator_limit_rejections_total{limit="inflight_bytes"} 0
mediator_limit_rejections_total{limit="ip_rate"} 1
mediator_limit_rejections_total{limit="max_sockets"} 0
mediator_limit_rejections_total{limit="message_size"} 2
mediator_limit_rejections_total{limit="queue_hard_cap"} 0
mediator_limit_rejections_total{limit="unknown"} 1
# HELP mediator_webhook_results_total Offline-wallet webhook results: delivered (2xx), failed (gave up), dropped (buffer full or shut down), retry (an attempt failed and will be retried).
# TYPE mediator_webhook_results_total counter
mediator_webhook_results_total{outcome="delivered"} 2
mediator_webhook_results_total{outcome="dropped"} 0
mediator_webhook_results_total{outcome="failed"} 1
mediator_webhook_results_total{outcome="other"} 1
mediator_webhook_results_total{outcome="retry"} 1
# HELP mediator_websockets_open Open DIDComm WebSocket connections on this instance.
# TYPE mediator_websockets_open gauge
mediator_websockets_open 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"mediator_limit_rejections_total", "mediator_webhook_results_total", "mediator_websockets_open",
		"mediator_direct_deliveries_total", "mediator_messages_expired_total", "mediator_queue_soft_cap_exceeded_total"); err != nil {
		t.Fatal(err)
	}
}

// The limit names reported from the start are the ones the limits use.
func TestLimitNames(t *testing.T) {
	used := []string{transport.LimitMessageSize, transport.LimitSockets, transport.LimitIPRate,
		transport.LimitInFlightBytes, mediator.LimitConnectionRate, mediator.LimitQueueFull}
	slices.Sort(used)
	names := slices.Sorted(slices.Values(metrics.LimitNames))
	if !slices.Equal(used, names) {
		t.Errorf("metrics.LimitNames = %v, the limits use %v", names, used)
	}
}

func TestWatchers(t *testing.T) {
	m := newMetrics()
	var (
		mu     sync.Mutex
		counts = map[string]int{"v2": 3}
		up     = true
		notOK  error
	)
	m.WatchLiveSessions(func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return counts
	})
	m.WatchListener(func() bool { mu.Lock(); defer mu.Unlock(); return up })
	m.WatchReady(func(context.Context) error { mu.Lock(); defer mu.Unlock(); return notOK })
	statements, rows := int64(3), int64(17)
	m.WatchForwardBatches(func() (int64, int64) { mu.Lock(); defer mu.Unlock(); return statements, rows })

	want := `
# HELP mediator_db_listener_connected 1 while this instance's LISTEN connection is up; while it is 0, wake-ups from other instances are lost (the reconcile pass catches up).
# TYPE mediator_db_listener_connected gauge
mediator_db_listener_connected 1
# HELP mediator_forward_statement_rows_total Forwards carried by those statements; its rate over that of mediator_forward_statements_total is the mean batch size.
# TYPE mediator_forward_statement_rows_total counter
mediator_forward_statement_rows_total 17
# HELP mediator_forward_statements_total Statements that queued forwards (group commit: concurrent forwards share one multi-row statement and commit).
# TYPE mediator_forward_statements_total counter
mediator_forward_statements_total 3
# HELP mediator_live_sessions Live delivery sessions (sockets that get messages pushed) on this instance, by protocol: v2 (pickup 2.0 live mode) or implicit (return-route socket).
# TYPE mediator_live_sessions gauge
mediator_live_sessions{protocol="implicit"} 0
mediator_live_sessions{protocol="v2"} 3
# HELP mediator_ready 1 when this instance is ready (DIDComm listener serving, database and LISTEN connection healthy: what /readyz answers 200 for), else 0.
# TYPE mediator_ready gauge
mediator_ready 1
`
	names := []string{"mediator_db_listener_connected", "mediator_forward_statement_rows_total",
		"mediator_forward_statements_total", "mediator_live_sessions", "mediator_ready"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	counts = map[string]int{"implicit": 1}
	up = false
	notOK = errors.New("database down")
	statements, rows = 4, 81
	mu.Unlock()
	if got := value(t, m, "mediator_forward_statement_rows_total", nil); got != 81 {
		t.Errorf("mediator_forward_statement_rows_total = %v, want 81", got)
	}
	for name, want := range map[string]float64{"mediator_db_listener_connected": 0, "mediator_ready": 0} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(t, m, "mediator_live_sessions", map[string]string{"protocol": "implicit"}); got != 1 {
		t.Errorf("implicit sessions = %v", got)
	}
	if got := value(t, m, "mediator_live_sessions", map[string]string{"protocol": "v2"}); got != 0 {
		t.Errorf("v2 sessions = %v", got)
	}
}

func TestPoolCollector(t *testing.T) {
	// A pool that never connects (lazy): its statistics are all zero but
	// MaxConns, which comes from the configuration.
	cfg, err := pgxpool.ParseConfig("postgres://nobody@127.0.0.1:1/none?pool_max_conns=7")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c := metrics.NewPoolCollector(pool.Stat)
	if n := testutil.CollectAndCount(c); n != 13 {
		t.Errorf("%d pool metrics, want 13", n)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP mediator_db_pool_max_connections Most connections the pool opens.
# TYPE mediator_db_pool_max_connections gauge
mediator_db_pool_max_connections 7
# HELP mediator_db_pool_acquires_total Connections acquired from the pool.
# TYPE mediator_db_pool_acquires_total counter
mediator_db_pool_acquires_total 0
`), "mediator_db_pool_max_connections", "mediator_db_pool_acquires_total"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestQueueSampler(t *testing.T) {
	m := newMetrics()
	var (
		mu      sync.Mutex
		samples int
		fail    bool
		probes  int
	)
	depth := func(context.Context) (queue.Depth, error) {
		mu.Lock()
		defer mu.Unlock()
		samples++
		if fail {
			return queue.Depth{}, errors.New("database down")
		}
		return queue.Depth{Messages: 42, InFlight: 5, OldestAge: 90 * time.Second}, nil
	}
	probe := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		probes++
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.RunQueueSampler(ctx, metrics.SamplerOptions{Every: 10 * time.Millisecond, Depth: depth, Probe: probe})
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return samples >= 2 })
	for name, want := range map[string]float64{
		"mediator_queue_messages":                   42,
		"mediator_queue_in_flight_messages":         5,
		"mediator_queue_oldest_message_age_seconds": 90,
		"mediator_queue_sample_errors_total":        0,
	} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	waitFor(t, func() bool { return value(t, m, "mediator_queue_sample_errors_total", nil) >= 1 })
	if got := value(t, m, "mediator_queue_messages", nil); got != 42 {
		t.Errorf("a failed sample changed the depth to %v", got)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if got := value(t, m, "mediator_notification_probes_sent_total", nil); got != float64(probes) || probes < 1 || probes >= samples {
		t.Errorf("probes sent = %v, probe called %d times", got, probes)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two Metrics do not share anything (no global registry or state).
func TestIndependentRegistries(t *testing.T) {
	a, b := newMetrics(), newMetrics()
	a.Redelivered(1)
	if got := value(t, b, "mediator_redeliveries_total", nil); got != 0 {
		t.Errorf("b saw a's redelivery: %v", got)
	}
	if prometheus.DefaultRegisterer.Unregister(prometheus.NewCounter(prometheus.CounterOpts{Name: "mediator_redeliveries_total", Help: "x"})) {
		t.Error("mediator_redeliveries_total is on the default registry")
	}
	// With the runtime collectors too.
	_ = metrics.New(metrics.Options{})
	_ = metrics.New(metrics.Options{})
}

// Every metric the registry can hold is in the table of doc.go, and every
// row of the table is a metric, with the same type; and the names lint.
func TestDocumentedTable(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^//\t\\| `(mediator_[a-z_]+)` \\| ([a-z]+) \\|")
	documented := map[string]string{}
	for _, mt := range row.FindAllStringSubmatch(string(src), -1) {
		documented[mt[1]] = mt[2]
	}

	m := metrics.New(metrics.Options{Version: "x"})
	m.Inbound("http", "routing/1/forward", "ok")
	m.LimitRejected("x")
	m.WatchLiveSessions(func() map[string]int { return nil })
	m.WatchListener(func() bool { return true })
	m.WatchReady(func(context.Context) error { return nil })
	m.WatchForwardBatches(func() (int64, int64) { return 0, 0 })
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m.WatchPool(pool.Stat)

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var registered []string
	for _, f := range families {
		name := f.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		registered = append(registered, name)
		typ, ok := documented[name]
		if !ok {
			t.Errorf("%s is not in doc.go's table", name)
			continue
		}
		if want := strings.ToLower(f.GetType().String()); typ != want {
			t.Errorf("%s is documented as a %s, is a %s", name, typ, want)
		}
		if !strings.HasPrefix(name, "mediator_") {
			t.Errorf("%s: not a mediator_ name", name)
		}
	}
	for name := range documented {
		if !slices.Contains(registered, name) {
			t.Errorf("doc.go documents %s, which is not registered", name)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "mediator_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}
