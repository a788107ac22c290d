package mediator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/internal/ratelimit"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/transport"
)

// Names the agent gives Limits.OnLimit, one per limit that refused
// something.
const (
	// LimitConnectionRate: a message over its connection's rate (HTTP 429;
	// on a WebSocket with a return route, a problem report rate-limited).
	LimitConnectionRate = "connection_rate"
	// LimitQueueFull: a message for a connection at its hard queue cap
	// (HTTP 507).
	LimitQueueFull = "queue_hard_cap"
)

// ProblemRateLimited is the problem report code for a message refused by
// the per-connection rate.
const ProblemRateLimited = "rate-limited"

// DefaultLimitWarnEvery is how often, at most, the agent warns about one
// connection over a limit (Limits.WarnEvery).
const DefaultLimitWarnEvery = 10 * time.Minute

// Limits configure the agent's limits. Zero values: none.
//
// The queue caps themselves are the queue's (queue.Caps, set on queuepg or
// memstore): the agent maps a full queue to HTTP 507 Insufficient Storage
// and reports messages queued beyond the soft cap. 507 rather than 429: the
// sender is not too fast, the recipient's mailbox is full, and only the
// recipient picking up (or the TTL) empties it; a sender that retries later
// (DIDComm agents retry failed sends) may get through then. A problem
// report would be pointless: forwards are anoncrypted, there is no one to
// address it to. Messages already queued are never touched.
type Limits struct {
	// ConnectionRate is the sustained number of messages per second one
	// connection may send to this instance (0: no limit), with bursts of
	// ConnectionBurst (default ConnectionRate rounded up). It is counted
	// after the connection lookup, so it applies to authcrypted messages of
	// known connections (forwards are anoncrypted: the transport's per-IP
	// rate covers them). A message over it is refused: HTTP 429 with
	// Retry-After; on a WebSocket whose message asked for a return route a
	// problem report "rate-limited" is sent first (on HTTP the reply body
	// would turn the 429 into a 200, so there is none). Buckets are per
	// instance: a wallet whose requests are spread over N instances gets up
	// to N×ConnectionRate.
	ConnectionRate  float64
	ConnectionBurst int
	// WarnEvery is how often, at most, the agent logs a warning about one
	// connection over its soft queue cap, its hard cap or its rate
	// (default DefaultLimitWarnEvery).
	WarnEvery time.Duration
	// OnLimit, when set, is called with a Limit* name for each refusal
	// (for metrics). It must be quick.
	OnLimit func(name string)
	// OnQueueSoftCap, when set, is called for each message queued beyond
	// its connection's soft cap (queued, not refused: not an OnLimit).
	OnQueueSoftCap func()
}

// limiter is the agent's limit state.
type limiter struct {
	conn *ratelimit.Limiter // nil: no per-connection rate
	warn *warnOnce
}

func newLimiter(l Limits) *limiter {
	if l.WarnEvery <= 0 {
		l.WarnEvery = DefaultLimitWarnEvery
	}
	return &limiter{
		conn: ratelimit.New(ratelimit.Options{Rate: l.ConnectionRate, Burst: l.ConnectionBurst}),
		warn: &warnOnce{every: l.WarnEvery, last: map[string]time.Time{}},
	}
}

func (a *Agent) onLimit(name string) {
	if a.cfg.Limits.OnLimit != nil {
		a.cfg.Limits.OnLimit(name)
	}
}

// rateLimitedError is the 429 of a message over its connection's rate.
type rateLimitedError struct {
	connectionID string
	retryAfter   time.Duration
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("mediator: connection %s is over its message rate; retry in %v", e.connectionID, e.retryAfter)
}
func (e *rateLimitedError) HTTPStatus() int           { return http.StatusTooManyRequests }
func (e *rateLimitedError) RetryAfter() time.Duration { return e.retryAfter }

// checkConnectionRate takes a token from conn's bucket, or refuses the
// message (see Limits.ConnectionRate).
func (a *Agent) checkConnectionRate(ctx context.Context, in *inbound, conn record.Connection) error {
	ok, wait := a.limits.conn.Allow(conn.ID)
	if ok {
		return nil
	}
	a.onLimit(LimitConnectionRate)
	if a.limits.warn.due("rate:" + conn.ID) {
		a.log.WarnContext(ctx, "connection over its message rate; refusing its messages",
			"connection", conn.ID, "rate", a.limits.conn.Rate(), "burst", a.limits.conn.Burst())
	}
	if in.session != nil && in.session.Kind() == transport.KindWebSocket && !in.msg.MsgType.IsProblemReport() {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		pr := didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg, ProblemRateLimited,
			fmt.Sprintf("too many messages on this connection; retry in %d s", secs), false)
		if err := a.sendOnReturnRoute(ctx, in, conn, pr); err != nil && !errors.Is(err, errNoReturnRoute) {
			a.log.InfoContext(ctx, "rate-limited problem report not sent", "connection", conn.ID, "err", err)
		}
	}
	return &rateLimitedError{connectionID: conn.ID, retryAfter: wait}
}

// queueFailed turns an enqueue error into the inbound error: 507 for a full
// queue (reported to OnLimit, logged once per WarnEvery per connection or
// recipient key: whoKey is "connection" or "to", who its value).
func (a *Agent) queueFailed(ctx context.Context, op, whoKey, who string, err error) error {
	if !errors.Is(err, queue.ErrQueueFull) {
		return fmt.Errorf("mediator: %s: %w", op, err)
	}
	a.onLimit(LimitQueueFull)
	if a.limits.warn.due("full:" + who) {
		// err names the connection and the cap.
		a.log.WarnContext(ctx, "queue at its hard cap; refusing messages for the connection",
			whoKey, who, "op", op, "err", err)
	}
	return &InboundError{Status: http.StatusInsufficientStorage, Err: fmt.Errorf("mediator: %s: %w", op, err)}
}

// noteSoftCap reports a message queued beyond its connection's soft cap.
func (a *Agent) noteSoftCap(ctx context.Context, res queue.Enqueued) {
	if !res.OverSoftCap {
		return
	}
	if a.cfg.Limits.OnQueueSoftCap != nil {
		a.cfg.Limits.OnQueueSoftCap()
	}
	if a.limits.warn.due("soft:" + res.ConnectionID) {
		a.log.WarnContext(ctx, "queue over its soft cap: the wallet is not picking up",
			"connection", res.ConnectionID, "queued_before", res.Depth)
	}
}

// warnOnce says yes at most once per every for each key. It forgets keys
// older than every, so its size is bounded by the keys seen in one period.
type warnOnce struct {
	every time.Duration

	mu        sync.Mutex
	last      map[string]time.Time
	lastSweep time.Time
}

func (w *warnOnce) due(key string) bool {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.lastSweep) >= w.every {
		w.lastSweep = now
		for k, t := range w.last {
			if now.Sub(t) >= w.every {
				delete(w.last, k)
			}
		}
	}
	if t, ok := w.last[key]; ok && now.Sub(t) < w.every {
		return false
	}
	w.last[key] = now
	return true
}
