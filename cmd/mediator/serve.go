package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/internal/heapfloor"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/metrics"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/transport"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the mediator",
		Description: `Serves DIDComm over HTTP POST and WebSocket on --listen, plus GET /invitation
(the out-of-band invitation URL, or its JSON with Accept: application/json),
GET /healthz and GET /readyz.

Example:
   mediator serve --listen 0.0.0.0:8080 \
     --endpoint https://mediator.example.org --endpoint wss://mediator.example.org \
     --database-url postgres://mediator@db:5432/mediator --master-key "$(cat /run/secrets/master-key)"`,
		Flags: append(append(identityFlags(), append(adminFlags(), limitFlags()...)...),
			&cli.DurationFlag{Name: "ws-ping-interval", Value: 30 * time.Second, EnvVars: []string{"MEDIATOR_WS_PING_INTERVAL"},
				Usage: "`DURATION` between server pings on WebSockets; a socket silent for twice this is closed"},
			&cli.Int64Flag{Name: "max-message-bytes", Value: 5 << 20, EnvVars: []string{"MEDIATOR_MAX_MESSAGE_BYTES"},
				Usage: "largest inbound message in `BYTES` (HTTP 413 / WebSocket close 1009 above it)"},
			&cli.BoolFlag{Name: "implicit-pickup", Value: true, EnvVars: []string{"MEDIATOR_IMPLICIT_PICKUP"},
				Usage: "push queued messages raw on a WebSocket that sends any message with return_route \"all\" and no pickup protocol (older wallets' Implicit mode)"},
			&cli.DurationFlag{Name: "delivery-lease", Value: 60 * time.Second, EnvVars: []string{"MEDIATOR_DELIVERY_LEASE"},
				Usage: "`DURATION` a delivered message waits for messages-received before it is delivered again"},
			&cli.DurationFlag{Name: "ack-grace", Value: 5 * time.Second, EnvVars: []string{"MEDIATOR_ACK_GRACE"},
				Usage: "`DURATION` the unacknowledged messages of a socket that closed wait for a late messages-received before they are delivered again"},
			&cli.DurationFlag{Name: "heartbeat-interval", Value: 5 * time.Second, EnvVars: []string{"MEDIATOR_HEARTBEAT_INTERVAL"},
				Usage: "`DURATION` between this instance's heartbeats in the database"},
			&cli.DurationFlag{Name: "instance-ttl", Value: 30 * time.Second, EnvVars: []string{"MEDIATOR_INSTANCE_TTL"},
				Usage: "`DURATION` after which an instance without heartbeat is dead: its sessions are removed and its in-flight messages requeued"},
			&cli.DurationFlag{Name: "reconcile-interval", Value: 30 * time.Second, EnvVars: []string{"MEDIATOR_RECONCILE_INTERVAL"},
				Usage: "`DURATION` between passes that push whatever is pending to this instance's live sockets (covers lost notifications)"},
			&cli.IntFlag{Name: "vacuum-dead-rows", Value: queuepg.DefaultVacuumDeadRows, EnvVars: []string{"MEDIATOR_VACUUM_DEAD_ROWS"},
				Usage: "VACUUM the queue tables (one instance at a time) once one holds this many `ROWS` of delivered messages (and a tenth as many as its live ones), between autovacuum's visits; 0 leaves it to autovacuum"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 20 * time.Second, EnvVars: []string{"MEDIATOR_SHUTDOWN_TIMEOUT"},
				Usage: "`DURATION` allowed for a graceful shutdown on SIGTERM/SIGINT"},
			&cli.StringFlag{Name: "webhook-url", EnvVars: []string{"MEDIATOR_WEBHOOK_URL"},
				Usage: "`URL` that receives a signed JSON POST when a message is queued for a wallet that is offline everywhere"},
			&cli.StringFlag{Name: "webhook-secret", EnvVars: []string{"MEDIATOR_WEBHOOK_SECRET"},
				Usage: "`SECRET` for the webhook's HMAC-SHA256 signature header (or use --webhook-secret-file)"},
			&cli.StringFlag{Name: "webhook-secret-file", EnvVars: []string{"MEDIATOR_WEBHOOK_SECRET_FILE"},
				Usage: "`FILE` holding the webhook secret"},
			&cli.Int64Flag{Name: "gc-heap-floor-bytes", Value: 64 << 20, EnvVars: []string{"MEDIATOR_GC_HEAP_FLOOR_BYTES"},
				Usage: "heap size in `BYTES` the Go garbage collector lets the heap reach before it runs; above it GOGC rules as usual (GOMEMLIMIT still caps it). Under load a small heap otherwise costs a collection every few milliseconds; 0: GOGC alone"},
			&cli.BoolFlag{Name: "auto-grant", Value: true, EnvVars: []string{"MEDIATOR_AUTO_GRANT"},
				Usage: "grant every mediation request (false: deny them)"},
		),
		Before: loadConfigFile,
		Action: runServe,
	}
}

