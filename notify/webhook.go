package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for WebhookConfig fields left zero.
const (
	DefaultCoalesce    = 2 * time.Second
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 5
	DefaultQueueSize   = 10000

	defaultWorkers     = 4
	defaultBackoffBase = 500 * time.Millisecond
	defaultBackoffMax  = 30 * time.Second
	dropLogInterval    = 10 * time.Second
	maxResponseDrain   = 64 << 10
)

// Outcomes passed to WebhookConfig.OnResult.
const (
	OutcomeDelivered = "delivered" // a call got a 2xx answer
	OutcomeFailed    = "failed"    // a call gave up (non-retryable status, attempts exhausted, or shut down)
	OutcomeDropped   = "dropped"   // an event was discarded (buffer full, or after Close)
	OutcomeRetry     = "retry"     // an attempt failed and will be retried
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL is the endpoint to POST to; required, http or https.
	URL string
	// Secret is the HMAC-SHA256 key. When set, each attempt carries
	// X-Mediator-Timestamp (unix seconds) and
	// X-Mediator-Signature: "sha256=" + hex(HMAC(Secret, timestamp + "." + body)).
	Secret []byte
	// Coalesce is the window in which events for one connection make one call
	// (default 2s). The call carries the newest message id and the count.
	Coalesce time.Duration
	// Timeout bounds each HTTP attempt (default 5s); the device lookup gets
	// the same bound.
	Timeout time.Duration
	// MaxAttempts is the number of HTTP attempts per call (default 5).
	// Retries back off exponentially with jitter from 500ms, doubling, capped
	// at 30s; network errors, 429 and 5xx are retried, other 4xx are not.
	MaxAttempts int
	// QueueSize bounds the connections waiting for a call (coalescing or
	// queued for a worker; default 10000). When full, new events are dropped
	// and counted; the forward path is never blocked.
	QueueSize int
	// Client is the HTTP client; by default one that does not follow
	// redirects.
	Client *http.Client
	// Lookup, when set, adds the wallet's registered push token to the call.
	Lookup DeviceLookup
	// Logger receives diagnostics; never secrets or device tokens.
	Logger *slog.Logger
	// OnResult, when set, is called with one of the Outcome* values. It is
	// called from several goroutines and must be quick and concurrency-safe.
	OnResult func(outcome string)
}

// Webhook is a Notifier that POSTs a JSON "message-queued" event to an HTTP
// endpoint. See the package documentation for the wire format.
type Webhook struct {
	url         string
	secret      []byte
	coalesce    time.Duration
	timeout     time.Duration
	maxAttempts int
	queueSize   int
	client      *http.Client
	lookup      DeviceLookup
	log         *slog.Logger
	onResult    func(string)

	// Test knobs; set before Start.
	workers     int
	backoffBase time.Duration
	backoffMax  time.Duration

	mu          sync.Mutex
	pending     map[string]*entry // coalescing, keyed by connection
	outstanding int               // len(pending) + entries in ready
	ready       chan *entry       // cap queueSize; never full while outstanding <= queueSize
	closed      bool
	started     bool
	abort       context.CancelFunc // cancels the workers' context
	wg          sync.WaitGroup

	dropped     atomic.Uint64
	lastDropLog atomic.Int64 // unix nanos
}

// entry is one pending call for a connection.
type entry struct {
	key          string
	connectionID string
	messageID    string
	recipientKey string
	queuedAt     time.Time
	count        int
	timer        *time.Timer
}

type payload struct {
	Type           string `json:"type"`
	ConnectionID   string `json:"connection_id"`
	MessageID      string `json:"message_id"`
	RecipientKey   string `json:"recipient_key"`
	QueuedAt       string `json:"queued_at"`
	Coalesced      int    `json:"coalesced"`
	DeviceToken    string `json:"device_token,omitempty"`
	DevicePlatform string `json:"device_platform,omitempty"`
}

