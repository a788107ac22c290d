package queuepg

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Depth hints: checking the caps without counting the whole queue.
//
// The caps need each connection's depth, and counting it costs a visit to
// every queued message of the connection (an index entry and, for messages
// autovacuum has not marked all-visible yet, its heap page): about 0.5 µs a
// message. For a wallet that stays away while messages pour in, every
// forward would count everything queued before it.
//
// So after a batch statement, the batcher remembers for each connection it
// queued to an upper bound of its depth (the depth the statement used plus
// what it queued) and a marker: the (created_at, id) of the newest message
// it queued for it. The next batch for the connection passes the hint back,
// and the statement counts only the messages after the marker (a few) on
// top of the remembered depth. Messages acknowledged or expired since are
// still in the remembered part, so the estimate can only be too high, never
// too low; and it is used only while it shows the connection well below its
// caps (estimate + the batch's messages for it <= the soft cap, or the hard
// cap without one), where too high changes nothing: no message is refused
// or flagged on an estimate, the statement counts in full first. Depth in
// the result is then the estimate, an upper bound of the true depth.
//
// An estimate is only too low if a message was committed, with a
// created_at before the marker, after the statement that set the marker
// took its snapshot: an insert that ran concurrently with it. So a hint for
// a connection is only recorded by a statement that no concurrent insert
// for that connection can have escaped: no batch of this queue that ran
// beside it queued (or, still running, may queue) to the connection
// (batcher.settle), no Enqueue (reply) or batcher-less forward ran
// meanwhile, and no other instance was alive (the statement checks
// mediator_instance and ignores hints when another instance has a fresh
// heartbeat, since its inserts cannot be seen coming). Hints are also
// dropped when the caps change and not used after hintTTL, so a full count
// happens at least that often. The hints assume this Queue is the only
// one inserting under its instance id.
const (
	hintTTL       = 30 * time.Second
	maxHints      = 50_000  // connections with a hint
	maxKeyToConns = 100_000 // recipient keys whose connection is known
)

// depthHint is what a connection's next batch may start its count from.
type depthHint struct {
	base  int       // upper bound of the depth up to and including the marker
	at    time.Time // marker: created_at of the newest message counted in base
	id    uuid.UUID // marker: its id
	setAt time.Time // when recorded
}

// hintCache holds the hints, and the connection of recipient keys seen in
// results (to pick the hints a batch needs before its statement finds the
// routes; a stale one only costs a full count, the statement matches hints
// by the route's connection).
type hintCache struct {
	mu      sync.Mutex
	byConn  genMap[uuid.UUID, depthHint]
	keyConn genMap[string, uuid.UUID]
	gen     uint64 // bumped by forget: hints read before must not be recorded after

	// Replies (Enqueue) started and finished: a batch that saw either move
	// during its statement, or a reply in flight, records no hints.
	repliesStarted, repliesDone atomic.Uint64
}

func newHintCache() *hintCache {
	return &hintCache{byConn: newGenMap[uuid.UUID, depthHint](maxHints), keyConn: newGenMap[string, uuid.UUID](maxKeyToConns)}
}

// forBatch returns the fresh hints of the connections the keys are known to
// belong to, one per connection.
func (h *hintCache) forBatch(keys []string, now time.Time) (conns []uuid.UUID, hints []depthHint, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	gen = h.gen
	for _, k := range keys {
		c, ok := h.keyConn.get(k)
		if !ok {
			continue
		}
		hint, ok := h.byConn.get(c)
		if !ok || now.Sub(hint.setAt) >= hintTTL {
			continue
		}
		dup := false
		for _, seen := range conns {
			if seen == c {
				dup = true
				break
			}
		}
		if !dup {
			conns, hints = append(conns, c), append(hints, hint)
		}
	}
	return conns, hints, gen
}

// learn records the connection of recipient keys.
func (h *hintCache) learn(keys []string, conns []uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, k := range keys {
		h.keyConn.put(k, conns[i])
	}
}

// mayQueueTo reports whether a batch of these recipient keys may queue to
// connection c: a key whose connection is not known may be c's.
func (h *hintCache) mayQueueTo(keys []string, c uuid.UUID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if kc, ok := h.keyConn.get(k); !ok || kc == c {
			return true
		}
	}
	return false
}

// record stores new hints, unless forget ran since forBatch returned gen.
func (h *hintCache) record(gen uint64, conns []uuid.UUID, hints []depthHint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen != gen {
		return
	}
	for i, c := range conns {
		h.byConn.put(c, hints[i])
	}
}

// forget drops every hint (the caps changed).
func (h *hintCache) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++
	h.byConn.clear()
}

// replyStarted and replyDone bracket an Enqueue's statement.
func (h *hintCache) replyStarted() { h.repliesStarted.Add(1) }
func (h *hintCache) replyDone()    { h.repliesDone.Add(1) }

// replies is a snapshot of the reply counters.
type replies struct{ started, done uint64 }

func (h *hintCache) replies() replies {
	// done first: a reply that starts in between makes started > done.
	d := h.repliesDone.Load()
	return replies{started: h.repliesStarted.Load(), done: d}
}

// quietSince reports whether no reply was in flight at r and none started
// or finished since.
func (h *hintCache) quietSince(r replies) bool {
	return r.started == r.done && h.replies() == r
}

// newerID reports whether a sorts after b as PostgreSQL compares uuids.
func newerID(a, b uuid.UUID) bool { return bytes.Compare(a[:], b[:]) > 0 }

// genMap is a map bounded to about size entries: two generations of at most
// size/2; a hit in the old one moves the entry to the new one, and when the
// new one is full the old one is dropped. Not safe for concurrent use.
type genMap[K comparable, V any] struct {
	half     int
	cur, old map[K]V
}

func newGenMap[K comparable, V any](size int) genMap[K, V] {
	return genMap[K, V]{half: max(1, size/2), cur: map[K]V{}, old: map[K]V{}}
}

func (m *genMap[K, V]) get(k K) (V, bool) {
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.old[k]
	if ok {
		delete(m.old, k)
		m.put(k, v)
	}
	return v, ok
}

func (m *genMap[K, V]) put(k K, v V) {
	if _, ok := m.cur[k]; !ok && len(m.cur) >= m.half {
		m.old, m.cur = m.cur, make(map[K]V, m.half)
	}
	delete(m.old, k)
	m.cur[k] = v
}

func (m *genMap[K, V]) clear() {
	clear(m.cur)
	clear(m.old)
}

func (m *genMap[K, V]) len() int { return len(m.cur) + len(m.old) }
