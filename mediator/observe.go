package mediator

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/openmediator/mediator/internal/logctx"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// Observer hears what the agent does, for metrics (metrics.Metrics
// implements it). Its methods are called on the request path: they must be
// quick and safe for concurrent use.
type Observer interface {
	// Inbound counts one inbound message once it has been handled.
	// transport is "http", "ws", or "none" (no session); msgType is the
	// type key (protocol/major/name) or "" when the message could not be
	// read, and is chosen by the sender, so the observer must bound it;
	// outcome is one of the Outcome* values.
	Inbound(transport, msgType, outcome string)
	// ForwardAccepted is the time from HandleInbound's start to the queue
	// insert of an accepted forward returning.
	ForwardAccepted(d time.Duration)
}

// Outcomes of an inbound message, as given to Observer.Inbound.
const (
	OutcomeOK               = "ok"                // handled (including refusals answered with a problem report)
	OutcomeBadRequest       = "bad_request"       // malformed, not for us, or from an unknown connection (400)
	OutcomeUnknownRecipient = "unknown_recipient" // forward to a key no mediation registered (404)
	OutcomeTooLarge         = "too_large"         // over a size limit (413)
	OutcomeRateLimited      = "rate_limited"      // over a rate limit (429)
	OutcomeQueueFull        = "queue_full"        // the recipient's queue is at its hard cap (507)
	OutcomeRefused          = "refused"           // any other 4xx
	OutcomeTimeout          = "timeout"           // the handler's context ended first
	OutcomeError            = "error"             // anything else (5xx)
)

type nopObserver struct{}

func (nopObserver) Inbound(string, string, string) {}
func (nopObserver) ForwardAccepted(time.Duration)  {}

// inboundRecord is what HandleInbound learns about its message while
// handling it; it lives in the handler's context (see noteType).
type inboundRecord struct {
	start      time.Time
	msgType    string // the outermost message's type key
	connection string
}

type inboundRecordKey struct{}

func recordOf(ctx context.Context) *inboundRecord {
	r, _ := ctx.Value(inboundRecordKey{}).(*inboundRecord)
	return r
}

// maxLogTypeLen bounds a sender-chosen type in logs.
const maxLogTypeLen = 100

// noteType records the message type for the metrics (the outermost
// message's only) and adds msg_type to the context's log attributes.
func noteType(ctx context.Context, key string, depth int) context.Context {
	if r := recordOf(ctx); r != nil && depth == 0 {
		r.msgType = key
	}
	return logctx.With(ctx, slog.String("msg_type", clip(key, maxLogTypeLen)))
}

// noteConnection records the connection the message concerns (the
// sender's, or a forward's recipient's) and adds it to the log attributes.
func noteConnection(ctx context.Context, id string) context.Context {
	if r := recordOf(ctx); r != nil && r.connection == "" {
		r.connection = id
	}
	return logctx.With(ctx, slog.String("connection", id))
}

// forwardAccepted reports an accepted forward's latency and notes its
// connection.
func (a *Agent) forwardAccepted(ctx context.Context, res queue.Enqueued) context.Context {
	if r := recordOf(ctx); r != nil {
		a.cfg.Observer.ForwardAccepted(time.Since(r.start))
	}
	return noteConnection(ctx, res.ConnectionID)
}

// observeInbound counts a handled message and logs it at debug level.
func (a *Agent) observeInbound(ctx context.Context, s transport.Session, r *inboundRecord, err error) {
	kind := "none"
	if s != nil {
		kind = string(s.Kind())
	}
	outcome := inboundOutcome(ctx, err)
	a.cfg.Observer.Inbound(kind, r.msgType, outcome)
	if !a.log.Enabled(ctx, slog.LevelDebug) {
		return // the common case: build nothing
	}
	attrs := []slog.Attr{slog.String("outcome", outcome), slog.Duration("duration", time.Since(r.start))}
	if r.msgType != "" {
		attrs = append(attrs, slog.String("msg_type", clip(r.msgType, maxLogTypeLen)))
	}
	if r.connection != "" {
		attrs = append(attrs, slog.String("connection", r.connection))
	}
	a.log.LogAttrs(ctx, slog.LevelDebug, "inbound message", attrs...)
}

// inboundOutcome classifies a HandleInbound result.
func inboundOutcome(ctx context.Context, err error) string {
	if err == nil {
		return OutcomeOK
	}
	if errors.Is(err, queue.ErrUnknownRecipient) {
		return OutcomeUnknownRecipient
	}
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		switch st := hs.HTTPStatus(); {
		case st == http.StatusBadRequest:
			return OutcomeBadRequest
		case st == http.StatusNotFound:
			return OutcomeUnknownRecipient
		case st == http.StatusRequestEntityTooLarge:
			return OutcomeTooLarge
		case st == http.StatusTooManyRequests:
			return OutcomeRateLimited
		case st == http.StatusInsufficientStorage:
			return OutcomeQueueFull
		case st >= 400 && st < 500:
			return OutcomeRefused
		}
		return OutcomeError
	}
	if ctx.Err() != nil {
		return OutcomeTimeout
	}
	return OutcomeError
}

// clip shortens a sender-chosen string for a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
