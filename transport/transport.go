// Package transport carries packed DIDComm v1 messages over HTTP POST and
// WebSocket on one port (RFC 0025). It knows nothing of DIDComm semantics:
// it turns bytes into a Handler call together with a Session, the reply path
// of that inbound message.
//
// Routing (any path, because mediators are often mounted under a prefix):
//
//   - POST                             → one DIDComm message per request
//   - GET with "Upgrade: websocket"    → a DIDComm WebSocket
//   - anything else                    → Config.Other (nil: 404 for GET/HEAD, 405 otherwise)
//
// HTTP. Accepted request content types are application/didcomm-envelope-enc
// (RFC 0044), application/ssi-agent-wire (legacy), application/json and none;
// media-type parameters are ignored; anything else gets 415. An empty body
// gets 400 and a body over Config.MaxMessageBytes 413. The first
// Session.Send writes "200 + packed body"; the reply's Content-Type is the
// request's DIDComm type (application/didcomm-envelope-enc when the request
// had none or application/json). If the handler returns nil without sending,
// the answer is 202 with an empty body.
//
// Slow peers. Receiving one message is bounded by MessageReadTimeout
// (default 30s) once it started: a POST body from the end of its headers
// (400 when late), a WebSocket message from its first frame to its last
// (the socket is closed with 1008; pings, pongs and further fragments do
// not extend it). Sending is bounded by WriteTimeout + size/MinWriteRate
// per HTTP reply or WebSocket frame (10s + 1s per 64 KiB by default), so a
// large delivery to a slow wallet gets the time it needs while a peer that
// stops reading is still cut off. A handler error after a reply was
// attempted (the status was already 200) is logged at WARN.
//
// Memory. Inbound buffers grow with the bytes actually received, never
// with what Content-Length announces. Up to 64 KiB per message is free;
// beyond that a message's buffer counts against MaxInFlightBytes, a budget
// per server shared by POST bodies and WebSocket messages, from the moment
// it grows until its handler returned. When the budget is spent a POST is
// answered 503 with Retry-After (and the connection closed) and a
// WebSocket is closed with 1013 (try again later). A WebSocket holds no
// write buffer while idle (they come from a shared pool) and a 1 KiB read
// buffer; its keepalive is a timer, not a goroutine.
//
// HandlerTimeout (HTTP). The handler's context carries a deadline of
// HandlerTimeout. What the client sees:
//
//   - the handler sent a reply                       → 200 (written at Send time)
//   - the handler returned nil without a reply       → 202, even if it was late:
//     the message was processed, replies go by other paths (RFC 0092: hold the
//     request only until the reply is produced, then answer 202)
//   - the handler returned an error with HTTPStatus() → that status (400..599)
//   - the handler returned another error after its context expired (deadline
//     or client gone) → 503 with Retry-After: the message may not have been
//     acted upon, and a 202 would make the sender believe a message was
//     accepted that may be lost; 503 tells it to retry
//   - any other error or a panic                     → 500
//   - a handler that ignores its context and is still running
//     HandlerTimeout plus a grace (a quarter of HandlerTimeout, within
//     0.5s..2s) later: the client gets 503 then; the handler keeps the request
//     goroutine until it returns and its later Sends return ErrClosed.
//
// WebSocket. Text and binary frames are accepted (Credo sends binary), each
// frame being one packed message; replies are text frames. Frames of one
// socket are handled in order on the socket's read goroutine, each with a
// context bounded by HandlerTimeout that is also cancelled when the socket
// goes. A message over MaxMessageBytes closes the socket with 1009 and a
// reason (the limit is enforced here rather than by gorilla's SetReadLimit,
// because gorilla's own 1009 close frame carries no reason). The server pings
// every PingInterval and closes a socket from which nothing (pong, ping or
// data) arrived within 2×PingInterval — Credo clients send no keepalive of
// their own, and pings also keep proxies from idling the socket. Closes are
// clean: a close frame, then up to WriteTimeout for the peer's close frame,
// then the TCP connection is closed. Time the server spends writing a
// frame does not count as the peer's silence (a slow wallet cannot answer
// pings while it is still receiving a large frame), and pings wait for the
// frame being written. Any Origin is accepted: DIDComm clients
// are native wallet apps and agents, not browsers, so there is no ambient
// browser credential for cross-site WebSocket hijacking to abuse; every
// message is an end-to-end encrypted envelope authenticated by its keys.
//
// Limits (see Config): MaxMessageBytes (413 / close 1009), MaxInFlightBytes
// (503 + Retry-After / close 1013), MaxSockets (an
// upgrade beyond it gets 503 + Retry-After), and IPRate, a token bucket per
// client IP for POSTs, upgrades and WS messages (429 + Retry-After; a
// socket far over it is closed with 1008). Handler errors with status 429
// get Retry-After from the error's RetryAfter() time.Duration, if it has
// one. Each refusal is reported to Config.OnLimit with a Limit* name.
//
// Logging uses slog with session id, kind, remote address, byte counts,
// status and duration; payloads are never logged. RemoteAddr is the TCP
// peer (r.RemoteAddr); proxy headers are not trusted here (only IPRate
// reads X-Forwarded-For, and only from Config.TrustedProxies).
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/internal/ratelimit"
)

