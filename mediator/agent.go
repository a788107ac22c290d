// Package mediator is the DIDComm v1 agent of the mediator: it unpacks
// inbound envelopes, dispatches by message type, runs the handshakes
// (out-of-band, DID Exchange, Connections), coordinate-mediation, forward
// (QueueOnly), trust ping and discover features, and hands pickup messages
// to the pickup service.
package mediator

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/internal/logctx"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/notify"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/transport"
)

// maxKidsTried bounds the key lookups one envelope can cause, so a message
// listing many unknown recipients cannot make us read the store many times.
const maxKidsTried = 4

// Pickup is what the agent needs of the pickup service.
type Pickup interface {
	Handle(ctx context.Context, c pickup.Conversation, m *didcomm.Message) error
	// Implicit offers a return-route socket as an implicit pickup channel.
	Implicit(ctx context.Context, c pickup.Conversation)
	// MessageQueued wakes the connection's push session on this instance.
	MessageQueued(ctx context.Context, connectionID string)
	// HasLiveSession tells whether the connection has a push session here.
	HasLiveSession(connectionID string) bool
}

// Config is the agent's configuration.
type Config struct {
	// Endpoints are the URLs wallets reach us at: the http(s) one first,
	// then the ws(s) one. The first is the mediate-grant endpoint.
	Endpoints []string
	Label     string
	// AutoGrant grants every mediate-request; otherwise they are denied.
	AutoGrant bool
	// Instance is this process's id in the live-session registry.
	Instance string
	// Notifier hears of messages queued for wallets that are offline
	// everywhere (webhook / push). Optional.
	Notifier notify.Notifier
	// Observer hears of every inbound message, for metrics. Optional.
	Observer Observer
	// Limits are the per-connection rate and the reporting of queue caps.
	Limits Limits
	// Forwarding selects how forwards are delivered (default QueueOnly).
	Forwarding Forwarding
	// ConnectionCacheSize bounds the cache of connections that spares
	// authcrypted messages a database read to find theirs (see connCache):
	// 0 is DefaultConnectionCacheSize, negative turns the cache off.
	ConnectionCacheSize int
	// Logger gets the agent's logs; lines about an inbound message carry its
	// transport session, connection and message type (session, connection,
	// msg_type attributes).
	Logger *slog.Logger
}

// Agent is the mediator's DIDComm agent. It implements transport.Handler.
type Agent struct {
	cfg    Config
	store  Store
	queue  Queue
	keys   *keyring.Keyring
	pickup Pickup
	log    *slog.Logger
	limits *limiter
	direct *http.Client // ForwardDirectThenQueue only
	conns  *connCache   // nil: off

	invitationKey ed25519.PrivateKey
	routingKey    ed25519.PrivateKey
	invitation    Invitation
}

