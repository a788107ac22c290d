// Package pickup implements Message Pickup 1.0 (RFC 0212) and 2.0 (RFC 0685)
// on top of the transport queue: status, delivery, acknowledgement, batch
// pickup, and live delivery to sockets held by this instance.
//
// # Delivery guarantees
//
// Pickup 2.0 (delivery-request replies and live-mode pushes) is
// at-least-once: delivered messages stay in flight until the wallet names
// them in messages-received, and a message that is not acknowledged before
// its lease runs out (or whose socket closes) is handed out again.
//
// Pickup 1.0 batch-pickup and implicit pickup (raw envelopes pushed on a
// return-route socket) are at-most-once at the transport boundary: those
// protocols have no acknowledgement, so a message is deleted as soon as its
// bytes were handed to the operating system (transport.Session.Send
// returned nil). If the connection drops at that instant, after the write
// but before the wallet read it, the message is lost. This is inherent to
// the protocols; wallets that need at-least-once use pickup 2.0. A write
// that fails, on the other hand, leaves the message queued.
//
// # Batch size
//
// Every batch (delivery, live push, v1 batch, implicit push) is bounded by
// a message count and by Options.MaxBatchBytes of payload: messages are
// taken oldest first while the total stays within the cap (a single larger
// message still goes out alone), and what was claimed beyond it is released
// at once for the next batch.
package pickup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/internal/logctx"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/transport"
)

// Message types this package answers and sends.
const (
	TypeV2Status             = didcomm.PrefixHTTPS + "messagepickup/2.0/status"
	TypeV2Delivery           = didcomm.PrefixHTTPS + "messagepickup/2.0/delivery"
	TypeV1Status             = didcomm.PrefixHTTPS + "messagepickup/1.0/status"
	TypeV1Batch              = didcomm.PrefixHTTPS + "messagepickup/1.0/batch"
	protocolV1               = "messagepickup"
	codeLiveModeNotSupported = "e.m.live-mode-not-supported"
)

// Protocols are the PIURIs this package implements, for discover-features.
var protocols = []string{
	didcomm.PrefixHTTPS + "messagepickup/1.0",
	didcomm.PrefixHTTPS + "messagepickup/2.0",
}

// Protocols returns the PIURIs this package implements.
func Protocols() []string { return append([]string(nil), protocols...) }

// ErrNotPickup is returned by Handle for messages of other protocols.
var ErrNotPickup = errors.New("pickup: not a message pickup message")

// ErrNoReturnRoute is what a Conversation's Send returns when the inbound
// message asked for no return route, so a reply cannot be sent.
var ErrNoReturnRoute = errors.New("pickup: inbound message has no return route")

// Conversation is the context of one inbound pickup message: the wallet's
// connection and the way back to it.
type Conversation struct {
	ConnectionID string
	Session      transport.Session
	// Send packs msg for the connection and writes it on Session; it fails
	// with ErrNoReturnRoute when the wallet did not ask for return routing.
	Send func(ctx context.Context, msg any) error
}

// DefaultMaxBatchBytes is the default Options.MaxBatchBytes: 4 MiB.
const DefaultMaxBatchBytes = 4 << 20

// Options tune the service.
type Options struct {
	Instance  string // this process's instance id, recorded on claims
	MaxBatch  int    // clamp for delivery-request limit and batch_size (default 100)
	LiveBatch int    // messages per live push (default 10, as Credo)
	// MaxBatchBytes caps the payload bytes (the sum of the queued envelopes'
	// sizes) of one batch: a delivery, a live push, a v1 batch, or one round
	// of implicit pushes. Messages are taken oldest first while the total
	// stays within it; a single larger message still goes out alone. Claimed
	// messages beyond the cap are released at once (their attempt count, and
	// so the redelivery metric, still counts that claim). The reply on the
	// wire is larger: packing adds about a third (base64) and headers.
	// Default DefaultMaxBatchBytes (4 MiB).
	MaxBatchBytes int64
	Logger        *slog.Logger
	Now           func() time.Time
	// Registry records live sessions cluster-wide; nil keeps them local.
	Registry Registry
	// Implicit enables implicit pickup: a WebSocket that sends any
	// non-pickup message with return_route "all" gets queued messages pushed
	// raw (older wallets' "Implicit" strategy).
	Implicit bool
	// PushTimeout bounds one push to a socket (default 30s).
	PushTimeout time.Duration
	// AckGrace is how long the queue keeps a closed session's unacknowledged
	// messages in flight (see queuepg.Options.AckGrace); when it is over the
	// connection's live session, wherever it is, is woken to get them.
	AckGrace time.Duration
	// Observer hears of deliveries, for metrics. Optional.
	Observer Observer
}