// Kind is the transport a Session belongs to.
type Kind string

// Transport kinds.
const (
	KindHTTP      Kind = "http"
	KindWebSocket Kind = "ws"
)

// Session is the reply path of an inbound message: an HTTP request (one reply
// at most) or a WebSocket (any number, until closed).
type Session interface {
	// ID is a random UUID per HTTP request / per socket.
	ID() string
	Kind() Kind
	RemoteAddr() string
	// Send writes one packed message. HTTP: the first Send writes a 200
	// response with that body and flushes it; later Sends return
	// ErrReplyUsed. WS: writes one text frame. Either write has a deadline
	// of WriteTimeout + len(packed)/MinWriteRate, which ctx does not
	// shorten. WS sends from many goroutines are serialised and ctx
	// bounds the wait for the socket. Returns ErrClosed after close (a WS
	// write failure closes the socket and returns an error wrapping
	// ErrClosed). A nil error means the bytes were handed to the OS.
	Send(ctx context.Context, packed []byte) error
	// Done is closed when the request finished / the socket closed.
	Done() <-chan struct{}
}

var (
	// ErrReplyUsed is returned by Send on an HTTP session that has already
	// been answered: HTTP carries at most one reply per request.
	ErrReplyUsed = errors.New("transport: the HTTP request has already been answered")
	// ErrClosed is returned by Send after the session's request finished or
	// its socket closed (or started closing).
	ErrClosed = errors.New("transport: session closed")
)

