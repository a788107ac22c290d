package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// Limit flag defaults. The queue caps are on by default (they only refuse
// what a wallet that never picks up would pile up); the rates and the
// socket bound are off, because their right values depend on the
// deployment (behind a proxy without --trusted-proxies every client would
// share the proxy's per-IP bucket); the TTL is off so that nothing is
// deleted unless an operator asked for it.
const (
	defaultQueueSoftCap = 1000
	defaultQueueHardCap = 10000
)

// limitFlags are serve's flags for the limits and the forwarding strategy.
func limitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "queue-soft-cap", Value: defaultQueueSoftCap, EnvVars: []string{"MEDIATOR_QUEUE_SOFT_CAP"},
			Usage: "`MESSAGES` queued for one connection above which a warning is logged (once per 10 minutes per connection) and counted; 0: off"},
		&cli.IntFlag{Name: "queue-hard-cap", Value: defaultQueueHardCap, EnvVars: []string{"MEDIATOR_QUEUE_HARD_CAP"},
			Usage: "`MESSAGES` queued for one connection at which further messages for it are refused with HTTP 507 (nothing queued is lost); 0: off"},
		&cli.DurationFlag{Name: "message-ttl", EnvVars: []string{"MEDIATOR_MESSAGE_TTL"},
			Usage: "`DURATION` after which a queued message that was not picked up is deleted (e.g. 720h); 0: keep messages until picked up"},
		&cli.DurationFlag{Name: "message-ttl-interval", Value: queue.DefaultExpireEvery, EnvVars: []string{"MEDIATOR_MESSAGE_TTL_INTERVAL"},
			Usage: "`DURATION` between passes that delete expired messages (one instance at a time does a pass)"},
		&cli.IntFlag{Name: "max-sockets", EnvVars: []string{"MEDIATOR_MAX_SOCKETS"},
			Usage: "most live WebSockets on this instance (`N`); further upgrades get HTTP 503 with Retry-After; 0: no bound"},
		&cli.Float64Flag{Name: "ip-rate", EnvVars: []string{"MEDIATOR_IP_RATE"},
			Usage: "DIDComm requests per second (`RATE`: POSTs, WebSocket upgrades and WebSocket messages) one client IP may make on this instance; over it: HTTP 429, or WebSocket close 1008 when far over; 0: no limit"},
		&cli.IntFlag{Name: "ip-burst", EnvVars: []string{"MEDIATOR_IP_BURST"},
			Usage: "requests one client IP may make at once (`N`; default: --ip-rate rounded up)"},
		&cli.StringSliceFlag{Name: "trusted-proxies", EnvVars: []string{"MEDIATOR_TRUSTED_PROXIES"},
			Usage: "`CIDR`s of proxies whose X-Forwarded-For names the client for --ip-rate, repeatable or comma-separated (e.g. 10.0.0.0/8); empty: X-Forwarded-For is ignored"},
		&cli.Float64Flag{Name: "connection-rate", EnvVars: []string{"MEDIATOR_CONNECTION_RATE"},
			Usage: "messages per second (`RATE`) one DIDComm connection may send to this instance; over it: HTTP 429 (a problem report on a WebSocket return route); 0: no limit"},
		&cli.IntFlag{Name: "connection-burst", EnvVars: []string{"MEDIATOR_CONNECTION_BURST"},
			Usage: "messages one connection may send at once (`N`; default: --connection-rate rounded up)"},
		&cli.StringFlag{Name: "forwarding-strategy", Value: string(mediator.ForwardQueueOnly), EnvVars: []string{"MEDIATOR_FORWARDING_STRATEGY"},
			Usage: "`STRATEGY` for forwards: queue-only (queue for pickup) or direct-then-queue (POST to the recipient's own http(s) endpoint first, queue if that fails)"},
		&cli.DurationFlag{Name: "direct-delivery-timeout", Value: mediator.DefaultDirectTimeout, EnvVars: []string{"MEDIATOR_DIRECT_DELIVERY_TIMEOUT"},
			Usage: "`DURATION` one direct delivery attempt may take (direct-then-queue) before the message is queued instead"},
		&cli.BoolFlag{Name: "direct-delivery-allow-private", EnvVars: []string{"MEDIATOR_DIRECT_DELIVERY_ALLOW_PRIVATE"},
			Usage: "let direct delivery connect to private, loopback and link-local addresses (only if your agents live on a private network: endpoints come from peers' DID documents)"},
	}
}

// limitHooks connect the limits to metrics. Any may be nil.
type limitHooks struct {
	OnLimit        func(name string) // a refusal, by limit name (transport.Limit*, mediator.Limit*)
	OnQueueSoftCap func()            // a message queued beyond its connection's soft cap
	OnExpired      func(n int)       // messages deleted by the TTL
	OnDirect       func(delivered bool)
}

// limitSettings are the validated limit flags.
type limitSettings struct {
	caps           queue.Caps
	ttl, ttlEvery  time.Duration
	maxSockets     int
	ipRate         float64
	ipBurst        int
	trustedProxies []netip.Prefix
	connRate       float64
	connBurst      int
	forwarding     mediator.Forwarding
	hooks          limitHooks
}