// Service answers pickup messages and pushes to live sessions on this instance.
type Service struct {
	queue Queue
	opts  Options

	mu      sync.Mutex
	live    map[string]*liveSession // by connection id
	sockets map[string]*socketState // WebSockets we watch, by session id
	timers  map[*graceTimer]struct{}
	closed  bool // Close was called: no more ack-grace timers
	wg      sync.WaitGroup

	// afterDrain, when set (by tests), runs in a push goroutine after its
	// last look at liveSession.again and before it unlocks pushing.
	afterDrain func()
}

// socketState is what the service remembers of one WebSocket until it
// closes. Each has exactly one watcher goroutine, whatever roles it plays.
type socketState struct {
	pickup bool     // it spoke a pickup protocol: never an implicit-pickup socket
	live   []string // connections that made it their push session (usually one)
}

// graceTimer is a pending wake-up at the end of a closed session's ack grace.
type graceTimer struct{ t *time.Timer }

// liveSession is a socket on this instance that receives pushes.
type liveSession struct {
	conv     Conversation
	protocol string      // queue.ProtocolLiveV2 or queue.ProtocolImplicit
	pushing  sync.Mutex  // one push at a time per session keeps order
	again    atomic.Bool // a wake-up arrived during a push: push once more
	ended    atomic.Bool
}

