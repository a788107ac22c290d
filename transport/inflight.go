package transport

import (
	"errors"
	"io"
	"sync"
)

const (
	// freeMessageBytes is how far one message's buffer may grow without
	// counting against MaxInFlightBytes: most DIDComm messages are far
	// smaller, and they must keep flowing while large ones are refused.
	freeMessageBytes = 64 << 10
	// firstReadBytes is the largest buffer allocated before any byte of a
	// message arrived (less when Content-Length announces less). Later the
	// buffer doubles as it fills, so it is never more than about twice what
	// the peer actually sent, whatever it announced.
	firstReadBytes = 4 << 10
)

var (
	// errTooBig: the message is over MaxMessageBytes.
	errTooBig = errors.New("transport: message over MaxMessageBytes")
	// errInFlight: MaxInFlightBytes is spent.
	errInFlight = errors.New("transport: MaxInFlightBytes spent")
)

// byteBudget is a non-blocking counting budget of bytes (MaxInFlightBytes).
// A max of 0 or less means no bound.
type byteBudget struct {
	max int64

	mu   sync.Mutex
	used int64
}

// take takes n bytes from the budget, or none if that would overspend it.
func (b *byteBudget) take(n int64) bool {
	if b.max <= 0 || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// give returns n bytes taken from the budget.
func (b *byteBudget) give(n int64) {
	if b.max <= 0 || n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// inUse reports the bytes taken (for tests and logs).
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// readMessage reads r to its end into a buffer that grows with the bytes
// actually received: it starts at firstReadBytes at most and doubles as it
// fills, never beyond limit+1 bytes, nor beyond sizeHint+1 when sizeHint
// (Content-Length; -1 if unknown) is known and smaller. The part of the
// buffer beyond freeMessageBytes is taken from the server's in-flight
// budget as the buffer grows; held is how much was taken, which the caller
// gives back (s.inFlight.give) once it is done with the message, whatever
// the error. Errors: errTooBig over limit, errInFlight when the budget is
// spent, or r's.
func (s *Server) readMessage(r io.Reader, sizeHint, limit int64) (msg []byte, held int64, err error) {
	maxCap := limit + 1 // one more than allowed, to see an oversize message
	if sizeHint >= 0 && sizeHint < limit {
		maxCap = sizeHint + 1 // one more, to see EOF without growing
	}
	buf := make([]byte, 0, min(maxCap, firstReadBytes))
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= maxCap {
				// More than announced: only the limit bounds it now.
				maxCap = limit + 1
			}
			newCap := min(max(2*int64(cap(buf)), firstReadBytes), maxCap)
			extra := max(newCap-freeMessageBytes, 0) - max(int64(cap(buf))-freeMessageBytes, 0)
			if !s.inFlight.take(extra) {
				return nil, held, errInFlight
			}
			held += extra
			grown := make([]byte, len(buf), newCap)
			copy(grown, buf)
			buf = grown
		}
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, held, errTooBig
		}
		switch {
		case rerr == io.EOF:
			return buf, held, nil
		case rerr != nil:
			return nil, held, rerr
		}
	}
}
