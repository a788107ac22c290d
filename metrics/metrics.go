package metrics

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openmediator/mediator/notify"
)

// Label values for inbound messages that are not one of MessageTypes.
const (
	// TypeOther is any readable message type not in MessageTypes.
	TypeOther = "other"
	// TypeNone is a message whose type could not be read: the envelope was
	// not for us or did not open, or the plaintext was not a message.
	TypeNone = "none"
	// TypeProblemReport is every problem report, of whatever protocol.
	TypeProblemReport = "problem-report"
)

// messageTypes are the message type keys (protocol/major/name, as
// didcomm.MessageType.Key) that get their own label value on
// mediator_inbound_messages_total: the ones the mediator handles. Any other
// type is counted as TypeOther, so that a sender cannot create series at
// will.
var messageTypes = map[string]bool{
	"routing/1/forward":                        true,
	"didexchange/1/request":                    true,
	"didexchange/1/complete":                   true,
	"connections/1/request":                    true,
	"out-of-band/1/handshake-reuse":            true,
	"trust_ping/1/ping":                        true,
	"trust_ping/1/ping_response":               true,
	"discover-features/1/query":                true,
	"discover-features/2/queries":              true,
	"coordinate-mediation/1/mediate-request":   true,
	"coordinate-mediation/1/keylist-update":    true,
	"coordinate-mediation/1/keylist-query":     true,
	"push-notifications-fcm/1/set-device-info": true,
	"push-notifications-fcm/1/get-device-info": true,
	"messagepickup/2/status-request":           true,
	"messagepickup/2/delivery-request":         true,
	"messagepickup/2/messages-received":        true,
	"messagepickup/2/live-delivery-change":     true,
	"messagepickup/1/batch-pickup":             true,
	"messagepickup/1/status-request":           true,
	"messagepickup/1/noop":                     true,
}