// Handler processes one inbound packed message. It runs on the request
// goroutine (HTTP) or the socket's read goroutine (WS; frames of one socket
// are handled in order). An error whose type has `HTTPStatus() int` sets the
// HTTP status when nothing was sent (e.g. 400 for a malformed envelope); any
// other error gives 500 for HTTP (503 if the context had expired); for WS
// errors are logged and the socket stays open.
type Handler interface {
	HandleInbound(ctx context.Context, packed []byte, s Session) error
}

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	// MaxMessageBytes bounds one message (default 5 MiB). HTTP: 413;
	// WS: close 1009 with a reason.
	MaxMessageBytes int64
	// PingInterval is the server's WS ping period (default 30s); a socket
	// from which nothing arrived within 2×PingInterval is closed (while a
	// message is being received, MessageReadTimeout applies instead).
	PingInterval time.Duration
	// WriteTimeout is the fixed part of the deadline for writing one WS
	// frame / HTTP reply (default 10s); see MinWriteRate. It also bounds
	// control frames (pings, close) and the wait for the peer's close frame.
	WriteTimeout time.Duration
	// MinWriteRate, in bytes per second, is the slowest reader a write of
	// one WS frame / HTTP reply of n bytes must accommodate: its deadline is
	// WriteTimeout + n/MinWriteRate (default 64 KiB/s, i.e. 512 kbit/s: a
	// 12 MB delivery gets 10s + 183s). A peer reading slower is cut off
	// (WS: the socket is closed; HTTP: the reply fails and the handler's
	// Send returns an error).
	MinWriteRate int64
	// MessageReadTimeout bounds receiving one message once it started
	// (default 30s): an HTTP POST body, counted from the end of the request
	// headers (400 when late), or a WebSocket message, from its first frame
	// header to its last byte (the socket is closed with 1008; pongs, pings
	// and further fragments do not extend it). 30s asks about 1.4 Mbit/s of
	// a client sending a 5 MiB message.
	MessageReadTimeout time.Duration
	// MaxInFlightBytes bounds the memory of inbound messages being received
	// or handled, per server (instance), POST bodies and WebSocket messages
	// together. A message's first 64 KiB are not counted; beyond that its
	// buffer (which grows with the bytes actually received, at most twice
	// them) counts from when it grows until its handler returned. When the
	// budget is spent, a POST is answered 503 with Retry-After and a
	// WebSocket is closed with 1013 (try again later). Zero means the
	// default: 64×MaxMessageBytes, but at most 128 MiB and at least
	// 4×MaxMessageBytes (128 MiB for the default 5 MiB messages: 25 of them
	// at once, or 64 of 2 MiB). The process's memory for these buffers can
	// reach about twice the budget (garbage awaiting the GC). Negative: no
	// bound.
	MaxInFlightBytes int64
	// HandlerTimeout bounds one message's processing (default 10s) on both
	// transports: it is the deadline of the handler's context. See the
	// package documentation for what HTTP clients get when it passes.
	HandlerTimeout time.Duration
	// Other serves every request that is not a DIDComm POST or WS upgrade
	// (e.g. GET /invitation, /healthz). nil → 404 (GET/HEAD) / 405.
	Other http.Handler
	// Logger receives the transport's logs; nil means slog.Default().
	Logger *slog.Logger
	// OnSocketOpen is called once per socket after the upgrade, before its
	// first message is read. OnSocketClose is called once per socket after it
	// closed (Done() is closed and OpenSockets no longer counts it). Both run
	// on the socket's goroutine; panics in them are recovered.
	OnSocketOpen, OnSocketClose func(Session)

	// MaxSockets bounds the live WebSockets of this server (0: no bound).
	// An upgrade beyond it is refused with 503 and Retry-After; a load
	// balancer can send the retry to another instance.
	MaxSockets int
	// IPRate is the sustained number of DIDComm requests per second (POSTs,
	// WebSocket upgrades and WebSocket messages together) one client IP may
	// make (0: no limit), with bursts of IPBurst (default IPRate rounded
	// up). A POST or upgrade over it gets 429 with Retry-After. A WebSocket
	// message over it is still handled, but a socket whose client gets more
	// than IPBurst messages beyond the rate is closed with 1008 (policy
	// violation). Buckets are per server
	// (instance): behind a load balancer spreading a client over N
	// instances, the cluster lets it through at up to N×IPRate. IPv6
	// clients are counted by /64.
	IPRate  float64
	IPBurst int
	// TrustedProxies are the peers whose X-Forwarded-For is believed for
	// IPRate: from them, the client is the rightmost X-Forwarded-For
	// address that is not itself a trusted proxy. Empty: the TCP peer is
	// the client and X-Forwarded-For is ignored (so a client cannot pick
	// its own bucket).
	TrustedProxies []netip.Prefix
	// OnLimit, when set, is called with a Limit* name each time a limit
	// refuses something (for metrics). It must be quick; panics are
	// recovered.
	OnLimit func(name string)
}

const (
	defaultMaxMessageBytes = 5 << 20
	defaultPingInterval    = 30 * time.Second
	defaultWriteTimeout    = 10 * time.Second
	defaultHandlerTimeout  = 10 * time.Second
	// defaultMessageReadTimeout bounds receiving one message (POST body or
	// WS message) once it started.
	defaultMessageReadTimeout = 30 * time.Second
	// defaultMinWriteRate (bytes/s) scales write deadlines with size.
	defaultMinWriteRate = 64 << 10
	// MaxInFlightBytes default: 64 maximum-size messages, within
	// [4×MaxMessageBytes, max(128 MiB, 4×MaxMessageBytes)].
	defaultInFlightMessages  = 64
	defaultInFlightCeiling   = 128 << 20
	minInFlightFullMessages  = 4
	maxReasonableMessageSize = 1 << 40 // keeps the default's arithmetic from overflowing

	// WebSocket buffer sizes: the read buffer is held by every socket (a
	// large message is read straight into its own buffer, not through
	// this one); write buffers come from a pool and are held only while a
	// frame is written.
	wsReadBufferSize  = 1 << 10
	wsWriteBufferSize = 4 << 10

	// readHeaderTimeout bounds reading request headers (Serve only).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout is how long a keep-alive connection may idle (Serve only).
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds request headers (Serve only).
	maxHeaderBytes = 64 << 10
	// minWatchdogGrace and maxWatchdogGrace bound the extra time a handler
	// still running after HandlerTimeout gets before the HTTP client is
	// answered 503.
	minWatchdogGrace = 500 * time.Millisecond
	maxWatchdogGrace = 2 * time.Second
)