// New loads (or, the first time, creates) the deployment's invitation and
// routing keys and returns a ready agent.
func New(ctx context.Context, cfg Config, store Store, q Queue, keys *keyring.Keyring, p Pickup) (*Agent, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("mediator: at least one endpoint is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = logctx.Wrap(cfg.Logger)
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Label == "" {
		cfg.Label = "Mediator"
	}
	if err := cfg.Forwarding.init(); err != nil {
		return nil, err
	}
	inv, err := keys.EnsureKey(ctx, record.PurposeInvitation)
	if err != nil {
		return nil, fmt.Errorf("mediator: %w", err)
	}
	routing, err := keys.EnsureKey(ctx, record.PurposeRouting)
	if err != nil {
		return nil, fmt.Errorf("mediator: %w", err)
	}
	a := &Agent{cfg: cfg, store: store, queue: q, keys: keys, pickup: p, log: cfg.Logger,
		invitationKey: inv, routingKey: routing, limits: newLimiter(cfg.Limits),
		conns: newConnCache(cfg.ConnectionCacheSize)}
	if cfg.Forwarding.Strategy == ForwardDirectThenQueue {
		a.direct = newDirectClient(cfg.Forwarding)
	}
	a.invitation, err = newInvitation(cfg, publicKey(inv))
	if err != nil {
		return nil, err
	}
	return a, nil
}

// InboundError is an error that tells the transport which HTTP status fits.
type InboundError struct {
	Status int
	Err    error
}

func (e *InboundError) Error() string   { return e.Err.Error() }
func (e *InboundError) Unwrap() error   { return e.Err }
func (e *InboundError) HTTPStatus() int { return e.Status }

func badRequest(format string, args ...any) error {
	return &InboundError{Status: http.StatusBadRequest, Err: fmt.Errorf(format, args...)}
}

// inbound is one unpacked message with its reply path.
type inbound struct {
	msg       *didcomm.Message
	ourKey    string // base58 key it was encrypted to
	theirKey  string // base58 sender key; "" for anoncrypt
	session   transport.Session
	packedLen int
}

// HandleInbound unpacks and processes one packed message.
func (a *Agent) HandleInbound(ctx context.Context, packed []byte, s transport.Session) error {
	rec := &inboundRecord{start: time.Now()}
	ctx = context.WithValue(ctx, inboundRecordKey{}, rec)
	if s != nil {
		ctx = logctx.With(ctx, slog.String("session", s.ID()))
	}
	err := a.handlePacked(ctx, packed, s, 0)
	a.observeInbound(ctx, s, rec, err)
	return err
}

func (a *Agent) handlePacked(ctx context.Context, packed []byte, s transport.Session, depth int) error {
	env, err := envelope.Parse(packed)
	if err != nil {
		return badRequest("mediator: %w", err)
	}
	var key *envelope.Key
	for i, k := range env.Kids() {
		if i == maxKidsTried {
			break
		}
		key, err = a.keys.EnvelopeKey(ctx, k)
		if errors.Is(err, keyring.ErrUnknownKey) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mediator: key lookup: %w", err)
		}
		break
	}
	if key == nil {
		return badRequest("mediator: envelope is not addressed to a key of this mediator")
	}
	un, err := env.OpenWith(key)
	if err != nil {
		return badRequest("mediator: %w", err)
	}
	msg, err := didcomm.Parse(un.Plaintext)
	if err != nil {
		return badRequest("mediator: %w", err)
	}
	in := &inbound{msg: msg, ourKey: un.RecipientKey, theirKey: un.SenderKey, session: s, packedLen: len(packed)}
	return a.dispatch(ctx, in, depth)
}

func (a *Agent) dispatch(ctx context.Context, in *inbound, depth int) error {
	t := in.msg.MsgType
	ctx = noteType(ctx, t.Key(), depth)
	if t.Key() == "routing/1/forward" {
		return a.handleForward(ctx, in, depth)
	}
	log := a.log.With("msg_id", in.msg.ID) // not before: forwards, the bulk, never use it
	if in.theirKey == "" {
		log.WarnContext(ctx, "anoncrypted message other than forward ignored")
		return badRequest("mediator: %s must be authcrypted", clip(in.msg.Type, maxLogTypeLen))
	}
	if in.ourKey == keyring.Verkey(publicKey(a.invitationKey)) {
		switch t.Key() {
		case "didexchange/1/request":
			return a.handleDIDExchangeRequest(ctx, in)
		case "connections/1/request":
			return a.handleConnectionsRequest(ctx, in)
		case "out-of-band/1/handshake-reuse":
			return a.handleReuseToInvitationKey(ctx, in)
		}
		if t.IsProblemReport() {
			log.InfoContext(ctx, "problem report received on invitation key", "raw_len", len(in.msg.Raw))
			return nil
		}
		return badRequest("mediator: %s cannot be sent to the invitation key", clip(in.msg.Type, maxLogTypeLen))
	}
	conn, err := a.connectionByKeys(ctx, in.ourKey, in.theirKey)
	if errors.Is(err, record.ErrNotFound) {
		log.WarnContext(ctx, "message from unknown connection", "our_key", in.ourKey)
		return badRequest("mediator: no connection for this sender")
	}
	if err != nil {
		return fmt.Errorf("mediator: connection lookup: %w", err)
	}
	ctx = noteConnection(ctx, conn.ID)
	if err := a.checkConnectionRate(ctx, in, conn); err != nil {
		return err
	}
	err = a.dispatchConnection(ctx, in, conn)
	if errors.Is(err, didcomm.ErrInvalidMessage) {
		return a.refuseMalformed(ctx, in, conn, err)
	}
	return err
}

