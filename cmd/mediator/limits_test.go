package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// parseLimits runs a command with the limit flags and returns what
// readLimits made of them.
func parseLimits(t *testing.T, args []string, env map[string]string) (*limitSettings, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var (
		got  *limitSettings
		rerr error
	)
	cmd := &cli.Command{Name: "serve", Flags: limitFlags(), Action: func(c *cli.Context) error {
		got, rerr = readLimits(c)
		return nil
	}}
	app := &cli.App{Name: "mediator", Commands: []*cli.Command{cmd}, Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}}
	if err := app.Run(append([]string{"mediator", "serve"}, args...)); err != nil {
		t.Fatalf("flags %v: %v", args, err)
	}
	return got, rerr
}

func TestLimitFlagDefaults(t *testing.T) {
	l, err := parseLimits(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.caps != (queue.Caps{Soft: 1000, Hard: 10000}) || l.ttl != 0 || l.ttlEvery != time.Minute ||
		l.maxSockets != 0 || l.ipRate != 0 || l.connRate != 0 || len(l.trustedProxies) != 0 ||
		l.forwarding.Strategy != mediator.ForwardQueueOnly || l.forwarding.DirectTimeout != 3*time.Second ||
		l.forwarding.AllowPrivateEndpoints {
		t.Errorf("defaults = %+v", l)
	}
}

func TestLimitFlagsFromFlagsAndEnv(t *testing.T) {
	l, err := parseLimits(t, []string{"--queue-hard-cap", "3", "--queue-soft-cap", "2", "--ip-rate", "5",
		"--trusted-proxies", "10.0.0.0/8", "--trusted-proxies", "192.0.2.1,2001:db8::/32", "--forwarding-strategy", "direct-then-queue"},
		map[string]string{"MEDIATOR_MESSAGE_TTL": "720h", "MEDIATOR_MAX_SOCKETS": "2", "MEDIATOR_IP_BURST": "7",
			"MEDIATOR_CONNECTION_RATE": "1.5", "MEDIATOR_CONNECTION_BURST": "4", "MEDIATOR_DIRECT_DELIVERY_TIMEOUT": "1s",
			"MEDIATOR_DIRECT_DELIVERY_ALLOW_PRIVATE": "true"})
	if err != nil {
		t.Fatal(err)
	}
	wantProxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("2001:db8::/32")}
	if l.caps != (queue.Caps{Soft: 2, Hard: 3}) || l.ttl != 720*time.Hour || l.maxSockets != 2 ||
		l.ipRate != 5 || l.ipBurst != 7 || l.connRate != 1.5 || l.connBurst != 4 ||
		len(l.trustedProxies) != 3 || l.trustedProxies[0] != wantProxies[0] || l.trustedProxies[1] != wantProxies[1] ||
		l.trustedProxies[2] != wantProxies[2] || l.forwarding.Strategy != mediator.ForwardDirectThenQueue ||
		l.forwarding.DirectTimeout != time.Second || !l.forwarding.AllowPrivateEndpoints {
		t.Errorf("settings = %+v", l)
	}

	tc := l.transportConfig(transport.Config{MaxMessageBytes: 99})
	if tc.MaxMessageBytes != 99 || tc.MaxSockets != 2 || tc.IPRate != 5 || tc.IPBurst != 7 || len(tc.TrustedProxies) != 3 {
		t.Errorf("transport config = %+v", tc)
	}
	mc := l.mediatorConfig(mediator.Config{Label: "kept"})
	if mc.Label != "kept" || mc.Limits.ConnectionRate != 1.5 || mc.Limits.ConnectionBurst != 4 ||
		mc.Forwarding.Strategy != mediator.ForwardDirectThenQueue {
		t.Errorf("mediator config = %+v", mc)
	}
}

func TestLimitFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--queue-soft-cap", "20", "--queue-hard-cap", "10"}, "soft cap 20 is above hard cap 10"},
		{[]string{"--queue-hard-cap", "-1"}, "negative cap"},
		{[]string{"--message-ttl", "-1h"}, "--message-ttl"},
		{[]string{"--message-ttl-interval", "0s"}, "--message-ttl-interval"},
		{[]string{"--ip-rate", "-2"}, "--ip-rate"},
		{[]string{"--max-sockets", "-1"}, "--max-sockets"},
		{[]string{"--trusted-proxies", "10.0.0.0/33"}, `--trusted-proxies "10.0.0.0/33"`},
		{[]string{"--trusted-proxies", "proxy.local"}, "not an IP address or CIDR"},
		{[]string{"--forwarding-strategy", "direct"}, "queue-only or direct-then-queue"},
		{[]string{"--direct-delivery-timeout", "0s"}, "--direct-delivery-timeout"},
	} {
		_, err := parseLimits(t, tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

// The wiring bites: caps set on the queue, the TTL job running, the socket
// bound on the transport, the hooks called.
func TestLimitWiring(t *testing.T) {
	l, err := parseLimits(t, []string{"--queue-soft-cap", "1", "--queue-hard-cap", "2", "--message-ttl", "1h",
		"--max-sockets", "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		limits  []string
		expired = make(chan int, 1)
	)
	l.hooks = limitHooks{
		OnLimit:   func(name string) { mu.Lock(); limits = append(limits, name); mu.Unlock() },
		OnExpired: func(n int) { expired <- n },
	}

	now := time.Now()
	mem := memstore.New(memstore.Options{Now: func() time.Time { return now }})
	conn, key := "0f8c1a52-3a55-4c1f-9c0e-6d2b1f1e2a10", "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	enqueue := func() error { _, err := mem.Enqueue(ctx, conn, key, []byte(`{}`)); return err }
	if err := enqueue(); err != nil { // before the TTL job: aged below
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	if err := l.startQueueLimits(ctx, mem, slog.New(slog.DiscardHandler), &wg); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-expired:
		if n != 1 {
			t.Errorf("expired %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the TTL job did not run")
	}
	if err := enqueue(); err != nil {
		t.Fatal(err)
	}
	if err := enqueue(); err != nil {
		t.Fatal(err)
	}
	if err := enqueue(); !errors.Is(err, queue.ErrQueueFull) {
		t.Errorf("third enqueue under --queue-hard-cap 2: %v, want ErrQueueFull", err)
	}

	srv := transport.NewServer(l.transportConfig(transport.Config{Logger: slog.New(slog.DiscardHandler)}),
		limitsTestHandler(func(context.Context, []byte, transport.Session) error { return nil }))
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(ts.URL, "http")
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer c.Close()
	_, resp, err = websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second socket under --max-sockets 1: %v, want 503", err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(limits) != 1 || limits[0] != transport.LimitSockets {
		t.Errorf("OnLimit calls %v, want [%s]", limits, transport.LimitSockets)
	}
}

type limitsTestHandler func(ctx context.Context, packed []byte, s transport.Session) error

func (f limitsTestHandler) HandleInbound(ctx context.Context, packed []byte, s transport.Session) error {
	return f(ctx, packed, s)
}