// New returns a pickup service over q.
func New(q Queue, opts Options) *Service {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 100
	}
	if opts.LiveBatch <= 0 {
		opts.LiveBatch = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Logger = logctx.Wrap(opts.Logger)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PushTimeout <= 0 {
		opts.PushTimeout = 30 * time.Second
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	return &Service{queue: q, opts: opts, live: make(map[string]*liveSession),
		sockets: make(map[string]*socketState), timers: make(map[*graceTimer]struct{})}
}

// Handles reports whether m belongs to a pickup protocol version we speak.
func Handles(m *didcomm.Message) bool {
	return m.MsgType.Protocol == protocolV1 && (m.MsgType.Major == 1 || m.MsgType.Major == 2)
}

// Handle processes one pickup message.
func (s *Service) Handle(ctx context.Context, c Conversation, m *didcomm.Message) error {
	s.markPickupSocket(c.Session)
	switch m.MsgType.Key() {
	case "messagepickup/2/status-request":
		return s.statusRequest(ctx, c, m)
	case "messagepickup/2/delivery-request":
		return s.deliveryRequest(ctx, c, m)
	case "messagepickup/2/messages-received":
		return s.messagesReceived(ctx, c, m)
	case "messagepickup/2/live-delivery-change":
		return s.liveDeliveryChange(ctx, c, m)
	case "messagepickup/1/batch-pickup":
		return s.batchPickup(ctx, c, m)
	case "messagepickup/1/status-request":
		return s.statusRequestV1(ctx, c, m)
	case "messagepickup/1/noop":
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotPickup, m.Type)
}

// status is the RFC 0685 status message.
type status struct {
	didcomm.Header
	MessageCount         int    `json:"message_count"`
	RecipientKey         string `json:"recipient_key,omitempty"`
	LongestWaitedSeconds *int64 `json:"longest_waited_seconds,omitempty"`
	NewestReceivedTime   string `json:"newest_received_time,omitempty"`
	OldestReceivedTime   string `json:"oldest_received_time,omitempty"`
	TotalBytes           *int64 `json:"total_bytes,omitempty"`
	LiveDelivery         *bool  `json:"live_delivery,omitempty"`
}

type recipientFilter struct {
	RecipientKey string `json:"recipient_key,omitempty"`
}

func (s *Service) filter(c Conversation, received string) (queue.Filter, error) {
	f := queue.Filter{ConnectionID: c.ConnectionID}
	if received == "" {
		return f, nil
	}
	key, err := diddoc.NormalizeVerkey(received)
	if err != nil {
		return f, err
	}
	f.RecipientKey = key
	return f, nil
}

func (s *Service) buildStatus(ctx context.Context, m *didcomm.Message, f queue.Filter, echoKey string, live *bool) (status, error) {
	st, err := s.queue.Stats(ctx, f)
	if err != nil {
		return status{}, fmt.Errorf("pickup: status: %w", err)
	}
	return s.statusOf(m, st, echoKey, live), nil
}

// statusOf is the status replying to m that reports st.
func (s *Service) statusOf(m *didcomm.Message, st queue.Stats, echoKey string, live *bool) status {
	out := status{
		Header:       didcomm.ReplyHeader(TypeV2Status, m),
		MessageCount: st.Count,
		RecipientKey: echoKey,
		LiveDelivery: live,
	}
	if st.Count > 0 {
		waited := int64(s.opts.Now().Sub(st.Oldest) / time.Second)
		out.LongestWaitedSeconds = &waited
		out.OldestReceivedTime = st.Oldest.UTC().Format(time.RFC3339Nano)
		out.NewestReceivedTime = st.Newest.UTC().Format(time.RFC3339Nano)
		total := st.TotalBytes
		out.TotalBytes = &total
	}
	return out
}

func (s *Service) statusRequest(ctx context.Context, c Conversation, m *didcomm.Message) error {
	var req recipientFilter
	if err := m.Decode(&req); err != nil {
		return err
	}
	f, err := s.filter(c, req.RecipientKey)
	if err != nil {
		return s.problem(ctx, c, m, "invalid-recipient-key", err.Error())
	}
	st, err := s.buildStatus(ctx, m, f, req.RecipientKey, s.liveFlag(c))
	if err != nil {
		return err
	}
	return c.Send(ctx, st)
}

// liveFlag reports live_delivery only for a connection that has it on here.
func (s *Service) liveFlag(c Conversation) *bool {
	s.mu.Lock()
	_, ok := s.live[c.ConnectionID]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	on := true
	return &on
}

type deliveryRequest struct {
	Limit        *int   `json:"limit"`
	RecipientKey string `json:"recipient_key,omitempty"`
}

// attachment is one queued message in a delivery.
type attachment struct {
	ID          string         `json:"@id"`
	LastModTime string         `json:"lastmod_time,omitempty"`
	Data        attachmentData `json:"data"`
}

type attachmentData struct {
	JSON json.RawMessage `json:"json"`
}

type delivery struct {
	didcomm.Header
	RecipientKey string       `json:"recipient_key,omitempty"`
	Attach       []attachment `json:"~attach"`
}

func (s *Service) deliveryRequest(ctx context.Context, c Conversation, m *didcomm.Message) error {
	var req deliveryRequest
	if err := m.Decode(&req); err != nil {
		return err
	}
	if req.Limit == nil || *req.Limit < 1 {
		return s.problem(ctx, c, m, "invalid-limit", "delivery-request needs a positive limit")
	}
	f, err := s.filter(c, req.RecipientKey)
	if err != nil {
		return s.problem(ctx, c, m, "invalid-recipient-key", err.Error())
	}
	limit := min(*req.Limit, s.opts.MaxBatch)
	msgs, _, err := s.claimBatch(ctx, f, limit, s.holder(c))
	if err != nil {
		return fmt.Errorf("pickup: delivery-request: %w", err)
	}
	if len(msgs) == 0 {
		st, err := s.buildStatus(ctx, m, f, req.RecipientKey, s.liveFlag(c))
		if err != nil {
			return err
		}
		return c.Send(ctx, st)
	}
	d := buildDelivery(didcomm.ReplyHeader(TypeV2Delivery, m), req.RecipientKey, msgs)
	if err := c.Send(ctx, d); err != nil {
		// Nothing reached the wallet: make the messages available again now
		// rather than after the lease.
		s.release(ctx, s.holder(c), c.ConnectionID, msgs)
		return fmt.Errorf("pickup: send delivery: %w", err)
	}
	s.delivered(methodDelivery, msgs)
	return nil
}

func buildDelivery(h didcomm.Header, recipientKey string, msgs []queue.Message) delivery {
	d := delivery{Header: h, RecipientKey: recipientKey, Attach: make([]attachment, len(msgs))}
	for i, qm := range msgs {
		d.Attach[i] = attachment{
			ID:          qm.ID,
			LastModTime: qm.ReceivedAt.UTC().Format(time.RFC3339Nano),
			Data:        attachmentData{JSON: json.RawMessage(qm.Payload)},
		}
	}
	return d
}

type messagesReceived struct {
	MessageIDList []string `json:"message_id_list"`
}

func (s *Service) messagesReceived(ctx context.Context, c Conversation, m *didcomm.Message) error {
	var req messagesReceived
	if err := m.Decode(&req); err != nil {
		return err
	}
	n, stats, err := s.queue.AckStats(ctx, c.ConnectionID, req.MessageIDList)
	// A live wallet that acknowledged a push is ready for the next one, if
	// the status counts one (what is queued after the count wakes the push
	// itself): no claim that finds nothing after every delivery. After a
	// failure the acknowledgement may or may not have committed (a lost
	// connection can hide a commit): wake the push either way; at worst it
	// sends again what the wallet already has.
	if len(req.MessageIDList) > 0 && (err != nil || stats.Count > 0) {
		s.MessageQueued(ctx, c.ConnectionID)
	}
	if err != nil {
		return fmt.Errorf("pickup: messages-received: %w", err)
	}
	s.opts.Logger.DebugContext(ctx, "messages acknowledged", "connection", c.ConnectionID, "named", len(req.MessageIDList), "deleted", n)
	return c.Send(ctx, s.statusOf(m, stats, "", s.liveFlag(c)))
}

type liveDeliveryChange struct {
	LiveDelivery *bool `json:"live_delivery"`
}

func (s *Service) liveDeliveryChange(ctx context.Context, c Conversation, m *didcomm.Message) error {
	var req liveDeliveryChange
	if err := m.Decode(&req); err != nil {
		return err
	}
	if req.LiveDelivery == nil {
		return s.problem(ctx, c, m, "missing-value", "live-delivery-change needs live_delivery")
	}
	on := *req.LiveDelivery
	if on {
		if c.Session == nil || c.Session.Kind() != transport.KindWebSocket {
			pr := didcomm.NewProblemReport(didcomm.TypeNotificationProblemReport, m,
				codeLiveModeNotSupported, "Connection does not support Live Delivery", true)
			return c.Send(ctx, pr)
		}
		if err := s.setLive(ctx, c, queue.ProtocolLiveV2); err != nil {
			return err
		}
	} else {
		s.unsetLive(c.ConnectionID, c.Session)
	}
	st, err := s.buildStatus(ctx, m, queue.Filter{ConnectionID: c.ConnectionID}, "", &on)
	if err != nil {
		return err
	}
	return c.Send(ctx, st)
}

// setLive makes c's socket the connection's push session on this instance,
// replacing an older one, and ends it when the socket closes. An implicit
// session gets what is queued at once; a live-mode (v2) one does not: RFC
// 0685 has the wallet drain with delivery-request first, and the reconcile
// pass picks up whatever is left behind later.
func (s *Service) setLive(ctx context.Context, c Conversation, protocol string) error {
	ls := &liveSession{conv: c, protocol: protocol}
	if reg := s.opts.Registry; reg != nil {
		err := reg.RegisterSession(ctx, queue.Session{ID: c.Session.ID(), ConnectionID: c.ConnectionID,
			Instance: s.opts.Instance, Protocol: protocol})
		if err != nil {
			return fmt.Errorf("pickup: register live session: %w", err)
		}
	}
	s.mu.Lock()
	old := s.live[c.ConnectionID]
	s.live[c.ConnectionID] = ls
	st := s.watchLocked(c.Session)
	if !slices.Contains(st.live, c.ConnectionID) {
		st.live = append(st.live, c.ConnectionID)
	}
	s.mu.Unlock()
	if old != nil && old.conv.Session.ID() == c.Session.ID() {
		old.ended.Store(true) // same socket changed mode
	}
	s.opts.Logger.InfoContext(ctx, "live session", "connection", c.ConnectionID, "session", c.Session.ID(), "protocol", protocol)
	if protocol == queue.ProtocolImplicit {
		s.wake(ctx, ls)
	}
	return nil
}

// watchLocked returns the state of sess, a WebSocket, starting its one
// watcher goroutine the first time: when the socket closes, the watcher
// forgets it and ends the push sessions it carried. s.mu is held.
func (s *Service) watchLocked(sess transport.Session) *socketState {
	id := sess.ID()
	if st, ok := s.sockets[id]; ok {
		return st
	}
	st := &socketState{}
	s.sockets[id] = st
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-sess.Done()
		s.socketClosed(id)
	}()
	return st
}