// readLimits reads and checks the limit flags.
func readLimits(c *cli.Context) (*limitSettings, error) {
	l := &limitSettings{
		caps:       queue.Caps{Soft: c.Int("queue-soft-cap"), Hard: c.Int("queue-hard-cap")},
		ttl:        c.Duration("message-ttl"),
		ttlEvery:   c.Duration("message-ttl-interval"),
		maxSockets: c.Int("max-sockets"),
		ipRate:     c.Float64("ip-rate"),
		ipBurst:    c.Int("ip-burst"),
		connRate:   c.Float64("connection-rate"),
		connBurst:  c.Int("connection-burst"),
	}
	if err := l.caps.Validate(); err != nil {
		return nil, fmt.Errorf("--queue-soft-cap/--queue-hard-cap: %w (use 0 to turn a cap off)", err)
	}
	if l.ttl < 0 {
		return nil, fmt.Errorf("--message-ttl %v: must be 0 (off) or positive", l.ttl)
	}
	if l.ttlEvery <= 0 {
		return nil, fmt.Errorf("--message-ttl-interval %v: must be positive", l.ttlEvery)
	}
	for _, n := range []struct {
		name string
		v    float64
	}{{"max-sockets", float64(l.maxSockets)}, {"ip-rate", l.ipRate}, {"ip-burst", float64(l.ipBurst)},
		{"connection-rate", l.connRate}, {"connection-burst", float64(l.connBurst)}} {
		if n.v < 0 || n.v != n.v {
			return nil, fmt.Errorf("--%s %v: must be 0 (off) or positive", n.name, n.v)
		}
	}
	for _, v := range c.StringSlice("trusted-proxies") {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			p, err := parsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("--trusted-proxies %q: not an IP address or CIDR (e.g. 10.0.0.0/8)", s)
			}
			l.trustedProxies = append(l.trustedProxies, p)
		}
	}
	strategy, err := mediator.ParseForwardingStrategy(c.String("forwarding-strategy"))
	if err != nil {
		return nil, fmt.Errorf("--forwarding-strategy: %w", err)
	}
	timeout := c.Duration("direct-delivery-timeout")
	if timeout <= 0 {
		return nil, fmt.Errorf("--direct-delivery-timeout %v: must be positive", timeout)
	}
	l.forwarding = mediator.Forwarding{Strategy: strategy, DirectTimeout: timeout,
		AllowPrivateEndpoints: c.Bool("direct-delivery-allow-private")}
	return l, nil
}

// parsePrefix reads a CIDR or a single address (as its /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// transportConfig adds the transport's limits to cfg.
func (l *limitSettings) transportConfig(cfg transport.Config) transport.Config {
	cfg.MaxSockets = l.maxSockets
	cfg.IPRate, cfg.IPBurst = l.ipRate, l.ipBurst
	cfg.TrustedProxies = l.trustedProxies
	cfg.OnLimit = l.hooks.OnLimit
	return cfg
}

// mediatorConfig adds the agent's limits and forwarding strategy to cfg.
func (l *limitSettings) mediatorConfig(cfg mediator.Config) mediator.Config {
	cfg.Limits.ConnectionRate, cfg.Limits.ConnectionBurst = l.connRate, l.connBurst
	cfg.Limits.OnLimit = l.hooks.OnLimit
	cfg.Limits.OnQueueSoftCap = l.hooks.OnQueueSoftCap
	cfg.Forwarding = l.forwarding
	cfg.Forwarding.OnDirect = l.hooks.OnDirect
	return cfg
}

// limitedQueue is what both stores' queues offer for the limits.
type limitedQueue interface {
	SetCaps(queue.Caps)
	RunExpiry(ctx context.Context, o queue.ExpiryOptions) error
}

// startQueueLimits sets the queue caps on q and, with a TTL, runs the
// expiry job in the background (in wg) until ctx ends. Call it before
// serving.
func (l *limitSettings) startQueueLimits(ctx context.Context, q any, log *slog.Logger, wg *sync.WaitGroup) error {
	lq, ok := q.(limitedQueue)
	if !ok {
		return fmt.Errorf("the queue (%T) does not support caps and expiry", q)
	}
	lq.SetCaps(l.caps)
	log.Info("limits", "queue_soft_cap", l.caps.Soft, "queue_hard_cap", l.caps.Hard, "message_ttl", l.ttl,
		"max_sockets", l.maxSockets, "ip_rate", l.ipRate, "ip_burst", l.ipBurst, "trusted_proxies", len(l.trustedProxies),
		"connection_rate", l.connRate, "connection_burst", l.connBurst, "forwarding_strategy", l.forwarding.Strategy)
	if l.ipRate > 0 && len(l.trustedProxies) == 0 {
		log.Info("--ip-rate counts the TCP peer: behind a proxy or load balancer, give --trusted-proxies or every client shares the proxy's bucket")
	}
	if l.ttl <= 0 {
		return nil
	}
	wg.Go(func() {
		_ = lq.RunExpiry(ctx, queue.ExpiryOptions{TTL: l.ttl, Every: l.ttlEvery, OnExpired: l.hooks.OnExpired, Logger: log})
	})
	return nil
}
