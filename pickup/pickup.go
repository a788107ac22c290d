// Package pickup implements Message Pickup 1.0 (RFC 0212) and 2.0 (RFC 0685)
// on top of the transport queue: status, delivery, acknowledgement, batch
// pickup, and live delivery to sockets held by this instance.
package pickup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
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

// Options tune the service.
type Options struct {
	Instance      string // this process's instance id, recorded on claims
	MaxBatch      int    // clamp for delivery-request limit and batch_size (default 100)
	LiveBatch     int    // messages per live push (default 10, as Credo)
	Logger        *slog.Logger
	Now           func() time.Time
	DeliveryRetry time.Duration // how long a failed live push waits before the next attempt (default 1s)
}

// Service answers pickup messages and pushes to live sessions on this instance.
type Service struct {
	queue Queue
	opts  Options

	mu   sync.Mutex
	live map[string]*liveSession // by connection id
}

// liveSession is a socket on this instance with live mode on.
type liveSession struct {
	conv    Conversation
	pushing sync.Mutex // one push at a time per session keeps order
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{queue: q, opts: opts, live: make(map[string]*liveSession)}
}

// Handles reports whether m belongs to a pickup protocol version we speak.
func Handles(m *didcomm.Message) bool {
	return m.MsgType.Protocol == protocolV1 && (m.MsgType.Major == 1 || m.MsgType.Major == 2)
}

// Handle processes one pickup message.
func (s *Service) Handle(ctx context.Context, c Conversation, m *didcomm.Message) error {
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
	return out, nil
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
	msgs, err := s.queue.Claim(ctx, f, limit, s.holder(c))
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
		s.release(ctx, c.ConnectionID, msgs)
		return fmt.Errorf("pickup: send delivery: %w", err)
	}
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
	if len(req.MessageIDList) > 0 {
		n, err := s.queue.Ack(ctx, c.ConnectionID, req.MessageIDList)
		if err != nil {
			return fmt.Errorf("pickup: messages-received: %w", err)
		}
		s.opts.Logger.DebugContext(ctx, "messages acknowledged", "connection", c.ConnectionID, "named", len(req.MessageIDList), "deleted", n)
	}
	st, err := s.buildStatus(ctx, m, queue.Filter{ConnectionID: c.ConnectionID}, "", s.liveFlag(c))
	if err != nil {
		return err
	}
	return c.Send(ctx, st)
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
		s.setLive(c)
	} else {
		s.unsetLive(c.ConnectionID, c.Session)
	}
	st, err := s.buildStatus(ctx, m, queue.Filter{ConnectionID: c.ConnectionID}, "", &on)
	if err != nil {
		return err
	}
	return c.Send(ctx, st)
}

// setLive makes c's socket the connection's live session on this instance,
// replacing an older one, and ends it when the socket closes.
func (s *Service) setLive(c Conversation) {
	ls := &liveSession{conv: c}
	s.mu.Lock()
	s.live[c.ConnectionID] = ls
	s.mu.Unlock()
	go func() {
		<-c.Session.Done()
		s.unsetLive(c.ConnectionID, c.Session)
	}()
}

func (s *Service) unsetLive(connectionID string, sess transport.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls, ok := s.live[connectionID]; ok && (sess == nil || ls.conv.Session.ID() == sess.ID()) {
		delete(s.live, connectionID)
	}
}

// LiveSessions is the number of live sessions on this instance.
func (s *Service) LiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// MessageQueued is called after a message for connectionID was queued: if the
// wallet has a live session here, the pending messages are pushed at once.
// A failed push leaves them queued; it never fails the forward.
func (s *Service) MessageQueued(ctx context.Context, connectionID string) {
	s.mu.Lock()
	ls, ok := s.live[connectionID]
	s.mu.Unlock()
	if !ok {
		return
	}
	s.push(ctx, ls)
}

// push sends the live session one delivery with up to LiveBatch claimable
// messages. Further messages follow the wallet's own status/delivery-request
// loop after its messages-received, as Credo expects.
func (s *Service) push(ctx context.Context, ls *liveSession) {
	if !ls.pushing.TryLock() {
		return // a push is under way; the wallet's next status round picks the rest up
	}
	defer ls.pushing.Unlock()
	c := ls.conv
	msgs, err := s.queue.Claim(ctx, queue.Filter{ConnectionID: c.ConnectionID}, s.opts.LiveBatch, s.holder(c))
	if err != nil {
		s.opts.Logger.WarnContext(ctx, "live push: claim failed", "connection", c.ConnectionID, "err", err)
		return
	}
	if len(msgs) == 0 {
		return
	}
	d := buildDelivery(didcomm.NewHeader(TypeV2Delivery), "", msgs)
	if err := c.Send(ctx, d); err != nil {
		s.opts.Logger.InfoContext(ctx, "live push failed; messages stay queued", "connection", c.ConnectionID, "count", len(msgs), "err", err)
		s.release(ctx, c.ConnectionID, msgs)
		s.unsetLive(c.ConnectionID, c.Session)
		return
	}
	s.opts.Logger.DebugContext(ctx, "live push", "connection", c.ConnectionID, "count", len(msgs))
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
// are claimed, written, and deleted only once the write succeeded.
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
	msgs, err := s.queue.Claim(ctx, queue.Filter{ConnectionID: c.ConnectionID}, size, s.holder(c))
	if err != nil {
		return fmt.Errorf("pickup: batch-pickup: %w", err)
	}
	b := batch{Header: didcomm.ReplyHeader(TypeV1Batch, m), Messages: make([]batchItem, len(msgs))}
	for i, qm := range msgs {
		b.Messages[i] = batchItem{ID: qm.ID, Message: json.RawMessage(qm.Payload)}
	}
	if err := c.Send(ctx, b); err != nil {
		s.release(ctx, c.ConnectionID, msgs)
		return fmt.Errorf("pickup: send batch: %w", err)
	}
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

func (s *Service) release(ctx context.Context, connectionID string, msgs []queue.Message) {
	ids := make([]string, len(msgs))
	for i, qm := range msgs {
		ids[i] = qm.ID
	}
	if err := s.queue.Release(context.WithoutCancel(ctx), connectionID, ids); err != nil {
		s.opts.Logger.WarnContext(ctx, "release failed; messages return when their lease ends", "connection", connectionID, "err", err)
	}
}

func (s *Service) problem(ctx context.Context, c Conversation, m *didcomm.Message, code, text string) error {
	pr := didcomm.NewProblemReport(didcomm.TypeProblemReport, m, code, text, false)
	return c.Send(ctx, pr)
}