// refuseMalformed answers a message whose fields a handler could not read
// (a string where a number belongs, say): a problem report on the return
// route while the sender listens, else 400 for the request that carried it.
func (a *Agent) refuseMalformed(ctx context.Context, in *inbound, conn record.Connection, cause error) error {
	a.log.InfoContext(ctx, "malformed message refused", "connection", conn.ID,
		"type", clip(in.msg.Type, maxLogTypeLen), "err", cause)
	pr := didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg, "message-parse-failure", cause.Error(), false)
	switch err := a.sendOnReturnRoute(ctx, in, conn, pr); {
	case err == nil:
		return nil // the report is the answer
	case errors.Is(err, errNoReturnRoute):
		return &InboundError{Status: http.StatusBadRequest, Err: fmt.Errorf("mediator: %w", cause)}
	default:
		return err
	}
}

// dispatchConnection handles a message on a known connection. conn comes
// from connectionByKeys: its Mediation is not filled in (handlers that need
// it call freshConnection).
func (a *Agent) dispatchConnection(ctx context.Context, in *inbound, conn record.Connection) error {
	t := in.msg.MsgType
	if conn.State == record.StateResponseSent && t.Protocol != "didexchange" {
		// Any message on the connection proves the peer accepted our response
		// (Connections 1.0 peers send a trust ping instead of a complete).
		if err := a.setConnectionState(ctx, conn, record.StateCompleted); err != nil {
			return fmt.Errorf("mediator: %w", err)
		}
		conn.State = record.StateCompleted
	}
	if pickup.Handles(in.msg) {
		err := a.pickup.Handle(ctx, a.conversation(in, conn), in.msg)
		if errors.Is(err, pickup.ErrNoReturnRoute) {
			// Pickup replies are never queued (RFC 0685): without a return
			// route there is nowhere to put them.
			a.log.InfoContext(ctx, "pickup message without return route; reply dropped", "connection", conn.ID, "type", clip(in.msg.Type, maxLogTypeLen))
			return nil
		}
		return err
	}
	if in.session != nil && in.msg.ReturnRoute() == didcomm.ReturnRouteAll {
		a.pickup.Implicit(ctx, a.conversation(in, conn))
	}
	switch t.Key() {
	case "didexchange/1/complete":
		return a.setConnectionState(ctx, conn, record.StateCompleted)
	case "trust_ping/1/ping":
		return a.handlePing(ctx, in, conn)
	case "trust_ping/1/ping_response":
		return nil
	case "discover-features/1/query":
		return a.handleQuery(ctx, in, conn)
	case "discover-features/2/queries":
		return a.handleQueries(ctx, in, conn)
	case "coordinate-mediation/1/mediate-request":
		return a.handleMediateRequest(ctx, in, conn)
	case "coordinate-mediation/1/keylist-update":
		return a.handleKeylistUpdate(ctx, in, conn)
	case "coordinate-mediation/1/keylist-query":
		return a.handleKeylistQuery(ctx, in, conn)
	case "out-of-band/1/handshake-reuse":
		return a.handleReuse(ctx, in, conn)
	case "push-notifications-fcm/1/set-device-info":
		return a.handleSetDeviceInfo(ctx, in, conn)
	case "push-notifications-fcm/1/get-device-info":
		return a.handleGetDeviceInfo(ctx, in, conn)
	}
	if t.IsProblemReport() {
		a.log.InfoContext(ctx, "problem report received", "connection", conn.ID, "type", clip(in.msg.Type, maxLogTypeLen), "thid", clip(in.msg.ThreadID(), maxLogTypeLen))
		return nil
	}
	a.log.InfoContext(ctx, "unsupported message type", "connection", conn.ID, "type", clip(in.msg.Type, maxLogTypeLen))
	pr := didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg, "unsupported-message-type",
		"message type "+in.msg.Type+" is not supported by this mediator", false)
	// Only worth saying while the sender is listening: a queued report about
	// a message it sent long ago helps nobody.
	if err := a.sendOnReturnRoute(ctx, in, conn, pr); err != nil && !errors.Is(err, errNoReturnRoute) {
		return err
	}
	return nil
}

// errNoReturnRoute means the inbound message's transport may not carry the reply.
var errNoReturnRoute = errors.New("mediator: no return route for this reply")

// replyThreadID is implemented by every outbound message (didcomm.Header).
type replyThreaded interface{ ReplyThreadID() string }

// returnRouteAllows tells whether the inbound transport may carry msg
// (RFC 0092: "all", or "thread" for a reply on the named thread).
func returnRouteAllows(in *inbound, msg any) bool {
	if in.session == nil {
		return false
	}
	thid := ""
	if t, ok := msg.(replyThreaded); ok {
		thid = t.ReplyThreadID()
	}
	return in.msg.AllowsReplyOnThread(thid)
}

