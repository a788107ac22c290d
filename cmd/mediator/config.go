package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/internal/pgdb"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/notify"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/storepg"
)

// Flags shared by the commands that need the mediator's identity.
var (
	flagListen = &cli.StringFlag{
		Name: "listen", Value: "127.0.0.1:8080", EnvVars: []string{"MEDIATOR_LISTEN"},
		Usage: "`HOST:PORT` serving DIDComm over HTTP POST and WebSocket",
	}
	flagEndpoint = &cli.StringSliceFlag{
		Name: "endpoint", EnvVars: []string{"MEDIATOR_ENDPOINT"},
		Usage: "`URL` wallets use to reach this mediator, repeatable: the http(s) one first, then the ws(s) one (default: http:// and ws:// on --listen)",
	}
	flagDatabaseURL = &cli.StringFlag{
		Name: "database-url", EnvVars: []string{"MEDIATOR_DATABASE_URL"},
		Usage: "PostgreSQL `URL`, e.g. postgres://user:pass@host:5432/mediator (created if missing); empty: in-memory, nothing survives a restart. The pool opens up to max(16, 4 × CPUs) connections and turns JIT off unless the URL sets pool_max_conns or jit",
	}
	flagMasterKey = &cli.StringFlag{
		Name: "master-key", EnvVars: []string{"MEDIATOR_MASTER_KEY"},
		Usage: "`KEY` sealing the mediator's private keys at rest: 32 bytes as 64 hex characters or base64 (openssl rand -hex 32); required with a database and the same on every instance",
	}
	flagLogFormat = &cli.StringFlag{
		Name: "log-format", Value: "text", EnvVars: []string{"MEDIATOR_LOG_FORMAT"},
		Usage: "log `FORMAT`: text or json",
	}
	flagLogLevel = &cli.StringFlag{
		Name: "log-level", Value: "info", EnvVars: []string{"MEDIATOR_LOG_LEVEL"},
		Usage: "log `LEVEL`: debug, info, warn or error",
	}
	flagLabel = &cli.StringFlag{
		Name: "label", Value: "Mediator", EnvVars: []string{"MEDIATOR_LABEL"},
		Usage: "`LABEL` shown to wallets in the invitation",
	}
)

func identityFlags() []cli.Flag {
	return []cli.Flag{flagConfig, flagListen, flagEndpoint, flagDatabaseURL, flagDatabasePasswordFile,
		flagMasterKey, flagMasterKeyFile, flagLabel, flagLogFormat, flagLogLevel}
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String(flagLogLevel.Name))); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String(flagLogLevel.Name))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String(flagLogFormat.Name) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", c.String(flagLogFormat.Name))
	}
}

// endpoints returns the configured endpoints, or http:// and ws:// URLs on
// the listen address. Each must be an absolute http(s) or ws(s) URL.
func endpoints(c *cli.Context) ([]string, error) {
	var eps []string
	for _, e := range c.StringSlice(flagEndpoint.Name) {
		for _, part := range strings.Split(e, ",") {
			if part = strings.TrimSpace(part); part != "" {
				eps = append(eps, part)
			}
		}
	}
	if len(eps) == 0 {
		host, port, err := net.SplitHostPort(c.String(flagListen.Name))
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %w", c.String(flagListen.Name), err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		hp := net.JoinHostPort(host, port)
		return []string{"http://" + hp, "ws://" + hp}, nil
	}
	hasHTTP := false
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--endpoint %q: not an absolute URL", e)
		}
		switch u.Scheme {
		case "http", "https":
			hasHTTP = true
		case "ws", "wss":
		default:
			return nil, fmt.Errorf("--endpoint %q: scheme must be http, https, ws or wss", e)
		}
	}
	if !hasHTTP {
		return nil, fmt.Errorf("--endpoint: give at least one http(s) URL (wallets and senders POST to it)")
	}
	return eps, nil
}

// stores is the persistence the mediator runs on.
type stores struct {
	store mediator.Store
	queue interface {
		mediator.Queue
		pickup.Queue
		pickup.Registry
	}
	keys    *keyring.Keyring
	cluster *queuepg.Queue // nil in memory: one process is the whole cluster
	ping    func(ctx context.Context) error
	close   func()
	durable bool
}

// queueLease is how long a handed-out message waits for its acknowledgement
// before it can be delivered again.
const queueLease = 60 * time.Second