// NewWebhook validates cfg and returns a Webhook. Call Start to run its
// workers and Close to flush and stop it.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.URL == "" {
		return nil, errors.New("notify: webhook URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// The parse error quotes the URL, which may carry credentials.
		return nil, errors.New("notify: webhook URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("notify: webhook URL scheme must be http or https, not %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("notify: webhook URL has no host")
	}
	if cfg.MaxAttempts < 0 || cfg.QueueSize < 0 || cfg.Coalesce < 0 || cfg.Timeout < 0 {
		return nil, errors.New("notify: negative webhook setting")
	}
	w := &Webhook{
		url:         cfg.URL,
		secret:      bytes.Clone(cfg.Secret),
		coalesce:    cmpOr(cfg.Coalesce, DefaultCoalesce),
		timeout:     cmpOr(cfg.Timeout, DefaultTimeout),
		maxAttempts: cmpOr(cfg.MaxAttempts, DefaultMaxAttempts),
		queueSize:   cmpOr(cfg.QueueSize, DefaultQueueSize),
		client:      cfg.Client,
		lookup:      cfg.Lookup,
		log:         cfg.Logger,
		onResult:    cfg.OnResult,
		workers:     defaultWorkers,
		backoffBase: defaultBackoffBase,
		backoffMax:  defaultBackoffMax,
		pending:     make(map[string]*entry),
	}
	if w.client == nil {
		w.client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "notify.webhook", "webhook_host", u.Host)
	if w.onResult == nil {
		w.onResult = func(string) {}
	}
	w.ready = make(chan *entry, w.queueSize)
	return w, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Start runs the delivery workers. They stop when ctx ends (abandoning what
// is still queued) or after Close has flushed. Calling Start again is a no-op.
func (w *Webhook) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.startLocked(ctx)
}

func (w *Webhook) startLocked(ctx context.Context) {
	if w.started {
		return
	}
	w.started = true
	wctx, cancel := context.WithCancel(ctx)
	w.abort = cancel
	for range w.workers {
		w.wg.Go(func() { w.work(wctx) })
	}
}

// MessageQueued records e. It never blocks: the event is coalesced with a
// pending one for the same connection, or starts a new pending entry, or is
// dropped when the buffer is full or the Webhook is closed. ctx is not used
// for the delivery, which happens after the caller has moved on.
func (w *Webhook) MessageQueued(_ context.Context, e Event) {
	key := e.ConnectionID
	if key == "" {
		key = "key:" + e.RecipientKey
	}
	at := e.QueuedAt
	if at.IsZero() {
		at = time.Now()
	}

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.drop("closed")
		return
	}
	if p := w.pending[key]; p != nil {
		p.messageID, p.recipientKey, p.queuedAt = e.MessageID, e.RecipientKey, at
		p.count++
		w.mu.Unlock()
		return
	}
	if w.outstanding >= w.queueSize {
		w.mu.Unlock()
		w.drop("queue full")
		return
	}
	p := &entry{
		key:          key,
		connectionID: e.ConnectionID,
		messageID:    e.MessageID,
		recipientKey: e.RecipientKey,
		queuedAt:     at,
		count:        1,
	}
	w.pending[key] = p
	w.outstanding++
	p.timer = time.AfterFunc(w.coalesce, func() { w.windowEnded(p) })
	w.mu.Unlock()
}

// windowEnded hands p to the workers unless Close already did.
func (w *Webhook) windowEnded(p *entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending[p.key] != p {
		return // flushed by Close
	}
	delete(w.pending, p.key)
	w.enqueueLocked(p)
}

// enqueueLocked sends p to the workers. The channel has room because
// outstanding never exceeds its capacity; the default case is defensive.
func (w *Webhook) enqueueLocked(p *entry) {
	select {
	case w.ready <- p:
	default:
		w.outstanding--
		w.drop("queue full")
	}
}

func (w *Webhook) drop(reason string) {
	n := w.dropped.Add(1)
	w.onResult(OutcomeDropped)
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last >= int64(dropLogInterval) && w.lastDropLog.CompareAndSwap(last, now) {
		w.log.Warn("webhook notification dropped", "reason", reason, "dropped_total", n)
	}
}

// Close stops accepting events, hands every pending entry to the workers
// without waiting for its window, and waits for them to deliver. If ctx ends
// first, in-flight calls are aborted, whatever is left is dropped, and
// ctx.Err() is returned once the workers have stopped. If Start was never
// called, Close starts the workers itself so that the flush happens.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		for key, p := range w.pending {
			p.timer.Stop()
			delete(w.pending, key)
			w.enqueueLocked(p)
		}
		close(w.ready)
		w.startLocked(context.WithoutCancel(ctx))
	}
	abort := w.abort
	w.mu.Unlock()

	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		abort()
		<-done
	}
	abort() // release the context's resources

	// Left over if ctx ended, or if the Start context ended before Close.
	left := 0
	for range w.ready {
		left++
		w.drop("shutdown")
	}
	if left > 0 {
		w.log.Warn("webhook notifications abandoned at shutdown", "count", left)
	}
	return err
}