// sendOnReturnRoute packs msg for conn and writes it on the inbound
// transport, or fails with errNoReturnRoute.
func (a *Agent) sendOnReturnRoute(ctx context.Context, in *inbound, conn record.Connection, msg any) error {
	if !returnRouteAllows(in, msg) {
		return errNoReturnRoute
	}
	packed, err := a.packFor(ctx, conn, msg)
	if err != nil {
		return err
	}
	return in.session.Send(ctx, packed)
}

// conversation is the pickup view of an inbound message.
func (a *Agent) conversation(in *inbound, conn record.Connection) pickup.Conversation {
	return pickup.Conversation{
		ConnectionID: conn.ID,
		Session:      in.session,
		Send: func(ctx context.Context, msg any) error {
			err := a.sendOnReturnRoute(ctx, in, conn, msg)
			if errors.Is(err, errNoReturnRoute) {
				return pickup.ErrNoReturnRoute
			}
			return err
		},
	}
}

// reply sends msg to the connection: on the inbound transport when the
// wallet asked for a return route, else it is queued for pickup.
func (a *Agent) reply(ctx context.Context, in *inbound, conn record.Connection, msg any) error {
	packed, err := a.packFor(ctx, conn, msg)
	if err != nil {
		return err
	}
	if returnRouteAllows(in, msg) {
		err := in.session.Send(ctx, packed)
		if err == nil {
			return nil
		}
		a.log.InfoContext(ctx, "reply could not use the return route; queueing it", "connection", conn.ID, "err", err)
	}
	res, err := a.queue.Enqueue(ctx, conn.ID, conn.TheirKey, packed)
	if err != nil {
		return a.queueFailed(ctx, "queue reply", "connection", conn.ID, err)
	}
	a.afterEnqueue(ctx, res)
	return nil
}

// afterEnqueue hands a queued message on: a push here if the wallet is live
// on this instance; nothing more if it is live elsewhere (that instance was
// notified in the same statement); the offline event if it is live nowhere.
func (a *Agent) afterEnqueue(ctx context.Context, res queue.Enqueued) {
	a.noteSoftCap(ctx, res)
	switch {
	case a.pickup.HasLiveSession(res.ConnectionID):
		a.pickup.MessageQueued(ctx, res.ConnectionID)
	case res.LiveInstance != "":
		// Another instance holds the socket and was woken by the queue.
	case a.cfg.Notifier != nil:
		a.cfg.Notifier.MessageQueued(ctx, notify.Event{ConnectionID: res.ConnectionID, MessageID: res.ID,
			RecipientKey: res.RecipientKey, QueuedAt: res.ReceivedAt})
	}
}

// packFor authcrypts msg from our key on conn to theirs.
func (a *Agent) packFor(ctx context.Context, conn record.Connection, msg any) ([]byte, error) {
	plain, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("mediator: marshal reply: %w", err)
	}
	ours, err := a.keys.EnvelopeKey(ctx, conn.OurKey)
	if err != nil {
		return nil, fmt.Errorf("mediator: our key for connection %s: %w", conn.ID, err)
	}
	theirs, err := decodeVerkey(conn.TheirKey)
	if err != nil {
		return nil, fmt.Errorf("mediator: their key for connection %s: %w", conn.ID, err)
	}
	packed, err := envelope.PackAuthcryptWith(plain, ours, theirs)
	if err != nil {
		return nil, fmt.Errorf("mediator: pack reply: %w", err)
	}
	return packed, nil
}

// Invitation returns the deployment's out-of-band invitation.
func (a *Agent) Invitation() Invitation { return a.invitation }

// RoutingVerkey is the base58 routing key given in grants.
func (a *Agent) RoutingVerkey() string { return keyring.Verkey(publicKey(a.routingKey)) }

// InvitationVerkey is the base58 key of the invitation.
func (a *Agent) InvitationVerkey() string { return keyring.Verkey(publicKey(a.invitationKey)) }

func publicKey(priv ed25519.PrivateKey) ed25519.PublicKey {
	return priv.Public().(ed25519.PublicKey)
}

func httpEndpoint(endpoints []string) string {
	for _, e := range endpoints {
		if strings.HasPrefix(e, "http://") || strings.HasPrefix(e, "https://") {
			return e
		}
	}
	return endpoints[0]
}