// MessageTypes returns the type keys that have their own label value.
func MessageTypes() []string {
	out := make([]string, 0, len(messageTypes))
	for k := range messageTypes {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TypeLabel is the label value mediator_inbound_messages_total uses for a
// message type key: the key itself if it is one of MessageTypes,
// TypeProblemReport for any problem report, TypeNone for "", else TypeOther.
func TypeLabel(key string) string {
	switch {
	case key == "":
		return TypeNone
	case messageTypes[key]:
		return key
	case strings.HasSuffix(key, "/problem-report") || strings.HasSuffix(key, "/problem_report"):
		return TypeProblemReport
	}
	return TypeOther
}

// Delivery methods, the label of mediator_queued_to_delivered_seconds.
var deliveryMethods = []string{"delivery", "live", "batch", "implicit"}

// LimitNames are the limits' names (transport.Limit*, mediator.Limit*),
// reported at 0 from the start so that rates of
// mediator_limit_rejections_total work from the first refusal. Other names
// are counted too when they come.
var LimitNames = []string{"message_size", "max_sockets", "ip_rate", "connection_rate", "queue_hard_cap", "inflight_bytes"}

// Webhook outcomes, the label of mediator_webhook_results_total.
var webhookOutcomes = []string{notify.OutcomeDelivered, notify.OutcomeFailed, notify.OutcomeDropped, notify.OutcomeRetry}

// Options configure New.
type Options struct {
	// Version is reported as the version label of mediator_build_info.
	Version string
	// NoRuntime leaves out the Go runtime and process collectors (tests
	// that compare whole outputs).
	NoRuntime bool
}

// Metrics is every metric of one mediator process, on its own registry.
// Its methods are safe for concurrent use and cheap enough for the request
// path. It implements mediator.Observer, pickup.Observer and LimitObserver.
type Metrics struct {
	reg *prometheus.Registry

	inbound        *prometheus.CounterVec
	forwardAccept  prometheus.Histogram
	delivered      *prometheus.HistogramVec
	redeliveries   prometheus.Counter
	sockets        prometheus.Gauge
	webhook        *prometheus.CounterVec
	limits         *prometheus.CounterVec
	notifyLag      prometheus.Histogram
	probesSent     prometheus.Counter
	queueDepth     prometheus.Gauge
	queueInFlight  prometheus.Gauge
	queueOldest    prometheus.Gauge
	queueSampleErr prometheus.Counter
	softCap        prometheus.Counter
	expired        prometheus.Counter
	direct         *prometheus.CounterVec
}

// LimitObserver is what a limit needs to report that it refused something.
// *Metrics implements it. Packages that enforce limits may declare the same
// one-method interface themselves rather than import this package.
type LimitObserver interface {
	// LimitRejected counts one refusal by the limit named limit (a fixed,
	// lower_snake_case name from the code, never request data).
	LimitRejected(limit string)
}

var _ LimitObserver = (*Metrics)(nil)

// New returns the mediator's metrics on a new registry, with the Go runtime
// and process collectors (unless opts.NoRuntime) and mediator_build_info.
func New(opts Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := factory{reg}

	m.inbound = f.counterVec("mediator_inbound_messages_total",
		"Inbound DIDComm messages by message type (protocol/major/name; unknown types are \"other\", unreadable ones \"none\"), transport (http, ws) and outcome (ok, bad_request, unknown_recipient, too_large, rate_limited, queue_full, refused, timeout, error).",
		"type", "transport", "outcome")
	m.forwardAccept = f.histogram("mediator_forward_accept_seconds",
		"Time from receiving a forward (start of its handling) to its queue insert returning, for accepted forwards.",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10})
	m.delivered = f.histogramVec("mediator_queued_to_delivered_seconds",
		"Time a message waited from being queued to being written to the wallet, by method (delivery: pickup 2.0 delivery-request; live: pickup 2.0 live push; batch: pickup 1.0 batch; implicit: raw push on a return-route socket).",
		[]float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600},
		"method")
	m.redeliveries = f.counter("mediator_redeliveries_total",
		"Messages handed out again: claimed with more than one attempt (the wallet did not acknowledge in time, a push failed, or an instance died).")
	m.sockets = f.gauge("mediator_websockets_open",
		"Open DIDComm WebSocket connections on this instance.")
	m.webhook = f.counterVec("mediator_webhook_results_total",
		"Offline-wallet webhook results: delivered (2xx), failed (gave up), dropped (buffer full or shut down), retry (an attempt failed and will be retried).",
		"outcome")
	m.limits = f.counterVec("mediator_limit_rejections_total",
		"Requests, messages or connections refused by a configured limit, by limit name.",
		"limit")
	m.softCap = f.counter("mediator_queue_soft_cap_exceeded_total",
		"Messages queued beyond their connection's soft queue cap (queued, with a warning).")
	m.expired = f.counter("mediator_messages_expired_total",
		"Queued messages deleted unread because they outlived the message TTL.")
	m.direct = f.counterVec("mediator_direct_deliveries_total",
		"Direct delivery attempts of forwards (direct-then-queue) by result: delivered, or failed (the message was queued instead).",
		"result")
	m.notifyLag = f.histogram("mediator_notification_lag_seconds",
		"Time from this instance sending a probe NOTIFY on its own wake-up channel to its LISTEN connection handling it; every 15s. Includes the wait behind wake-ups queued before it.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10})
	m.probesSent = f.counter("mediator_notification_probes_sent_total",
		"Probe NOTIFYs sent; compare with mediator_notification_lag_seconds_count (probes that came back).")
	m.queueDepth = f.gauge("mediator_queue_messages",
		"Messages in the queue for all wallets (pending and in flight), sampled every 15s.")
	m.queueInFlight = f.gauge("mediator_queue_in_flight_messages",
		"Queued messages handed out and waiting for acknowledgement under an unexpired lease, sampled every 15s.")
	m.queueOldest = f.gauge("mediator_queue_oldest_message_age_seconds",
		"Age of the oldest queued message (0 when the queue is empty), sampled every 15s.")
	m.queueSampleErr = f.counter("mediator_queue_sample_errors_total",
		"Queue samples that failed (the queue gauges keep their previous value).")

	for _, method := range deliveryMethods {
		m.delivered.WithLabelValues(method)
	}
	for _, o := range webhookOutcomes {
		m.webhook.WithLabelValues(o)
	}
	for _, l := range LimitNames {
		m.limits.WithLabelValues(l)
	}
	m.direct.WithLabelValues("delivered")
	m.direct.WithLabelValues("failed")
	build := f.gaugeVec("mediator_build_info", "Always 1; the version label is the mediator's version.", "version")
	build.WithLabelValues(opts.Version).Set(1)
	if !opts.NoRuntime {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is the registry every metric is on: serve it with promhttp.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ---- mediator.Observer ----

// Inbound counts one inbound message. msgType is a type key
// (didcomm.MessageType.Key) or "" if unreadable; it is bounded by TypeLabel.
func (m *Metrics) Inbound(transport, msgType, outcome string) {
	m.inbound.WithLabelValues(TypeLabel(msgType), transport, outcome).Inc()
}

// ForwardAccepted observes one accepted forward's latency.
func (m *Metrics) ForwardAccepted(d time.Duration) {
	m.forwardAccept.Observe(seconds(d))
}

// ---- pickup.Observer ----

// Delivered observes how long one message waited before it was written to
// the wallet by method (delivery, live, batch, implicit; others count as
// "other").
func (m *Metrics) Delivered(method string, waited time.Duration) {
	switch method {
	case "delivery", "live", "batch", "implicit":
	default:
		method = "other"
	}
	m.delivered.WithLabelValues(method).Observe(seconds(waited))
}

// Redelivered counts n messages handed out again.
func (m *Metrics) Redelivered(n int) {
	if n > 0 {
		m.redeliveries.Add(float64(n))
	}
}

// ---- transport hooks ----

// SocketOpened counts a WebSocket in (transport.Config.OnSocketOpen).
func (m *Metrics) SocketOpened() { m.sockets.Inc() }

// SocketClosed counts a WebSocket out (transport.Config.OnSocketClose).
func (m *Metrics) SocketClosed() { m.sockets.Dec() }

// ---- notify.WebhookConfig.OnResult ----

// WebhookResult counts one webhook outcome (notify.Outcome*; others count
// as "other").
func (m *Metrics) WebhookResult(outcome string) {
	switch outcome {
	case notify.OutcomeDelivered, notify.OutcomeFailed, notify.OutcomeDropped, notify.OutcomeRetry:
	default:
		outcome = "other"
	}
	m.webhook.WithLabelValues(outcome).Inc()
}

// ---- limits ----

// LimitRejected counts one refusal by the named limit.
func (m *Metrics) LimitRejected(limit string) {
	if limit == "" {
		limit = "unknown"
	}
	m.limits.WithLabelValues(limit).Inc()
}

// QueueSoftCapExceeded counts one message queued beyond its connection's
// soft cap (mediator.Limits.OnQueueSoftCap).
func (m *Metrics) QueueSoftCapExceeded() { m.softCap.Inc() }

// MessagesExpired counts n messages removed by the TTL
// (queue.ExpiryOptions.OnExpired).
func (m *Metrics) MessagesExpired(n int) {
	if n > 0 {
		m.expired.Add(float64(n))
	}
}

// DirectDelivery counts one direct delivery attempt
// (mediator.Forwarding.OnDirect).
func (m *Metrics) DirectDelivery(delivered bool) {
	result := "failed"
	if delivered {
		result = "delivered"
	}
	m.direct.WithLabelValues(result).Inc()
}

// ---- queuepg.ClusterOptions.OnNotifyLag ----

// NotificationLag observes one probe notification's round trip.
func (m *Metrics) NotificationLag(d time.Duration) {
	m.notifyLag.Observe(seconds(d))
}

func seconds(d time.Duration) float64 {
	return max(d, 0).Seconds()
}

// factory creates metrics and registers them on reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