// socketClosed forgets a closed socket and ends its push sessions.
func (s *Service) socketClosed(sessionID string) {
	s.mu.Lock()
	st := s.sockets[sessionID]
	delete(s.sockets, sessionID)
	s.mu.Unlock()
	if st == nil {
		return
	}
	for _, connectionID := range st.live {
		s.endSession(connectionID, sessionID)
	}
}

// endSession forgets a closed socket's push session for connectionID and
// returns what it held to the queue.
func (s *Service) endSession(connectionID, sessionID string) {
	s.mu.Lock()
	if ls, ok := s.live[connectionID]; ok && ls.conv.Session.ID() == sessionID {
		ls.ended.Store(true)
		delete(s.live, connectionID)
	}
	s.mu.Unlock()
	if reg := s.opts.Registry; reg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.UnregisterSession(ctx, sessionID); err != nil {
			s.opts.Logger.Warn("unregister live session failed; the janitor removes it", "session", sessionID, "err", err)
		}
		if s.opts.AckGrace > 0 {
			s.afterGrace(connectionID)
		}
	}
}

// afterGrace wakes the connection wherever it is live once the ack grace
// of a closed session is over. The timer is tracked: Close stops it, and
// none is started after Close.
func (s *Service) afterGrace(connectionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	g := &graceTimer{}
	s.timers[g] = struct{}{}
	s.wg.Add(1)
	// The callback takes s.mu, held here until g.t is set.
	g.t = time.AfterFunc(s.opts.AckGrace+50*time.Millisecond, func() {
		defer s.wg.Done()
		s.mu.Lock()
		_, pending := s.timers[g]
		delete(s.timers, g)
		s.mu.Unlock()
		if pending {
			s.wakeAnywhere(connectionID)
		}
	})
}

