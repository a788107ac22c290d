package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/metrics"
	"github.com/openmediator/mediator/queue"
)

// flagAdminListen is the admin listener's address.
var flagAdminListen = &cli.StringFlag{
	Name: "admin-listen", Value: "127.0.0.1:9090", EnvVars: []string{"MEDIATOR_ADMIN_LISTEN"},
	Usage: "`HOST:PORT` serving Prometheus /metrics, /healthz and /readyz, apart from the public DIDComm port " +
		"(keep it private: loopback, or a network only Prometheus and the orchestrator reach); empty disables it",
}

// flagAdminPprof adds Go's profiler to the admin listener: CPU and heap
// profiles of a live instance under real load are how its costs are found.
var flagAdminPprof = &cli.BoolFlag{
	Name: "admin-pprof", EnvVars: []string{"MEDIATOR_ADMIN_PPROF"},
	Usage: "also serve Go's profiler under /debug/pprof/ on --admin-listen " +
		"(e.g. go tool pprof http://127.0.0.1:9090/debug/pprof/profile?seconds=20)",
}

// adminFlags are the flags of the admin listener, for serve.
func adminFlags() []cli.Flag {
	return []cli.Flag{flagAdminListen, flagAdminPprof}
}

// adminTimeout bounds one admin request, and one /readyz check.
const adminTimeout = 10 * time.Second

// startAdminListener serves the admin endpoints on addr until shutdown is
// called (ctx only gives requests their values):
//
//   - /metrics: reg in the Prometheus exposition formats; mediator_ready is
//     registered on reg here, from ready;
//   - /healthz: 200 while the process runs;
//   - /readyz: 200 when ready returns nil, else 503 with its error as the
//     reason.
//
// An empty addr disables the listener: nothing is served, and shutdown does
// nothing.
func startAdminListener(ctx context.Context, addr string, withPprof bool, reg *prometheus.Registry,
	ready func(ctx context.Context) error, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	if addr == "" {
		log.Info("admin listener disabled (--admin-listen is empty): no /metrics, /healthz or /readyz apart from the DIDComm port")
		return func(context.Context) error { return nil }, nil
	}
	if err := reg.Register(metrics.ReadyGauge(ready)); err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	srv := &http.Server{
		Handler:           adminHandler(reg, ready, withPprof, log),
		ReadHeaderTimeout: adminTimeout,
		ReadTimeout:       adminTimeout,
		WriteTimeout:      adminWriteTimeout(withPprof),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener stopped", "err", err)
		}
	}()
	paths := "/metrics /healthz /readyz"
	if withPprof {
		paths += " /debug/pprof/"
	}
	log.Info("admin listener", "addr", ln.Addr().String(), "paths", paths)
	return srv.Shutdown, nil
}

// maxProfileSeconds bounds a CPU profile or trace asked of /debug/pprof/.
const maxProfileSeconds = 120

// adminWriteTimeout lets a profile of up to maxProfileSeconds be written.
func adminWriteTimeout(withPprof bool) time.Duration {
	if withPprof {
		return (maxProfileSeconds + 10) * time.Second
	}
	return 2 * adminTimeout
}

// adminHandler routes the admin endpoints.
func adminHandler(reg *prometheus.Registry, ready func(ctx context.Context) error, withPprof bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg, // counts promhttp_metric_handler_errors_total
		MaxRequestsInFlight: 4,
		Timeout:             adminTimeout,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// readiness is the check behind /readyz and mediator_ready: serving is true
// while the DIDComm listener serves (serve sets it once Serve runs and clears
// it when shutdown starts), the database answers a ping, and, with a
// database, this instance's LISTEN connection is up.
func readiness(serving *atomic.Bool, st *stores) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if !serving.Load() {
			return errors.New("the DIDComm listener is not serving (starting or shutting down)")
		}
		if err := st.ping(ctx); err != nil {
			return fmt.Errorf("database unavailable: %w", err)
		}
		if st.cluster != nil && !st.cluster.ListenerConnected() {
			return errors.New("database LISTEN connection down: wake-ups from other instances are not received")
		}
		return nil
	}
}

// observeStores registers the database's collectors (pgx pool statistics
// and LISTEN state, when there is a database) on mx and samples the queue
// (depth, in flight, oldest age, and a notification probe) every 15s until
// ctx ends.
func observeStores(ctx context.Context, mx *metrics.Metrics, st *stores, log *slog.Logger) {
	o := metrics.SamplerOptions{Logger: log}
	if d, ok := st.queue.(interface {
		Depth(context.Context) (queue.Depth, error)
	}); ok {
		o.Depth = d.Depth
	}
	if st.cluster != nil {
		mx.WatchPool(st.cluster.PoolStat)
		mx.WatchForwardBatches(st.cluster.BatchStats)
		mx.WatchListener(st.cluster.ListenerConnected)
		o.Probe = st.cluster.SendNotifyProbe
	}
	mx.RunQueueSampler(ctx, o)
}
