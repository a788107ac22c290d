package transport

import (
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/internal/ratelimit"
)

// Names the transport gives Config.OnLimit, one per limit that refused
// something.
const (
	// LimitMessageSize: a message over MaxMessageBytes (HTTP 413, WS close 1009).
	LimitMessageSize = "message_size"
	// LimitSockets: a WebSocket upgrade refused at MaxSockets (HTTP 503).
	LimitSockets = "max_sockets"
	// LimitIPRate: a request refused by the per-IP rate (HTTP 429), or a
	// WebSocket closed for being far over it (1008).
	LimitIPRate = "ip_rate"
	// LimitInFlightBytes: a message refused because MaxInFlightBytes was
	// spent (HTTP 503, WS close 1013).
	LimitInFlightBytes = "inflight_bytes"
)

// socketRetryAfter is the Retry-After of a WebSocket upgrade refused at
// MaxSockets: long enough for a reconnect storm to spread out, short
// enough for a wallet to come back soon (a load balancer may also send the
// retry to another instance).
const socketRetryAfter = "5"

// limit reports a refusal to Config.OnLimit.
func (s *Server) limit(name string) {
	if s.cfg.OnLimit == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("OnLimit hook panic recovered", "limit", name, "panic", p)
		}
	}()
	s.cfg.OnLimit(name)
}

// rateLimited takes a token from the client IP's bucket for one DIDComm
// request (POST or WebSocket upgrade). When there is none it answers 429
// with Retry-After and returns true.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	if s.ipLimit == nil {
		return false
	}
	client := s.clientKey(r)
	ok, wait := s.ipLimit.Allow(client)
	if ok {
		return false
	}
	s.limit(LimitIPRate)
	s.log.Debug("request over the per-IP rate refused", "client", client, "remote", r.RemoteAddr,
		"method", r.Method, "retry_after", wait)
	w.Header().Set("Retry-After", retrySeconds(wait))
	http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
	return true
}

// throttle counts one WebSocket message against the client IP's bucket.
// A message over the rate is still handled (there is no status to answer
// it with, and dropping it would lose it silently), running the bucket into
// debt; once the client is more than IPBurst messages beyond its rate (far
// over: twice the burst at once, or a sustained excess), the socket is
// closed with 1008 and throttle returns false. Until the debt is repaid at
// IPRate, the client's POSTs and upgrades get 429.
func (c *wsSession) throttle() bool {
	l := c.srv.ipLimit
	if l == nil {
		return true
	}
	if _, ok := l.Reserve(c.client, float64(l.Burst())); ok {
		return true
	}
	c.srv.limit(LimitIPRate)
	c.srv.log.Warn("websocket far over the per-IP rate; closing",
		"session", c.id, "kind", KindWebSocket, "remote", c.remote, "client", c.client)
	c.closeWith(websocket.ClosePolicyViolation, "rate limit exceeded")
	return false
}

// retrySeconds is a Retry-After value: whole seconds, at least 1.
func retrySeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// answerErr answers the status for a handler error; a 429 carries
// Retry-After from the error's RetryAfter() (1s if it has none).
func (h *httpSession) answerErr(status int, err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if status == http.StatusTooManyRequests && !h.answered && !h.closed {
		wait := time.Second
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			wait = ra.RetryAfter()
		}
		h.w.Header().Set("Retry-After", retrySeconds(wait))
	}
	return h.answerLocked(status)
}

// reserveSocket takes one of MaxSockets slots for a WebSocket about to be
// upgraded, or answers 503 with Retry-After and returns false. The slot
// is given back by removeSocket when the socket is gone (in the same step
// as OpenSockets stops counting it), or by releaseSocket if the upgrade
// failed.
func (s *Server) reserveSocket(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	full := s.cfg.MaxSockets > 0 && s.wsSlots >= s.cfg.MaxSockets
	if !full {
		s.wsSlots++
	}
	s.mu.Unlock()
	if !full {
		return true
	}
	s.limit(LimitSockets)
	s.log.Debug("websocket refused: MaxSockets reached", "kind", KindWebSocket, "remote", r.RemoteAddr,
		"max_sockets", s.cfg.MaxSockets)
	w.Header().Set("Retry-After", socketRetryAfter)
	http.Error(w, "too many open WebSockets on this instance", http.StatusServiceUnavailable)
	return false
}

func (s *Server) releaseSocket() {
	s.mu.Lock()
	s.wsSlots--
	s.mu.Unlock()
}

// clientKey is the rate-limit key of a request's client: its IP address,
// IPv6 ones reduced to their /64 (one host or customer usually has a whole
// /64, so a single address would be too easy to rotate).
//
// The address is the TCP peer's, unless that peer is one of
// TrustedProxies: then it is the rightmost address of X-Forwarded-For that
// is not itself a trusted proxy (what the first trusted proxy saw; entries
// further left were written by the client and may be forged).
func (s *Server) clientKey(r *http.Request) string {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	client := peer
	if s.trustedProxy(peer) {
		client = s.forwardedFor(r, peer)
	}
	if client.Is6() {
		p, _ := client.Prefix(64)
		return p.String()
	}
	return client.String()
}

func (s *Server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor walks X-Forwarded-For from the right, past trusted proxies,
// and returns the first other address (peer if there is none, or an entry
// does not parse).
func (s *Server) forwardedFor(r *http.Request, peer netip.Addr) netip.Addr {
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseAddr(strings.TrimSpace(hops[i]))
		if !ok {
			return client
		}
		client = a
		if !s.trustedProxy(a) {
			return a
		}
	}
	return client
}

// parseAddr reads "ip", "ip:port" or "[ip]:port", unmapping IPv4-in-IPv6.
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// newIPLimiter builds the per-IP limiter of cfg (nil when off).
func newIPLimiter(cfg Config) *ratelimit.Limiter {
	return ratelimit.New(ratelimit.Options{Rate: cfg.IPRate, Burst: cfg.IPBurst})
}
