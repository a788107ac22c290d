package mediator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/openmediator/mediator/record"
)

// ForwardingStrategy is how the agent handles a forward.
type ForwardingStrategy string

const (
	// ForwardQueueOnly queues every forward for pickup (Credo's
	// QueueOnly): one database round trip per forward. The default.
	ForwardQueueOnly ForwardingStrategy = "queue-only"
	// ForwardDirectThenQueue first tries to POST the forwarded message to
	// the recipient's own endpoint when its connection has an http(s) one
	// (an agent such as ACA-Py, which never picks up), and queues it when
	// that fails (Credo's DirectDelivery, minus the open-session step: live
	// sessions are served from the queue anyway).
	ForwardDirectThenQueue ForwardingStrategy = "direct-then-queue"
)

// ParseForwardingStrategy reads a strategy name; "" is ForwardQueueOnly.
func ParseForwardingStrategy(s string) (ForwardingStrategy, error) {
	switch ForwardingStrategy(s) {
	case "", ForwardQueueOnly:
		return ForwardQueueOnly, nil
	case ForwardDirectThenQueue:
		return ForwardDirectThenQueue, nil
	}
	return "", fmt.Errorf("unknown forwarding strategy %q: use %s or %s", s, ForwardQueueOnly, ForwardDirectThenQueue)
}

// DefaultDirectTimeout bounds one direct delivery attempt.
const DefaultDirectTimeout = 3 * time.Second

// ctDIDCommEnvelope is the content type of a packed DIDComm v1 message
// (RFC 0044).
const ctDIDCommEnvelope = "application/didcomm-envelope-enc"

// Forwarding configures how forwards are delivered.
//
// With ForwardDirectThenQueue, a forward whose recipient key is routed to a
// connection whose TheirEndpoint is an http(s) URL (not
// didcomm:transport/queue) is POSTed there as is, the inner packed message
// with Content-Type application/didcomm-envelope-enc: any 2xx answer means
// delivered and nothing is queued; anything else (an error, a timeout, a
// redirect, another status) queues the message as QueueOnly would. Finding
// the connection is one more database round trip, made only in this mode.
//
// The attempt is bounded by DirectTimeout (default 3s) and by half of what
// is left of the sender's request deadline, so that queueing after a failed
// attempt still has time: a sender waits at most that long more than with
// QueueOnly. A delivery that timed out may still have arrived and then is
// also queued: the recipient may see the message twice (at least once,
// never lost).
//
// Endpoints come from the peers' DID documents, so by default the mediator
// only connects to public unicast addresses (checked on the resolved
// address at connect time, so DNS cannot point it inside):
// AllowPrivateEndpoints lifts that for deployments whose agents live on a
// private network. Proxies from the environment are not used.
type Forwarding struct {
	Strategy              ForwardingStrategy
	DirectTimeout         time.Duration
	AllowPrivateEndpoints bool
	// Client, if set, is used instead of the built-in one (whose address
	// check it then does not have); its own timeouts apply too.
	Client *http.Client
	// OnDirect, when set, is called after each direct delivery attempt with
	// whether it delivered (for metrics).
	OnDirect func(delivered bool)
}

// init validates the strategy and sets defaults.
func (f *Forwarding) init() error {
	s, err := ParseForwardingStrategy(string(f.Strategy))
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	f.Strategy = s
	if f.DirectTimeout <= 0 {
		f.DirectTimeout = DefaultDirectTimeout
	}
	return nil
}

// newDirectClient is the HTTP client for direct delivery.
func newDirectClient(f Forwarding) *http.Client {
	if f.Client != nil {
		return f.Client
	}
	dialer := &net.Dialer{Timeout: f.DirectTimeout}
	if !f.AllowPrivateEndpoints {
		dialer.Control = publicOnly
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   f.DirectTimeout,
			ResponseHeaderTimeout: f.DirectTimeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		// A redirect is not a delivery: queue instead of following it
		// somewhere the check above did not vet.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errPrivateAddress refuses a connection to a non-public address.
var errPrivateAddress = errors.New("not a public unicast address (see AllowPrivateEndpoints)")

// publicOnly is a net.Dialer Control that refuses non-public addresses.
func publicOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	if !isPublic(ap.Addr()) {
		return fmt.Errorf("direct delivery to %s: %w", ap.Addr(), errPrivateAddress)
	}
	return nil
}

// nonPublic are ranges IsGlobalUnicast and IsPrivate do not cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64: may map to a private IPv4
	netip.MustParsePrefix("2002::/16"),    // 6to4: likewise
}

func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// directEndpoint returns the connection's endpoint if direct delivery can
// use it: an absolute http(s) URL.
func directEndpoint(c record.Connection) (*url.URL, bool) {
	u, err := url.Parse(c.TheirEndpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, false
	}
	return u, true
}

// deliverDirect tries direct delivery of a forward to recipientKey (see
// Forwarding) and reports whether it delivered. It does nothing and
// returns false with ForwardQueueOnly.
func (a *Agent) deliverDirect(ctx context.Context, recipientKey string, payload []byte) bool {
	if a.cfg.Forwarding.Strategy != ForwardDirectThenQueue {
		return false
	}
	conn, err := a.store.ConnectionByRoute(ctx, recipientKey)
	if err != nil {
		if !errors.Is(err, record.ErrNotFound) {
			a.log.WarnContext(ctx, "direct delivery: connection lookup failed; queueing", "err", err)
		}
		return false // unknown keys are refused by the enqueue
	}
	endpoint, ok := directEndpoint(conn)
	if !ok {
		return false
	}
	ctx = noteConnection(ctx, conn.ID)
	start := time.Now()
	err = a.postDirect(ctx, endpoint.String(), payload)
	if a.cfg.Forwarding.OnDirect != nil {
		a.cfg.Forwarding.OnDirect(err == nil)
	}
	// The URL's path and query may hold secrets: log the host only.
	attrs := []any{"connection", conn.ID, "endpoint_host", endpoint.Scheme + "://" + endpoint.Host,
		"bytes", len(payload), "duration", time.Since(start)}
	if err != nil {
		a.log.InfoContext(ctx, "direct delivery failed; queueing the message", append(attrs, "err", err)...)
		return false
	}
	a.log.DebugContext(ctx, "forward delivered directly", attrs...)
	return true
}

// postDirect POSTs payload to endpoint; nil means a 2xx answer.
func (a *Agent) postDirect(ctx context.Context, endpoint string, payload []byte) error {
	budget := a.cfg.Forwarding.DirectTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	if budget <= 0 {
		return errors.New("no time left for a direct attempt")
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctDIDCommEnvelope)
	resp, err := a.direct.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message would hold the whole URL
		}
		return err
	}
	// Drain a little so the connection can be reused; replies are ignored.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return nil
}