// wakeAnywhere wakes the connection's push session here or on whichever
// instance holds it.
func (s *Service) wakeAnywhere(connectionID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.MessageQueued(ctx, connectionID)
	if err := s.opts.Registry.WakeConnection(ctx, connectionID); err != nil {
		s.opts.Logger.Warn("wake after ack grace failed; the janitor wakes it later", "connection", connectionID, "err", err)
	}
}

func (s *Service) unsetLive(connectionID string, sess transport.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls, ok := s.live[connectionID]; ok && (sess == nil || ls.conv.Session.ID() == sess.ID()) {
		ls.ended.Store(true)
		delete(s.live, connectionID)
	}
}

// markPickupSocket remembers that a socket speaks a pickup protocol, so it
// is never treated as an implicit-pickup socket.
func (s *Service) markPickupSocket(sess transport.Session) {
	if sess == nil || sess.Kind() != transport.KindWebSocket {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchLocked(sess).pickup = true
}

// Implicit is called for a non-pickup message that asked for return_route
// "all": on a WebSocket that never spoke a pickup protocol, the socket
// becomes the wallet's implicit pickup channel and queued messages are
// pushed on it raw.
func (s *Service) Implicit(ctx context.Context, c Conversation) {
	if !s.opts.Implicit || c.Session == nil || c.Session.Kind() != transport.KindWebSocket {
		return
	}
	s.mu.Lock()
	st := s.sockets[c.Session.ID()]
	spoke := st != nil && st.pickup
	cur, exists := s.live[c.ConnectionID]
	s.mu.Unlock()
	if spoke || (exists && cur.conv.Session.ID() == c.Session.ID()) {
		if exists {
			s.wake(ctx, cur)
		}
		return
	}
	if err := s.setLive(ctx, c, queue.ProtocolImplicit); err != nil {
		s.opts.Logger.WarnContext(ctx, "implicit pickup session not started", "connection", c.ConnectionID, "err", err)
	}
}

// LiveSessions is the number of push sessions on this instance.
func (s *Service) LiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// HasLiveSession tells whether connectionID has a push session here.
func (s *Service) HasLiveSession(connectionID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[connectionID]
	return ok
}

// MessageQueued wakes the connection's push session on this instance, if
// there is one. It returns at once: the push runs in the background, and a
// failed push leaves the messages queued. Notifications from other
// instances and reconcile passes call it too.
func (s *Service) MessageQueued(ctx context.Context, connectionID string) {
	s.mu.Lock()
	ls, ok := s.live[connectionID]
	s.mu.Unlock()
	if ok {
		s.wake(ctx, ls)
	}
}

// Reconcile wakes every push session on this instance, so messages whose
// notification was lost or whose lease ran out are delivered.
func (s *Service) Reconcile(ctx context.Context) {
	s.mu.Lock()
	sessions := make([]*liveSession, 0, len(s.live))
	for _, ls := range s.live {
		sessions = append(sessions, ls)
	}
	s.mu.Unlock()
	for _, ls := range sessions {
		s.wake(ctx, ls)
	}
}

// wake runs a push in the background unless one is under way, in which
// case that one goes round once more.
func (s *Service) wake(ctx context.Context, ls *liveSession) {
	ls.again.Store(true)
	if !ls.pushing.TryLock() {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx := pushLogContext(context.WithoutCancel(ctx), ls)
		for {
			s.drain(ctx, ls)
			if s.afterDrain != nil {
				s.afterDrain()
			}
			ls.pushing.Unlock()
			// A wake-up that came after drain's last look at again found
			// pushing still locked and left the push to us: take the lock
			// back and go round, unless another wake already did.
			if !ls.again.Load() || ls.ended.Load() || !ls.pushing.TryLock() {
				return
			}
		}
	}()
}

// drain pushes while wake-ups keep coming (or a push says more is
// waiting). ls.pushing is held.
func (s *Service) drain(ctx context.Context, ls *liveSession) {
	for ls.again.Swap(false) && !ls.ended.Load() {
		pctx, cancel := context.WithTimeout(ctx, s.opts.PushTimeout)
		more, err := s.pushOnce(pctx, ls)
		cancel()
		if err != nil {
			return
		}
		if more {
			ls.again.Store(true)
		}
	}
}

// pushOnce sends one batch and tells whether another may be waiting.
// Live (v2) pushes are wrapped in a delivery and wait for messages-received;
// implicit pushes are raw envelopes, each deleted once written.
func (s *Service) pushOnce(ctx context.Context, ls *liveSession) (bool, error) {
	c := ls.conv
	msgs, more, err := s.claimBatch(ctx, queue.Filter{ConnectionID: c.ConnectionID}, s.opts.LiveBatch, s.holder(c))
	if err != nil {
		s.opts.Logger.WarnContext(ctx, "live push: claim failed", "connection", c.ConnectionID, "err", err)
		return false, err
	}
	if len(msgs) == 0 {
		return false, nil
	}
	if ls.protocol == queue.ProtocolImplicit {
		return s.pushRaw(ctx, ls, msgs, more)
	}
	d := buildDelivery(didcomm.NewHeader(TypeV2Delivery), "", msgs)
	if err := c.Send(ctx, d); err != nil {
		s.dropAfterFailedPush(ctx, ls, msgs, err)
		return false, err
	}
	s.delivered(methodLive, msgs)
	s.opts.Logger.DebugContext(ctx, "live push", "connection", c.ConnectionID, "count", len(msgs))
	// The next batch follows the wallet's messages-received.
	return false, nil
}

// pushRaw writes msgs one by one as raw envelopes and deletes each batch
// once written: at most once (see the package documentation).
func (s *Service) pushRaw(ctx context.Context, ls *liveSession, msgs []queue.Message, more bool) (bool, error) {
	c := ls.conv
	written := make([]string, 0, len(msgs))
	var sendErr error
	for _, qm := range msgs {
		if sendErr = c.Session.Send(ctx, qm.Payload); sendErr != nil {
			break
		}
		written = append(written, qm.ID)
	}
	s.delivered(methodImplicit, msgs[:len(written)])
	if len(written) > 0 {
		// Implicit pickup has no acknowledgement: a message written to the
		// socket is delivered.
		if _, err := s.queue.Ack(context.WithoutCancel(ctx), c.ConnectionID, written); err != nil {
			s.opts.Logger.WarnContext(ctx, "implicit push: delete failed; messages will be sent again", "connection", c.ConnectionID, "err", err)
		}
	}
	if sendErr != nil {
		s.dropAfterFailedPush(ctx, ls, msgs[len(written):], sendErr)
		return false, sendErr
	}
	s.opts.Logger.DebugContext(ctx, "implicit push", "connection", c.ConnectionID, "count", len(written))
	return more, nil
}

func (s *Service) dropAfterFailedPush(ctx context.Context, ls *liveSession, unsent []queue.Message, err error) {
	s.opts.Logger.InfoContext(ctx, "push failed; messages stay queued", "connection", ls.conv.ConnectionID, "count", len(unsent), "err", err)
	s.release(ctx, s.holder(ls.conv), ls.conv.ConnectionID, unsent)
	s.unsetLive(ls.conv.ConnectionID, ls.conv.Session)
}

// Close stops pending ack-grace wake-ups and waits for background pushes
// and session clean-ups to finish (socket watchers end when their sockets
// close, so close the transport first).
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for g := range s.timers {
		if g.t.Stop() {
			s.wg.Done() // its callback will never run
		}
		delete(s.timers, g)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pickup: close: %w", ctx.Err())
	}
}

