package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// httpSession is the reply path of one POST: at most one reply, valid until
// the request finished.
type httpSession struct {
	id, remote   string
	ctype        string // reply content type
	w            http.ResponseWriter
	rc           *http.ResponseController
	writeTimeout func(n int) time.Duration // for a response of n bytes
	done         chan struct{}

	mu       sync.Mutex
	answered bool // a response (reply or status) was written
	closed   bool // the request finished: nothing more may touch w
	status   int
	outBytes int
	sendErr  error // writing the reply failed
}

var _ Session = (*httpSession)(nil)

func (h *httpSession) ID() string            { return h.id }
func (h *httpSession) Kind() Kind            { return KindHTTP }
func (h *httpSession) RemoteAddr() string    { return h.remote }
func (h *httpSession) Done() <-chan struct{} { return h.done }

// Send writes packed as the 200 response of the request.
func (h *httpSession) Send(ctx context.Context, packed []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if h.answered {
		return ErrReplyUsed
	}
	h.answered = true
	h.status = http.StatusOK
	if err := h.write(http.StatusOK, h.ctype, packed); err != nil {
		h.sendErr = err
		return fmt.Errorf("transport: writing HTTP reply: %w", err)
	}
	h.outBytes = len(packed)
	return nil
}

// answer writes a status-only response unless the request was answered
// already; it reports whether it wrote.
func (h *httpSession) answer(status int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.answerLocked(status)
}

func (h *httpSession) answerLocked(status int) bool {
	if h.answered || h.closed {
		return false
	}
	h.answered = true
	h.status = status
	var body []byte
	ctype := ""
	if status != http.StatusAccepted {
		body = []byte(http.StatusText(status) + "\n")
		ctype = "text/plain; charset=utf-8"
	}
	hd := h.w.Header()
	switch status {
	case http.StatusServiceUnavailable:
		hd.Set("Retry-After", "1")
	case http.StatusRequestEntityTooLarge:
		hd.Set("Connection", "close")
	}
	_ = h.write(status, ctype, body)
	return true
}