// validateServe checks settings that each look fine alone but not together.
func validateServe(c *cli.Context) error {
	positive := []string{"ws-ping-interval", "delivery-lease", "heartbeat-interval", "instance-ttl", "shutdown-timeout"}
	for _, name := range positive {
		if c.Duration(name) <= 0 {
			return fmt.Errorf("--%s must be positive", name)
		}
	}
	if c.Duration("reconcile-interval") < 0 || c.Duration("ack-grace") < 0 {
		return fmt.Errorf("--reconcile-interval and --ack-grace cannot be negative")
	}
	if hb, ttl := c.Duration("heartbeat-interval"), c.Duration("instance-ttl"); ttl < 3*hb {
		return fmt.Errorf("--instance-ttl (%s) must be at least 3 × --heartbeat-interval (%s), or live instances are taken for dead", ttl, hb)
	}
	if c.Duration("ack-grace") >= c.Duration("delivery-lease") {
		return fmt.Errorf("--ack-grace (%s) must be shorter than --delivery-lease (%s)", c.Duration("ack-grace"), c.Duration("delivery-lease"))
	}
	if c.Int64("max-message-bytes") < 1024 {
		return fmt.Errorf("--max-message-bytes must be at least 1024")
	}
	if f := c.Int64("gc-heap-floor-bytes"); f < 0 || f > 1<<40 {
		return fmt.Errorf("--gc-heap-floor-bytes must be between 0 and 1 TiB")
	}
	return nil
}