// DIDComm content types.
const (
	ctEnvelope  = "application/didcomm-envelope-enc"
	ctAgentWire = "application/ssi-agent-wire"
	ctJSON      = "application/json"
)

// Server is the DIDComm endpoint: HTTP POST and WebSocket on one handler.
type Server struct {
	cfg      Config
	h        Handler
	log      *slog.Logger
	upgrader websocket.Upgrader
	ipLimit  *ratelimit.Limiter // nil: no per-IP rate
	inFlight byteBudget         // MaxInFlightBytes

	// stopCtx is cancelled when Shutdown gives up waiting; every handler
	// context is derived from it so that a forced stop reaches handlers.
	stopCtx context.Context
	stopAll context.CancelFunc

	mu           sync.Mutex
	shuttingDown bool
	sockets      map[*wsSession]struct{}
	wsSlots      int // sockets open or upgrading, for MaxSockets
	servers      []*http.Server
	// active counts DIDComm requests and sockets in progress; Add only under
	// mu while !shuttingDown.
	active sync.WaitGroup
}

// NewServer returns a Server that hands every inbound message to h.
func NewServer(cfg Config, h Handler) *Server {
	if h == nil {
		panic("transport: NewServer with a nil Handler")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = defaultMaxMessageBytes
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = defaultPingInterval
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = defaultHandlerTimeout
	}
	if cfg.MinWriteRate <= 0 {
		cfg.MinWriteRate = defaultMinWriteRate
	}
	if cfg.MessageReadTimeout <= 0 {
		cfg.MessageReadTimeout = defaultMessageReadTimeout
	}
	if cfg.MaxInFlightBytes == 0 {
		cfg.MaxInFlightBytes = defaultInFlightBytes(cfg.MaxMessageBytes)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	stopCtx, stopAll := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		h:        h,
		log:      log.With("component", "transport"),
		stopCtx:  stopCtx,
		stopAll:  stopAll,
		sockets:  make(map[*wsSession]struct{}),
		ipLimit:  newIPLimiter(cfg),
		inFlight: byteBudget{max: cfg.MaxInFlightBytes},
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.WriteTimeout,
		ReadBufferSize:   wsReadBufferSize,
		WriteBufferSize:  wsWriteBufferSize,
		WriteBufferPool:  &wsWriteBuffers,
		// Wallets are native apps, not browsers: see the package doc.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s
}

// ServeHTTP is the DIDComm endpoint; it routes POSTs and WebSocket upgrades
// on any path and passes everything else to Config.Other.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost:
		if s.rateLimited(w, r) {
			return
		}
		s.serveHTTPMessage(w, r)
	case r.Method == http.MethodGet && websocket.IsWebSocketUpgrade(r):
		if s.rateLimited(w, r) {
			return
		}
		s.serveWebSocket(w, r)
	case s.cfg.Other != nil:
		s.cfg.Other.ServeHTTP(w, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		http.NotFound(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	}
}

// begin registers one DIDComm request or socket; false once shutting down.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return false
	}
	s.active.Add(1)
	return true
}

func (s *Server) rejectShuttingDown(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", "5")
	http.Error(w, "server shutting down", http.StatusServiceUnavailable)
}

// Serve serves the DIDComm endpoint (and Config.Other) on ln with an
// http.Server configured with header/idle timeouts. When ctx is done it calls
// Shutdown (bounded by HandlerTimeout + 2×WriteTimeout) and returns its
// result. If Shutdown is called by someone else, Serve returns nil as soon as
// the listener is closed. Serve may be called for several listeners.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Request contexts keep ctx's values but not its cancellation:
		// a cancelled ctx starts a graceful Shutdown instead of aborting
		// in-flight handlers.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()

	s.log.Info("transport listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("transport: serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.HandlerTimeout+2*s.cfg.WriteTimeout)
		defer cancel()
		err := s.Shutdown(sctx)
		<-errc
		return err
	}
}