// openStores opens PostgreSQL (creating and migrating the database) or,
// with no database URL, the in-memory store.
func openStores(ctx context.Context, c *cli.Context, log *slog.Logger, instance string) (*stores, error) {
	lease, ackGrace, ttl := queueLease, time.Duration(0), time.Duration(0)
	if c.IsSet("delivery-lease") {
		lease = c.Duration("delivery-lease")
	}
	if c.Command.Name == "serve" {
		ackGrace, ttl = c.Duration("ack-grace"), c.Duration("instance-ttl")
	}
	dbURL, err := databaseURL(c)
	if err != nil {
		return nil, err
	}
	masterText, err := masterKeyText(c)
	if err != nil {
		return nil, err
	}
	if dbURL == "" {
		master := make([]byte, keyring.MasterKeySize)
		if masterText != "" {
			m, err := keyring.ParseMasterKey(masterText)
			if err != nil {
				return nil, fmt.Errorf("--master-key: %w", err)
			}
			master = m
		} else if _, err := rand.Read(master); err != nil {
			return nil, err
		}
		mem := memstore.New(memstore.Options{Lease: lease, AckGrace: ackGrace})
		keys, err := keyring.New(mem, master)
		if err != nil {
			return nil, err
		}
		return &stores{store: mem, queue: mem, keys: keys, close: func() {},
			ping: func(context.Context) error { return nil }}, nil
	}
	if masterText == "" {
		return nil, fmt.Errorf("--master-key (MEDIATOR_MASTER_KEY) or --master-key-file is required with --database-url: generate one with `openssl rand -hex 32` and give every instance the same")
	}
	master, err := keyring.ParseMasterKey(masterText)
	if err != nil {
		return nil, fmt.Errorf("--master-key: %w", err)
	}
	pool, err := pgdb.Open(ctx, withPoolDefaults(dbURL), log)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	// A migration that older instances cannot run beside waits for
	// `mediator migrate` while any of them is alive (a rolling upgrade).
	aliveWithin := ttl
	if aliveWithin <= 0 {
		aliveWithin = queuepg.DefaultInstanceTTL
	}
	if err := pgdb.MigrateAtStart(ctx, pool, log, aliveWithin); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database migration failed, not starting: %w", err)
	}
	// Settings that hurt (autovacuum off) are warned about, not refused:
	// an operator may vacuum by hand.
	if _, err := pgdb.CheckServer(ctx, pool, log); err != nil {
		log.WarnContext(ctx, "could not check the database server's settings", "err", err)
	}
	st := storepg.New(pool)
	keys, err := keyring.New(st, master)
	if err != nil {
		pool.Close()
		return nil, err
	}
	q := queuepg.New(pool, queuepg.Options{Lease: lease, Instance: instance, InstanceTTL: ttl, AckGrace: ackGrace})
	return &stores{store: st, queue: q, keys: keys, cluster: q, close: pool.Close, durable: true,
		ping: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return pool.Ping(ctx)
		}}, nil
}

// Connection pool defaults, applied by withPoolDefaults unless the database
// URL sets them itself.
//
// pool_max_conns: pgx's own default, max(4, CPUs), made forwards, pickups,
// registry updates and heartbeats queue for a handful of connections (91 %
// of the blocked time under load was waiting in pgxpool.Acquire). Forwards
// now share a few connections (queuepg's group commit); the rest still take
// one per request: max(16, 4 × CPUs) per instance, which leaves room for
// several instances under PostgreSQL's default max_connections (100).
// Connections are opened on demand, so an idle instance holds few.
//
// jit: the mediator runs short OLTP statements only. PostgreSQL's JIT kicks
// in on plan cost alone, and the batched forward statement's cost estimate
// (a bounded count per connection of a large queue) can pass
// jit_above_cost; compiling then takes milliseconds for a statement that
// runs in a fraction of one.
func poolMaxConns() int { return max(16, 4*runtime.NumCPU()) }

// withPoolDefaults adds pool_max_conns (see poolMaxConns) and jit=off to a
// database URL (postgres://… or key=value form) that does not set them.
func withPoolDefaults(dbURL string) string {
	defaults := [][2]string{{"pool_max_conns", strconv.Itoa(poolMaxConns())}, {"jit", "off"}}
	if u, err := url.Parse(dbURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		for _, d := range defaults {
			if !q.Has(d[0]) {
				q.Set(d[0], d[1])
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for _, d := range defaults {
		if !regexp.MustCompile(`(^|\s)` + d[0] + `\s*=`).MatchString(dbURL) {
			dbURL += " " + d[0] + "=" + d[1]
		}
	}
	return dbURL
}

func instanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%x", host, os.Getpid(), b)
}

// newNotifier builds the offline-recipient webhook, or nil if none is set.
func newNotifier(c *cli.Context, log *slog.Logger, store mediator.Store, onResult func(outcome string)) (*notify.Webhook, error) {
	u := c.String("webhook-url")
	if u == "" {
		return nil, nil
	}
	secret := c.String("webhook-secret")
	if f := c.String("webhook-secret-file"); f != "" {
		if secret != "" {
			return nil, fmt.Errorf("give --webhook-secret or --webhook-secret-file, not both")
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--webhook-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	w, err := notify.NewWebhook(notify.WebhookConfig{
		URL:      u,
		Secret:   []byte(secret),
		Lookup:   store.DeviceInfo,
		Logger:   log,
		OnResult: onResult,
	})
	if err != nil {
		return nil, fmt.Errorf("--webhook-url: %w", err)
	}
	return w, nil
}
