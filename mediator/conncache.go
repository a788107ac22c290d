package mediator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/openmediator/mediator/record"
)

// Connection cache defaults (Config.ConnectionCacheSize).
const (
	DefaultConnectionCacheSize = 10_000
	// connCacheTTL bounds how long a cached connection is used without
	// reading it again: a safety net only, since nothing the cache keeps
	// changes once the connection exists (see connCache).
	connCacheTTL = 5 * time.Minute
)

// connCache keeps the connections that authcrypted messages arrive on,
// keyed by (our key, their key), so that the common messages (pickup,
// trust ping) cost no database read to find their connection.
//
// It keeps what does not change once a connection exists: its id, keys,
// DIDs, label, endpoint, and so on. Two fields do change:
//
//   - State only ever goes from response-sent to completed. A cached
//     response-sent is at worst stale (another instance completed it): the
//     agent then marks it completed once more, which changes nothing, and
//     updates the cache.
//   - Mediation is changed by the handlers here and by operators
//     (`connections revoke` sets it to none and deletes the routes). It is
//     not cached at all: connections come out of the cache with Mediation
//     empty, and the coordinate-mediation handlers, the only ones that look
//     at it, read the connection afresh (freshConnection). Forwards do not
//     depend on it: they go by the routes, in the queue's statement.
//
// The cache is bounded: two generations of at most size/2 entries each. A
// hit in the old generation moves the entry to the new one; when the new
// one is full, the old one is dropped. So the connections in use stay and
// the size never exceeds size entries.
type connCache struct {
	half int
	ttl  time.Duration
	now  func() time.Time

	mu       sync.Mutex
	cur, old map[connCacheKey]connCacheEntry
}

type connCacheKey struct{ our, their string }

type connCacheEntry struct {
	conn record.Connection
	at   time.Time
}

// newConnCache returns a cache of at most size connections, or nil (no
// caching) for size < 0; 0 means DefaultConnectionCacheSize.
func newConnCache(size int) *connCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultConnectionCacheSize
	}
	half := max(1, size/2)
	return &connCache{half: half, ttl: connCacheTTL, now: time.Now,
		cur: make(map[connCacheKey]connCacheEntry), old: make(map[connCacheKey]connCacheEntry)}
}

func (c *connCache) get(our, their string) (record.Connection, bool) {
	if c == nil {
		return record.Connection{}, false
	}
	k := connCacheKey{our, their}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cur[k]
	if !ok {
		if e, ok = c.old[k]; ok {
			delete(c.old, k)
			c.insertLocked(k, e)
		}
	}
	if !ok || now.Sub(e.at) >= c.ttl {
		return record.Connection{}, false
	}
	return e.conn, true
}

// put caches conn (without its mediation state).
func (c *connCache) put(conn record.Connection) {
	if c == nil {
		return
	}
	conn.Mediation = ""
	e := connCacheEntry{conn: conn, at: c.now()}
	k := connCacheKey{conn.OurKey, conn.TheirKey}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.old, k)
	c.insertLocked(k, e)
}

// setState records a state change of a cached connection.
func (c *connCache) setState(conn record.Connection, s record.ConnectionState) {
	if c == nil {
		return
	}
	k := connCacheKey{conn.OurKey, conn.TheirKey}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[k]; ok && e.conn.ID == conn.ID {
		e.conn.State = s
		c.cur[k] = e
	}
	if e, ok := c.old[k]; ok && e.conn.ID == conn.ID {
		e.conn.State = s
		c.old[k] = e
	}
}

func (c *connCache) insertLocked(k connCacheKey, e connCacheEntry) {
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.half {
		c.old = c.cur
		c.cur = make(map[connCacheKey]connCacheEntry, c.half)
	}
	c.cur[k] = e
}

// len is the number of cached connections (both generations).
func (c *connCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

// connectionByKeys finds the connection of an authcrypted message: from
// the cache, or from the store (then cached). Its Mediation is empty: see
// connCache and freshConnection.
func (a *Agent) connectionByKeys(ctx context.Context, ourKey, theirKey string) (record.Connection, error) {
	if c, ok := a.conns.get(ourKey, theirKey); ok {
		return c, nil
	}
	c, err := a.store.ConnectionByKeys(ctx, ourKey, theirKey)
	if err != nil {
		return record.Connection{}, err
	}
	a.conns.put(c)
	c.Mediation = ""
	return c, nil
}

// freshConnection reads conn again from the store, for the handlers that
// decide on its mediation state (which the cache does not keep), so that a
// grant, a deny or an operator's revoke is seen at once.
func (a *Agent) freshConnection(ctx context.Context, conn record.Connection) (record.Connection, error) {
	c, err := a.store.ConnectionByID(ctx, conn.ID)
	if err != nil {
		return record.Connection{}, fmt.Errorf("mediator: connection %s: %w", conn.ID, err)
	}
	return c, nil
}

// setConnectionState stores a new state of conn and tells the cache.
func (a *Agent) setConnectionState(ctx context.Context, conn record.Connection, s record.ConnectionState) error {
	if err := a.store.SetConnectionState(ctx, conn.ID, s); err != nil {
		return err
	}
	a.conns.setState(conn, s)
	return nil
}