// Shutdown stops accepting DIDComm requests and sockets (new ones get 503),
// closes the listeners of Serve, closes every open socket with 1001 (going
// away) and waits for handlers and sockets to finish. If ctx ends first it
// cancels handler contexts, closes all connections and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.shuttingDown
	s.shuttingDown = true
	servers := append([]*http.Server(nil), s.servers...)
	socks := make([]*wsSession, 0, len(s.sockets))
	for ws := range s.sockets {
		socks = append(socks, ws)
	}
	s.mu.Unlock()
	if first {
		s.log.Info("transport shutting down", "open_sockets", len(socks))
	}

	for _, ws := range socks {
		go ws.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		}
	}

	waited := make(chan struct{})
	go func() {
		s.active.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return errors.Join(errs...)
	case <-ctx.Done():
	}

	// Forced stop.
	s.stopAll()
	for _, srv := range servers {
		_ = srv.Close()
	}
	s.mu.Lock()
	for ws := range s.sockets {
		_ = ws.conn.Close()
	}
	s.mu.Unlock()
	s.log.Warn("transport shutdown forced", "err", ctx.Err())
	return ctx.Err()
}

// OpenSockets returns the number of open WebSockets.
func (s *Server) OpenSockets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sockets)
}

func (s *Server) addSocket(ws *wsSession) {
	s.mu.Lock()
	s.sockets[ws] = struct{}{}
	closing := s.shuttingDown
	s.mu.Unlock()
	if closing {
		// Upgraded while Shutdown was collecting sockets.
		go ws.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
}

func (s *Server) removeSocket(ws *wsSession) {
	s.mu.Lock()
	delete(s.sockets, ws)
	s.wsSlots-- // taken by reserveSocket; given back with the socket
	s.mu.Unlock()
}

// invoke calls the handler, turning a panic into an error.
func (s *Server) invoke(ctx context.Context, packed []byte, sess Session) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			err = fmt.Errorf("transport: handler panic: %v", p)
			s.log.Error("handler panic recovered",
				"session", sess.ID(), "kind", sess.Kind(), "remote", sess.RemoteAddr(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	return false, s.h.HandleInbound(ctx, packed, sess)
}

func (s *Server) hook(name string, fn func(Session), sess Session) {
	if fn == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("socket hook panic recovered", "hook", name, "session", sess.ID(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	fn(sess)
}

// defaultInFlightBytes is the default MaxInFlightBytes for messages of at
// most maxMsg bytes.
func defaultInFlightBytes(maxMsg int64) int64 {
	maxMsg = min(maxMsg, maxReasonableMessageSize)
	return max(min(defaultInFlightMessages*maxMsg, defaultInFlightCeiling), minInFlightFullMessages*maxMsg)
}

// writeTimeout is the time allowed to write one frame / reply of n bytes:
// WriteTimeout + n/MinWriteRate.
func (s *Server) writeTimeout(n int) time.Duration {
	return s.cfg.WriteTimeout + time.Duration(float64(n)/float64(s.cfg.MinWriteRate)*float64(time.Second))
}

// wsWriteBuffers lends WebSocket write buffers for the time of one write,
// so that idle sockets hold none. It is shared by every Server (the
// buffers all have the same size).
var wsWriteBuffers syncBufferPool

// syncBufferPool is a websocket.BufferPool on a sync.Pool.
type syncBufferPool struct{ p sync.Pool }

func (b *syncBufferPool) Get() any  { return b.p.Get() }
func (b *syncBufferPool) Put(v any) { b.p.Put(v) }

// handlerContext derives a handler context from parent: bounded by
// HandlerTimeout and cancelled by a forced Shutdown.
func (s *Server) handlerContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, s.cfg.HandlerTimeout)
	stop := context.AfterFunc(s.stopCtx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// replyContentType validates a request Content-Type and returns the content
// type of a reply to it.
func replyContentType(header string) (string, bool) {
	if strings.TrimSpace(header) == "" {
		return ctEnvelope, true
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil && !(errors.Is(err, mime.ErrInvalidMediaParameter) && mt != "") {
		return "", false
	}
	switch mt {
	case ctEnvelope, ctJSON:
		return ctEnvelope, true
	case ctAgentWire:
		return ctAgentWire, true
	}
	return "", false
}