type batchPickup struct {
	BatchSize *int `json:"batch_size"`
}

type batchItem struct {
	ID      string          `json:"id"`
	Message json.RawMessage `json:"message"`
}

type batch struct {
	didcomm.Header
	Messages []batchItem `json:"messages~attach"`
}

// batchPickup answers v1 batch-pickup. v1 has no acknowledgement: messages
// are claimed, written, and deleted only once the write succeeded; so at
// most once (see the package documentation).
func (s *Service) batchPickup(ctx context.Context, c Conversation, m *didcomm.Message) error {
	var req batchPickup
	if err := m.Decode(&req); err != nil {
		return err
	}
	size := 10
	if req.BatchSize != nil {
		size = *req.BatchSize
	}
	size = max(0, min(size, s.opts.MaxBatch))
	msgs, _, err := s.claimBatch(ctx, queue.Filter{ConnectionID: c.ConnectionID}, size, s.holder(c))
	if err != nil {
		return fmt.Errorf("pickup: batch-pickup: %w", err)
	}
	b := batch{Header: didcomm.ReplyHeader(TypeV1Batch, m), Messages: make([]batchItem, len(msgs))}
	for i, qm := range msgs {
		b.Messages[i] = batchItem{ID: qm.ID, Message: json.RawMessage(qm.Payload)}
	}
	if err := c.Send(ctx, b); err != nil {
		s.release(ctx, s.holder(c), c.ConnectionID, msgs)
		return fmt.Errorf("pickup: send batch: %w", err)
	}
	s.delivered(methodBatch, msgs)
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]string, len(msgs))
	for i, qm := range msgs {
		ids[i] = qm.ID
	}
	if _, err := s.queue.Ack(ctx, c.ConnectionID, ids); err != nil {
		// The lease runs out and the messages are redelivered: a duplicate,
		// never a loss.
		return fmt.Errorf("pickup: delete sent batch: %w", err)
	}
	return nil
}

