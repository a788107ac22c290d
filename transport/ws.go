package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	writeSem  chan struct{} // one write (Send or ping) at a time; select-able, unlike a mutex
	closingCh chan struct{} // closed once the socket started closing
	done      chan struct{} // closed once the socket is closed

	// The keepalive is a timer rather than a goroutine per socket: ping
	// fires every PingInterval (re-armed after each ping) until stopPing.
	pingMu      sync.Mutex // held by a running ping; guards pingTimer, pingStopped
	pingTimer   *time.Timer
	pingStopped bool

	stateMu     sync.Mutex // guards the fields below and read-deadline changes
	closing     bool
	closeCode   int // what we sent, for the log; 0 if the peer closed first
	closeReason string
	// The read deadline follows these (see applyReadDeadlineLocked):
	quietUntil time.Time // keepalive: 2×PingInterval after the peer was last heard
	msgUntil   time.Time // the message being read must be complete by then; zero between messages
	// A write in progress (zero when none): the time spent writing does
	// not count as the peer's silence.
	writeFrom, writeUntil time.Time

	msgsIn, bytesIn, msgsOut, bytesOut atomic.Int64
}

var _ Session = (*wsSession)(nil)

func (c *wsSession) ID() string            { return c.id }
func (c *wsSession) Kind() Kind            { return KindWebSocket }
func (c *wsSession) RemoteAddr() string    { return c.remote }
func (c *wsSession) Done() <-chan struct{} { return c.done }

// Send writes packed as one text frame. ctx bounds the wait for the socket;
// the write itself is bounded by WriteTimeout + len(packed)/MinWriteRate (a
// write cut short by a context would leave a partial frame and kill the
// socket anyway).
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
	deadline := time.Now().Add(c.srv.writeTimeout(len(packed)))
	_ = c.conn.SetWriteDeadline(deadline)
	c.beginWrite(deadline)
	err := c.conn.WriteMessage(websocket.TextMessage, packed)
	c.endWrite()
	if err != nil {
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

// applyReadDeadlineLocked sets the read deadline: the message's own while
// one is being read (a peer in the middle of a frame cannot answer pings,
// and nothing it does extends it), else the keepalive, extended by the
// write in progress. Nothing is changed during a close handshake
// (closeWith set its own). Callers hold stateMu.
func (c *wsSession) applyReadDeadlineLocked() {
	if c.closing {
		return
	}
	d := c.quietUntil
	if !c.writeFrom.IsZero() {
		// While we write, the peer may be unable to answer pings (they
		// queue behind our frame): allow for the whole write.
		d = d.Add(c.writeUntil.Sub(c.writeFrom))
	}
	if !c.msgUntil.IsZero() {
		d = c.msgUntil
	}
	_ = c.conn.SetReadDeadline(d)
}

// extendReadDeadline gives the peer another 2×PingInterval to show it is
// alive; it does not touch the deadline of a message being read.
func (c *wsSession) extendReadDeadline() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.quietUntil = time.Now().Add(2 * c.srv.cfg.PingInterval)
	c.applyReadDeadlineLocked()
}

// beginMessage starts the MessageReadTimeout of a message whose first frame
// arrived; endMessage ends it once the message is in (which also shows the
// peer alive).
func (c *wsSession) beginMessage() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.msgUntil = time.Now().Add(c.srv.cfg.MessageReadTimeout)
	c.applyReadDeadlineLocked()
}

func (c *wsSession) endMessage() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.msgUntil = time.Time{}
	c.quietUntil = time.Now().Add(2 * c.srv.cfg.PingInterval)
	c.applyReadDeadlineLocked()
}

// messageTimedOut reports whether the message deadline has passed for a
// message being read.
func (c *wsSession) messageTimedOut() bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return !c.msgUntil.IsZero() && !time.Now().Before(c.msgUntil)
}

// beginWrite and endWrite bracket a data frame write with the given
// deadline: the time it takes is added to the keepalive.
func (c *wsSession) beginWrite(deadline time.Time) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.writeFrom, c.writeUntil = time.Now(), deadline
	c.applyReadDeadlineLocked()
}

func (c *wsSession) endWrite() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.quietUntil = c.quietUntil.Add(time.Since(c.writeFrom))
	c.writeFrom, c.writeUntil = time.Time{}, time.Time{}
	c.applyReadDeadlineLocked()
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