// write sends a complete response with Content-Length and flushes it, under
// a write deadline that grows with its size. Callers hold mu.
func (h *httpSession) write(status int, ctype string, body []byte) error {
	_ = h.rc.SetWriteDeadline(time.Now().Add(h.writeTimeout(len(body)))) // ErrNotSupported: no deadline
	hd := h.w.Header()
	if ctype != "" {
		hd.Set("Content-Type", ctype)
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	h.w.WriteHeader(status)
	if len(body) > 0 {
		if _, err := h.w.Write(body); err != nil {
			return err
		}
	}
	if err := h.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// expire answers status unless the request was answered already and marks
// the request finished, atomically: a later Send returns ErrClosed. It
// reports whether it wrote.
func (h *httpSession) expire(status int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	wrote := h.answerLocked(status)
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	return wrote
}

// finish marks the request finished and closes Done.
func (h *httpSession) finish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

func (h *httpSession) result() (status, outBytes int, sendErr error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status, h.outBytes, h.sendErr
}

// watchdogGrace is how long after HandlerTimeout a handler may still run
// (cleaning up after its context expired, say) before the client is answered
// 503: a quarter of HandlerTimeout, within [minWatchdogGrace, maxWatchdogGrace].
func watchdogGrace(handlerTimeout time.Duration) time.Duration {
	return min(max(handlerTimeout/4, minWatchdogGrace), maxWatchdogGrace)
}

// serveHTTPMessage handles one DIDComm POST.
func (s *Server) serveHTTPMessage(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		s.rejectShuttingDown(w)
		return
	}
	defer s.active.Done()

	start := time.Now()
	rc := http.NewResponseController(w)
	sess := &httpSession{
		id:           uuid.NewString(),
		remote:       r.RemoteAddr,
		w:            w,
		rc:           rc,
		writeTimeout: s.writeTimeout,
		done:         make(chan struct{}),
	}
	// Our write deadline must not outlive this request on a keep-alive
	// connection (http.Server resets it only when it has a WriteTimeout).
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()

	var (
		inBytes int
		herr    error
		note    string
	)
	defer func() {
		sess.finish()
		status, outBytes, sendErr := sess.result()
		level := slog.LevelDebug
		switch {
		case status >= 500:
			level = slog.LevelWarn
		case status >= 400:
			level = slog.LevelInfo
		}
		// A reply that failed, or a handler error after a reply was
		// attempted (its status could no longer be sent), is a problem
		// even though the status says 200.
		if sendErr != nil || (herr != nil && status < 400) {
			level = slog.LevelWarn
			if note == "" && herr != nil {
				note = "handler error after the reply was attempted"
			}
		}
		if !s.log.Enabled(context.Background(), level) {
			return // the common case (debug off): build nothing
		}
		attrs := []slog.Attr{
			slog.String("session", sess.id), slog.String("kind", string(KindHTTP)),
			slog.String("remote", sess.remote), slog.String("path", r.URL.Path),
			slog.Int("bytes_in", inBytes), slog.Int("bytes_out", outBytes),
			slog.Int("status", status), slog.Duration("duration", time.Since(start)),
		}
		if note != "" {
			attrs = append(attrs, slog.String("note", note))
		}
		if herr != nil {
			attrs = append(attrs, slog.String("err", herr.Error()))
		}
		if sendErr != nil {
			attrs = append(attrs, slog.String("reply_err", sendErr.Error()))
		}
		s.log.LogAttrs(context.Background(), level, "didcomm http request", attrs...)
	}()

	ctype, ok := replyContentType(r.Header.Get("Content-Type"))
	if !ok {
		note = "unsupported content type"
		sess.answer(http.StatusUnsupportedMediaType)
		return
	}
	sess.ctype = ctype

	body, held, status := s.readBody(w, r, rc)
	// The body's share of MaxInFlightBytes is held until the handler is done
	// with it (this function returns when the handler did).
	defer s.inFlight.give(held)
	inBytes = len(body)
	if status != 0 {
		note = "bad body"
		switch status {
		case http.StatusRequestEntityTooLarge:
			note = "body over MaxMessageBytes"
			s.limit(LimitMessageSize)
		case http.StatusServiceUnavailable:
			note = "MaxInFlightBytes spent"
			s.limit(LimitInFlightBytes)
		}
		if status != http.StatusBadRequest || r.ContentLength != 0 {
			// The body was not read to its end: do not keep the
			// connection (net/http drains at most a little of it, under
			// the read deadline readBody left, then closes).
			w.Header().Set("Connection", "close")
		}
		sess.answer(status)
		return
	}

	ctx, cancel := s.handlerContext(r.Context())
	defer cancel()
	watchdog := time.AfterFunc(s.cfg.HandlerTimeout+watchdogGrace(s.cfg.HandlerTimeout), func() {
		if sess.expire(http.StatusServiceUnavailable) {
			s.log.Warn("handler ignored its deadline; answered 503, handler still running",
				"session", sess.id, "kind", KindHTTP, "remote", sess.remote,
				"elapsed", time.Since(start))
		}
	})
	panicked, err := s.invoke(ctx, body, sess)
	watchdog.Stop()
	herr = err

	switch {
	case err == nil:
		sess.answer(http.StatusAccepted)
	case panicked:
		sess.answer(http.StatusInternalServerError)
	default:
		sess.answerErr(statusFor(err, ctx.Err()), err)
	}
}

// statusFor maps a handler error to an HTTP status (see the package doc).
func statusFor(err error, ctxErr error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		if st := hs.HTTPStatus(); st >= 400 && st <= 599 {
			return st
		}
		return http.StatusInternalServerError
	}
	if ctxErr != nil {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// readBody reads the POST body under MaxMessageBytes and
// MessageReadTimeout, into a buffer that grows with the bytes received
// (never with what Content-Length announces). held is the body's share of
// MaxInFlightBytes, which the caller gives back when done with the body
// (also after an error). A non-zero status means the request must be
// answered with it: 413 over MaxMessageBytes, 503 when MaxInFlightBytes is
// spent, 400 for an empty, late or broken body.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) (body []byte, held int64, status int) {
	// On failure the deadline stays: it also bounds what net/http reads of
	// an unread body after the answer (to keep or gracefully close the
	// connection), which a slow client could otherwise hold up forever.
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.MessageReadTimeout))
	limit := s.cfg.MaxMessageBytes
	if r.ContentLength > limit {
		return nil, 0, http.StatusRequestEntityTooLarge
	}
	body, held, err := s.readMessage(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || errors.Is(err, errTooBig):
		return nil, held, http.StatusRequestEntityTooLarge
	case errors.Is(err, errInFlight):
		return nil, held, http.StatusServiceUnavailable
	case err != nil:
		return nil, held, http.StatusBadRequest
	}
	// The body is in: clear the deadline, or net/http's background read
	// (which detects the client going away) would time out and cancel the
	// request context.
	_ = rc.SetReadDeadline(time.Time{})
	if len(body) == 0 {
		return nil, held, http.StatusBadRequest
	}
	return body, held, 0
}