type statusV1 struct {
	didcomm.Header
	MessageCount int `json:"message_count"`
}

func (s *Service) statusRequestV1(ctx context.Context, c Conversation, m *didcomm.Message) error {
	st, err := s.queue.Stats(ctx, queue.Filter{ConnectionID: c.ConnectionID})
	if err != nil {
		return fmt.Errorf("pickup: status: %w", err)
	}
	return c.Send(ctx, statusV1{Header: didcomm.ReplyHeader(TypeV1Status, m), MessageCount: st.Count})
}

func (s *Service) holder(c Conversation) queue.Holder {
	h := queue.Holder{Instance: s.opts.Instance}
	if c.Session != nil {
		h.Session = c.Session.ID()
	}
	return h
}

// release returns msgs, claimed by h, to the queue.
func (s *Service) release(ctx context.Context, h queue.Holder, connectionID string, msgs []queue.Message) {
	if len(msgs) == 0 {
		return
	}
	ids := make([]string, len(msgs))
	for i, qm := range msgs {
		ids[i] = qm.ID
	}
	if err := s.queue.Release(context.WithoutCancel(ctx), h, connectionID, ids); err != nil {
		s.opts.Logger.WarnContext(ctx, "release failed; messages return when their lease ends", "connection", connectionID, "err", err)
	}
}

func (s *Service) problem(ctx context.Context, c Conversation, m *didcomm.Message, code, text string) error {
	pr := didcomm.NewProblemReport(didcomm.TypeProblemReport, m, code, text, false)
	return c.Send(ctx, pr)
}
