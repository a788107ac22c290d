package metrics

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Live-session protocols always reported, even at 0 (queue.ProtocolLiveV2,
// queue.ProtocolImplicit).
var liveProtocols = []string{"v2", "implicit"}

// WatchLiveSessions reports mediator_live_sessions{protocol} from counts
// (pickup.Service.LiveSessionsByProtocol), read at every scrape. Call it
// once.
func (m *Metrics) WatchLiveSessions(counts func() map[string]int) {
	m.reg.MustRegister(&liveSessions{counts: counts,
		desc: prometheus.NewDesc("mediator_live_sessions",
			"Live delivery sessions (sockets that get messages pushed) on this instance, by protocol: v2 (pickup 2.0 live mode) or implicit (return-route socket).",
			[]string{"protocol"}, nil)})
}

type liveSessions struct {
	counts func() map[string]int
	desc   *prometheus.Desc
}

func (c *liveSessions) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *liveSessions) Collect(ch chan<- prometheus.Metric) {
	counts := c.counts()
	protocols := slices.Clone(liveProtocols)
	for p := range counts {
		if !slices.Contains(protocols, p) {
			protocols = append(protocols, p)
		}
	}
	for _, p := range protocols {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[p]), p)
	}
}

// WatchListener reports mediator_db_listener_connected from connected
// (queuepg.Queue.ListenerConnected), read at every scrape. Call it once, and
// only when there is a database.
func (m *Metrics) WatchListener(connected func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mediator_db_listener_connected",
		Help: "1 while this instance's LISTEN connection is up; while it is 0, wake-ups from other instances are lost (the reconcile pass catches up).",
	}, func() float64 {
		if connected() {
			return 1
		}
		return 0
	}))
}

// WatchForwardBatches reports mediator_forward_statements_total and
// mediator_forward_statement_rows_total from stats
// (queuepg.Queue.BatchStats), read at every scrape. Call it once, and only
// when there is a database.
func (m *Metrics) WatchForwardBatches(stats func() (statements, forwards int64)) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mediator_forward_statements_total",
		Help: "Statements that queued forwards (group commit: concurrent forwards share one multi-row statement and commit).",
	}, func() float64 { s, _ := stats(); return float64(s) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mediator_forward_statement_rows_total",
		Help: "Forwards carried by those statements; its rate over that of mediator_forward_statements_total is the mean batch size.",
	}, func() float64 { _, f := stats(); return float64(f) }))
}

// WatchReady reports mediator_ready from ready (the /readyz check), run at
// every scrape under a 5s timeout. Call it once.
func (m *Metrics) WatchReady(ready func(context.Context) error) {
	m.reg.MustRegister(ReadyGauge(ready))
}

// ReadyGauge is the mediator_ready gauge on its own, for a registry other
// than a Metrics'.
func ReadyGauge(ready func(context.Context) error) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mediator_ready",
		Help: "1 when this instance is ready (DIDComm listener serving, database and LISTEN connection healthy: what /readyz answers 200 for), else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ready(ctx) != nil {
			return 0
		}
		return 1
	})
}

// WatchPool reports the pgx pool's statistics from stat (pgxpool.Pool.Stat),
// read at every scrape. Call it once.
func (m *Metrics) WatchPool(stat func() *pgxpool.Stat) {
	m.reg.MustRegister(NewPoolCollector(stat))
}

// NewPoolCollector returns a collector of pgx pool statistics
// (mediator_db_pool_*). Its LISTEN connection is not from the pool and not
// counted.
func NewPoolCollector(stat func() *pgxpool.Stat) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("mediator_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		stat:            stat,
		acquired:        d("acquired_connections", "Pool connections in use."),
		idle:            d("idle_connections", "Idle pool connections."),
		constructing:    d("constructing_connections", "Pool connections being opened."),
		total:           d("total_connections", "Pool connections (acquired, idle and being opened)."),
		max:             d("max_connections", "Most connections the pool opens."),
		acquires:        d("acquires_total", "Connections acquired from the pool."),
		acquireSeconds:  d("acquire_seconds_total", "Total time spent acquiring pool connections; divide its rate by that of acquires_total for the mean wait."),
		emptyAcquires:   d("empty_acquires_total", "Acquires that had to wait for a connection (none was idle): a sign the pool is too small."),
		emptyWait:       d("empty_acquire_wait_seconds_total", "Total time acquires waited because no connection was idle."),
		canceled:        d("canceled_acquires_total", "Acquires cancelled by their context before they got a connection."),
		newConns:        d("new_connections_total", "Connections the pool opened."),
		lifetimeDestroy: d("max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime."),
		idleDestroy:     d("max_idle_destroys_total", "Connections closed for idling too long."),
	}
}

type poolCollector struct {
	stat func() *pgxpool.Stat

	acquired, idle, constructing, total, max                     *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires, emptyWait, canceled *prometheus.Desc
	newConns, lifetimeDestroy, idleDestroy                       *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.constructing, c.total, c.max,
		c.acquires, c.acquireSeconds, c.emptyAcquires, c.emptyWait, c.canceled, c.newConns, c.lifetimeDestroy, c.idleDestroy} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stat()
	if s == nil {
		return
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.constructing, float64(s.ConstructingConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.max, float64(s.MaxConns()))
	n(c.acquires, float64(s.AcquireCount()))
	n(c.acquireSeconds, s.AcquireDuration().Seconds())
	n(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	n(c.emptyWait, s.EmptyAcquireWaitTime().Seconds())
	n(c.canceled, float64(s.CanceledAcquireCount()))
	n(c.newConns, float64(s.NewConnsCount()))
	n(c.lifetimeDestroy, float64(s.MaxLifetimeDestroyCount()))
	n(c.idleDestroy, float64(s.MaxIdleDestroyCount()))
}