// startPing arms the keepalive timer.
func (c *wsSession) startPing() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pingTimer = time.AfterFunc(c.srv.cfg.PingInterval, c.ping)
}

// ping sends one ping, after any write in progress (a ping cannot go out in
// the middle of a frame anyway), and re-arms the timer.
func (c *wsSession) ping() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.pingStopped {
		return
	}
	select {
	case c.writeSem <- struct{}{}:
	case <-c.closingCh:
		return
	}
	err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.srv.cfg.WriteTimeout))
	<-c.writeSem
	if err != nil {
		if !errors.Is(err, websocket.ErrCloseSent) {
			c.srv.log.Debug("websocket ping failed; closing", "session", c.id, "remote", c.remote, "err", err)
			_ = c.conn.Close()
		}
		return
	}
	c.pingTimer.Reset(c.srv.cfg.PingInterval)
}

// stopPing stops the keepalive timer and waits for a ping in progress.
func (c *wsSession) stopPing() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pingStopped = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
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
		// The first frame is here: the whole message must follow within
		// MessageReadTimeout, however lively the peer is otherwise.
		c.beginMessage()
		data, held, err := c.srv.readMessage(rd, -1, limit)
		if err != nil {
			c.srv.inFlight.give(held)
			switch {
			case errors.Is(err, errTooBig):
				c.endMessage()
				c.srv.log.Warn("websocket message over MaxMessageBytes; closing",
					"session", c.id, "kind", KindWebSocket, "remote", c.remote, "limit", limit)
				c.srv.limit(LimitMessageSize)
				c.closeWith(websocket.CloseMessageTooBig, fmt.Sprintf("message too big: limit is %d bytes", limit))
				continue
			case errors.Is(err, errInFlight):
				c.endMessage()
				c.srv.log.Warn("websocket message refused: MaxInFlightBytes spent; closing",
					"session", c.id, "kind", KindWebSocket, "remote", c.remote, "max_inflight_bytes", c.srv.cfg.MaxInFlightBytes)
				c.srv.limit(LimitInFlightBytes)
				c.closeWith(websocket.CloseTryAgainLater, "server busy: try again later")
				continue
			}
			readErr = err // the message deadline stays set: finish tells why
			break
		}
		c.endMessage()
		if len(data) == 0 || !c.throttle() {
			c.srv.inFlight.give(held)
			continue
		}
		c.msgsIn.Add(1)
		c.bytesIn.Add(int64(len(data)))
		c.handle(data)
		c.srv.inFlight.give(held)
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
		// As over HTTP: what the peer got wrong is Info (a peer sending
		// garbage must not flood the log with warnings), our failures Warn.
		level := slog.LevelWarn
		if statusFor(err, nil) < http.StatusInternalServerError {
			level = slog.LevelInfo
		}
		c.srv.log.Log(context.Background(), level, "websocket handler error",
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

	msgTimedOut := timedOut && c.messageTimedOut()

	why := "connection lost"
	if c.markClosing(0, "") {
		// We had not started closing: the peer closed, vanished, fell
		// silent or was too slow sending a message.
		switch {
		case peerClosed:
			why = "peer closed" // gorilla already answered its close frame
		case timedOut:
			code, reason := websocket.CloseGoingAway, "keepalive timeout"
			why = reason
			if msgTimedOut {
				why = "message read timeout"
				code, reason = websocket.ClosePolicyViolation,
					fmt.Sprintf("message not received within %v", c.srv.cfg.MessageReadTimeout)
			}
			c.stateMu.Lock()
			c.closeCode, c.closeReason = code, reason
			c.stateMu.Unlock()
			msg := websocket.FormatCloseMessage(code, reason)
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
	c.stopPing()

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

// serveWebSocket upgrades a GET and runs the socket on a goroutine of its
// own until it closes. Returning from the HTTP handler lets net/http drop
// its connection state (buffers, request, a deep stack) for the socket's
// whole life.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		s.rejectShuttingDown(w)
		return
	}
	running := false
	defer func() {
		if !running {
			s.active.Done()
		}
	}()
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
	// The request context ends when this handler returns; the socket's
	// keeps its values.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
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
	running = true
	go func() {
		defer s.active.Done()
		s.hook("OnSocketOpen", s.cfg.OnSocketOpen, c)
		c.startPing()
		c.run()
	}()
}
