package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// maxCloseReason is the longest close reason that fits a control frame.
const maxCloseReason = 123

// wsSession is one DIDComm WebSocket.
type wsSession struct {
	srv        *Server
	id, remote string
	client     string // rate-limit key (see clientKey)
	conn       *websocket.Conn
	opened     time.Time
	// ctx is cancelled when the socket has closed.
	ctx    context.Context
	cancel context.CancelFunc

	writeSem  chan struct{} // one Send at a time; select-able, unlike a mutex
	closingCh chan struct{} // closed once the socket started closing
	done      chan struct{} // closed once the socket is closed
	pingDone  chan struct{}

	stateMu     sync.Mutex // guards closing and read-deadline changes
	closing     bool
	closeCode   int // what we sent, for the log; 0 if the peer closed first
	closeReason string

	msgsIn, bytesIn, msgsOut, bytesOut atomic.Int64
}

var _ Session = (*wsSession)(nil)

func (c *wsSession) ID() string            { return c.id }
func (c *wsSession) Kind() Kind            { return KindWebSocket }
func (c *wsSession) RemoteAddr() string    { return c.remote }
func (c *wsSession) Done() <-chan struct{} { return c.done }

// Send writes packed as one text frame. ctx bounds the wait for the socket;
// the write itself is bounded by WriteTimeout (a write cut short by a context
// would leave a partial frame and kill the socket anyway).
func (c *wsSession) Send(ctx context.Context, packed []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case c.writeSem <- struct{}{}:
	case <-c.closingCh:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.writeSem }()
	if c.isClosing() {
		return ErrClosed
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, packed); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			return ErrClosed
		}
		// gorilla's write errors are permanent: the socket is unusable.
		// Closing the connection ends the read loop, which cleans up.
		_ = c.conn.Close()
		return fmt.Errorf("%w: websocket write failed: %w", ErrClosed, err)
	}
	c.msgsOut.Add(1)
	c.bytesOut.Add(int64(len(packed)))
	return nil
}

func (c *wsSession) isClosing() bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.closing
}

// markClosing flags the socket as closing; false if it already was.
func (c *wsSession) markClosing(code int, reason string) bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.closing {
		return false
	}
	c.closing = true
	c.closeCode, c.closeReason = code, reason
	close(c.closingCh)
	return true
}

// extendReadDeadline gives the peer another 2×PingInterval to show it is
// alive, unless a close handshake is under way.
func (c *wsSession) extendReadDeadline() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if !c.closing {
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * c.srv.cfg.PingInterval))
	}
}

// closeWith starts a clean close: a close frame with code and reason, then
// up to WriteTimeout for the peer's close frame (the read loop drains and
// ends on it or on the deadline). Safe from any goroutine; only the first
// call has an effect.
func (c *wsSession) closeWith(code int, reason string) {
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
	}
	if !c.markClosing(code, reason) {
		return
	}
	msg := websocket.FormatCloseMessage(code, reason)
	if err := c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
		_ = c.conn.Close()
		return
	}
	c.stateMu.Lock()
	_ = c.conn.SetReadDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	c.stateMu.Unlock()
}

func (c *wsSession) pingLoop() {
	defer close(c.pingDone)
	t := time.NewTicker(c.srv.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closingCh:
			return
		case <-c.done:
			return
		case <-t.C:
		}
		err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.srv.cfg.WriteTimeout))
		if err != nil {
			if !errors.Is(err, websocket.ErrCloseSent) {
				c.srv.log.Debug("websocket ping failed; closing", "session", c.id, "remote", c.remote, "err", err)
				_ = c.conn.Close()
			}
			return
		}
	}
}

// run is the socket's read loop; it returns once the socket is closed.
func (c *wsSession) run() {
	limit := c.srv.cfg.MaxMessageBytes
	var readErr error
	for {
		_, rd, err := c.conn.NextReader()
		if err != nil {
			readErr = err
			break
		}
		if c.isClosing() {
			continue // drain (NextReader discards) until the peer's close frame
		}
		data, err := io.ReadAll(io.LimitReader(rd, limit+1))
		if err != nil {
			readErr = err
			break
		}
		if int64(len(data)) > limit {
			c.srv.log.Warn("websocket message over MaxMessageBytes; closing",
				"session", c.id, "kind", KindWebSocket, "remote", c.remote, "limit", limit)
			c.closeWith(websocket.CloseMessageTooBig, fmt.Sprintf("message too big: limit is %d bytes", limit))
			c.srv.limit(LimitMessageSize)
			continue
		}
		c.extendReadDeadline()
		if len(data) == 0 || !c.throttle() {
			continue
		}
		c.msgsIn.Add(1)
		c.bytesIn.Add(int64(len(data)))
		c.handle(data)
		// The handler's time is ours, not the peer's.
		c.extendReadDeadline()
	}
	c.finish(readErr)
}