func (w *Webhook) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p, ok := <-w.ready:
			if !ok {
				return
			}
			w.mu.Lock()
			w.outstanding--
			w.mu.Unlock()
			if ctx.Err() != nil { // lost the race with ctx.Done above
				w.drop("shutdown")
				return
			}
			w.deliver(ctx, p)
		}
	}
}

// deliver makes the call for p, retrying as configured.
func (w *Webhook) deliver(ctx context.Context, p *entry) {
	body := payload{
		Type:         "message-queued",
		ConnectionID: p.connectionID,
		MessageID:    p.messageID,
		RecipientKey: p.recipientKey,
		QueuedAt:     p.queuedAt.UTC().Format(time.RFC3339Nano),
		Coalesced:    p.count,
	}
	if w.lookup != nil && p.connectionID != "" {
		body.DeviceToken, body.DevicePlatform = w.device(ctx, p.connectionID)
	}
	raw, err := json.Marshal(body)
	if err != nil { // cannot happen: strings and an int
		w.onResult(OutcomeFailed)
		w.log.Error("webhook payload encoding failed", "error", err)
		return
	}
	delivery := newDeliveryID()
	log := w.log.With(
		"connection_id", p.connectionID,
		"message_id", p.messageID,
		"coalesced", p.count,
		"device_token_present", body.DeviceToken != "",
		"delivery", delivery,
	)

	for attempt := 1; ; attempt++ {
		status, retryAfter, err := w.post(ctx, raw, delivery)
		if err == nil && status >= 200 && status < 300 {
			w.onResult(OutcomeDelivered)
			log.Debug("webhook delivered", "attempt", attempt, "status", status)
			return
		}
		if ctx.Err() != nil {
			w.onResult(OutcomeFailed)
			log.Warn("webhook call abandoned at shutdown", "attempt", attempt)
			return
		}
		retryable := err != nil || status == http.StatusTooManyRequests || status >= 500
		if !retryable || attempt >= w.maxAttempts {
			w.onResult(OutcomeFailed)
			log.Warn("webhook call failed", "attempt", attempt, "status", status,
				"error", errString(err), "retryable", retryable)
			return
		}
		w.onResult(OutcomeRetry)
		wait := max(w.backoff(attempt), min(retryAfter, w.backoffMax))
		log.Debug("webhook call will be retried", "attempt", attempt, "status", status,
			"error", errString(err), "backoff", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.onResult(OutcomeFailed)
			log.Warn("webhook call abandoned at shutdown", "attempt", attempt)
			return
		}
	}
}

// device returns the connection's push token and platform, or empty strings.
func (w *Webhook) device(ctx context.Context, connectionID string) (token, platform string) {
	lctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	token, platform, ok, err := w.lookup(lctx, connectionID)
	if err != nil {
		w.log.Warn("webhook device lookup failed; calling without token",
			"connection_id", connectionID, "error", err)
		return "", ""
	}
	if !ok || token == "" {
		return "", ""
	}
	return token, platform
}

// post makes one attempt. It returns the status (0 on a transport error)
// and any Retry-After given in seconds.
func (w *Webhook) post(ctx context.Context, body []byte, delivery string) (int, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "didcomm-mediator")
	req.Header.Set("X-Mediator-Delivery", delivery)
	if len(w.secret) > 0 {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set("X-Mediator-Timestamp", ts)
		req.Header.Set("X-Mediator-Signature", Sign(w.secret, ts, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, 0, redactURLError(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseDrain))
	_ = resp.Body.Close()
	var retryAfter time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retryAfter, nil
}

// Sign returns the X-Mediator-Signature value for a body sent with the given
// X-Mediator-Timestamp value: "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
// Receivers can use it to verify a call (compare with hmac.Equal).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// backoff returns the wait after the given failed attempt (1-based):
// base·2^(attempt-1) capped at backoffMax, with "equal jitter" (half fixed,
// half random).
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.backoffBase
	for i := 1; i < attempt && d < w.backoffMax; i++ {
		d *= 2
	}
	d = min(d, w.backoffMax)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + mrand.N(d-half+1)
}

// redactURLError strips the URL (which may carry credentials or tokens)
// from a client error.
func redactURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func newDeliveryID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