func runServe(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return fmt.Errorf("unexpected argument %q: serve takes only flags (write booleans as --auto-grant=false)", c.Args().First())
	}
	if err := validateServe(c); err != nil {
		return err
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	defer heapfloor.Start(uint64(c.Int64("gc-heap-floor-bytes")), log).Stop()
	eps, err := endpoints(c)
	if err != nil {
		return err
	}
	lim, err := readLimits(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	// Bind first: a busy or malformed --listen should fail before the
	// database is touched. Connections wait in the backlog until Serve.
	ln, err := net.Listen("tcp", c.String(flagListen.Name))
	if err != nil {
		return fmt.Errorf("--listen %q (want HOST:PORT, e.g. 0.0.0.0:8080): %w", c.String(flagListen.Name), err)
	}
	defer ln.Close()
	if !c.IsSet(flagEndpoint.Name) {
		if host, _, _ := net.SplitHostPort(c.String(flagListen.Name)); host == "" || host == "0.0.0.0" || host == "::" {
			log.Warn("no --endpoint: wallets are told " + eps[0] + ", which only this machine can reach; set --endpoint to the public https:// and wss:// URLs")
		}
	}
	instance := instanceID()
	st, err := openStores(ctx, c, log, instance)
	if err != nil {
		return err
	}
	defer st.close()
	if !st.durable {
		log.Warn("no --database-url: running on the in-memory store; connections, keys and queued messages are lost on restart")
	}
	mx := metrics.New(metrics.Options{Version: version})
	lim.hooks = limitHooks{OnLimit: mx.LimitRejected, OnQueueSoftCap: mx.QueueSoftCapExceeded,
		OnExpired: mx.MessagesExpired, OnDirect: mx.DirectDelivery}
	notifier, err := newNotifier(c, log, st.store, mx.WebhookResult)
	if err != nil {
		return err
	}
	pk := pickup.New(st.queue, pickup.Options{Instance: instance, Logger: log, Implicit: c.Bool("implicit-pickup"),
		Registry: st.queue, AckGrace: c.Duration("ack-grace"), Observer: mx})
	mx.WatchLiveSessions(pk.LiveSessionsByProtocol)
	cfg := mediator.Config{Endpoints: eps, Label: c.String(flagLabel.Name), AutoGrant: c.Bool("auto-grant"),
		Instance: instance, Logger: log, Observer: mx}
	if notifier != nil {
		cfg.Notifier = notifier
	}
	agent, err := mediator.New(ctx, lim.mediatorConfig(cfg), st.store, st.queue, st.keys, pk)
	if err != nil {
		return err
	}

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/invitation", agent.InvitationHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	isReady := readiness(&ready, st)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		// Load balancers probe the public port; the reason stays private
		// (it is on the admin listener's /readyz).
		if err := isReady(r.Context()); err != nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	srv := transport.NewServer(lim.transportConfig(transport.Config{
		MaxMessageBytes: c.Int64("max-message-bytes"),
		PingInterval:    c.Duration("ws-ping-interval"),
		Other:           mux,
		Logger:          log,
		OnSocketOpen:    func(transport.Session) { mx.SocketOpened() },
		OnSocketClose:   func(transport.Session) { mx.SocketClosed() },
	}), agent)
	stopAdmin, err := startAdminListener(ctx, c.String(flagAdminListen.Name), c.Bool(flagAdminPprof.Name), mx.Registry(), isReady, log)
	if err != nil {
		return err
	}
	defer func() { _ = stopAdmin(context.WithoutCancel(ctx)) }()

	// Background work stops when runCtx ends, after the listener has closed.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	var bg sync.WaitGroup
	if err := lim.startQueueLimits(runCtx, st.queue, log, &bg); err != nil {
		return err
	}
	if notifier != nil {
		notifier.Start(runCtx)
	}
	if st.cluster != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			err := st.cluster.Run(runCtx, queuepg.ClusterOptions{
				Instance:       instance,
				Heartbeat:      c.Duration("heartbeat-interval"),
				InstanceTTL:    c.Duration("instance-ttl"),
				ReconcileEvery: c.Duration("reconcile-interval"),
				OnWake:         pk.MessageQueued,
				OnReconcile:    pk.Reconcile,
				OnNotifyLag:    mx.NotificationLag,
				VacuumDeadRows: vacuumDeadRows(c.Int("vacuum-dead-rows")),
				Logger:         log,
			})
			if err != nil && runCtx.Err() == nil {
				log.Error("cluster membership stopped", "err", err)
			}
		}()
	} else {
		bg.Add(1)
		go func() {
			defer bg.Done()
			reconcileLoop(runCtx, c.Duration("reconcile-interval"), pk.Reconcile)
		}()
	}

	bg.Add(1)
	go func() {
		defer bg.Done()
		observeStores(runCtx, mx, st, log)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(runCtx, ln) }()
	ready.Store(true)
	log.Info("mediator ready", "listen", ln.Addr().String(), "endpoints", eps, "instance", instance,
		"durable", st.durable, "auto_grant", c.Bool("auto-grant"), "implicit_pickup", c.Bool("implicit-pickup"))
	log.Info("invitation", "url", agent.Invitation().URL())
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}

	// Graceful shutdown: report not ready, stop accepting and close the
	// sockets, let session clean-ups return their in-flight messages, then
	// leave the cluster (this instance's sessions and leases go) and stop.
	log.Info("shutting down")
	ready.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Duration("shutdown-timeout"))
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("transport shutdown incomplete", "err", err)
	}
	if err := pk.Close(shutdownCtx); err != nil {
		log.Warn("pickup shutdown incomplete", "err", err)
	}
	if st.cluster != nil {
		if err := st.cluster.Leave(shutdownCtx, instance); err != nil {
			log.Warn("leaving the cluster failed; the janitor of another instance cleans up", "err", err)
		}
	}
	if notifier != nil {
		if err := notifier.Close(shutdownCtx); err != nil {
			log.Warn("webhook flush incomplete", "err", err)
		}
	}
	stopRun()
	bg.Wait()
	<-errc
	log.Info("stopped")
	return nil
}

// reconcileLoop wakes every local push session periodically (in-memory
// mode has no cluster loop to do it).
func reconcileLoop(ctx context.Context, every time.Duration, reconcile func(context.Context)) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			reconcile(ctx)
		}
	}
}

// vacuumDeadRows maps --vacuum-dead-rows (0: off) to
// queuepg.ClusterOptions.VacuumDeadRows (0: default, negative: off).
func vacuumDeadRows(flag int) int {
	if flag <= 0 {
		return -1
	}
	return flag
}