func (c *wsSession) handle(data []byte) {
	start := time.Now()
	ctx, cancel := c.srv.handlerContext(c.ctx)
	panicked, err := c.srv.invoke(ctx, data, c)
	cancel()
	if err != nil && !panicked {
		c.srv.log.Warn("websocket handler error",
			"session", c.id, "kind", KindWebSocket, "remote", c.remote,
			"bytes", len(data), "duration", time.Since(start), "err", err)
		return
	}
	c.srv.log.Debug("didcomm websocket message",
		"session", c.id, "kind", KindWebSocket, "remote", c.remote,
		"bytes", len(data), "duration", time.Since(start))
}

// finish tears the socket down after the read loop ended with readErr.
func (c *wsSession) finish(readErr error) {
	var ce *websocket.CloseError
	peerClosed := errors.As(readErr, &ce)
	var ne net.Error
	timedOut := errors.As(readErr, &ne) && ne.Timeout()

	why := "connection lost"
	if c.markClosing(0, "") {
		// We had not started closing: the peer closed, vanished or fell silent.
		switch {
		case peerClosed:
			why = "peer closed" // gorilla already answered its close frame
		case timedOut:
			why = "keepalive timeout"
			c.stateMu.Lock()
			c.closeCode, c.closeReason = websocket.CloseGoingAway, why
			c.stateMu.Unlock()
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, why)
			_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(min(c.srv.cfg.WriteTimeout, time.Second)))
		}
	} else {
		switch {
		case peerClosed:
			why = "closed"
		case timedOut:
			why = "close handshake timed out"
		}
	}
	_ = c.conn.Close()
	c.cancel()
	c.srv.removeSocket(c)
	close(c.done)
	<-c.pingDone

	c.stateMu.Lock()
	code, reason := c.closeCode, c.closeReason
	c.stateMu.Unlock()
	attrs := []any{
		"session", c.id, "kind", KindWebSocket, "remote", c.remote,
		"why", why, "duration", time.Since(c.opened),
		"msgs_in", c.msgsIn.Load(), "bytes_in", c.bytesIn.Load(),
		"msgs_out", c.msgsOut.Load(), "bytes_out", c.bytesOut.Load(),
	}
	if code != 0 {
		attrs = append(attrs, "close_code", code, "close_reason", reason)
	}
	if peerClosed {
		attrs = append(attrs, "peer_close_code", ce.Code)
	} else if readErr != nil && !timedOut {
		attrs = append(attrs, "err", readErr.Error())
	}
	c.srv.log.Info("websocket closed", attrs...)
	c.srv.hook("OnSocketClose", c.srv.cfg.OnSocketClose, c)
}

// serveWebSocket upgrades a GET and runs the socket until it closes.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		s.rejectShuttingDown(w)
		return
	}
	defer s.active.Done()
	if !s.reserveSocket(w, r) {
		return
	}

	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.releaseSocket() // no socket: removeSocket will not give it back
		// The upgrader has already answered with an HTTP error.
		s.log.Info("websocket upgrade failed", "kind", KindWebSocket, "remote", r.RemoteAddr, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	c := &wsSession{
		srv:       s,
		id:        uuid.NewString(),
		remote:    r.RemoteAddr,
		client:    s.clientKey(r),
		conn:      conn,
		opened:    time.Now(),
		ctx:       ctx,
		cancel:    cancel,
		writeSem:  make(chan struct{}, 1),
		closingCh: make(chan struct{}),
		done:      make(chan struct{}),
		pingDone:  make(chan struct{}),
	}
	// The size limit is enforced in run, so the 1009 close carries a reason.
	conn.SetReadLimit(0)
	conn.SetPongHandler(func(string) error {
		c.extendReadDeadline()
		return nil
	})
	conn.SetPingHandler(func(appData string) error {
		c.extendReadDeadline()
		err := conn.WriteControl(websocket.PongMessage, []byte(appData), time.Now().Add(s.cfg.WriteTimeout))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	c.extendReadDeadline()

	s.addSocket(c)
	s.log.Info("websocket opened", "session", c.id, "kind", KindWebSocket, "remote", c.remote, "path", r.URL.Path)
	s.hook("OnSocketOpen", s.cfg.OnSocketOpen, c)
	go c.pingLoop()
	c.run()
}
