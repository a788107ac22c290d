// Package memstore is the mediator's embedded storage: keys, connections,
// mediation routes and the transport queue held in memory. It is the default
// when no database is configured (everything is lost on restart) and the
// fast backend for unit tests.
//
// It follows the same contract as storepg and queuepg, checked by the same
// conformance suite (internal/storetest): leased claims, oldest first,
// filters ANDed, Ack ignoring foreign or malformed ids, atomic route
// conflicts, record.ErrNotFound for missing records. A Memory is safe for
// concurrent use.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
)

// DefaultLease is the lease used when Options.Lease is zero.
const DefaultLease = 60 * time.Second

// MaxClaim is the most messages one Claim hands out, as in queuepg.
const MaxClaim = 1000

// Options tune a Memory. Zero values take the defaults.
type Options struct {
	// Lease is how long a claimed message stays with its holder before it
	// becomes claimable again.
	Lease time.Duration
	// Now is the clock; tests inject one to expire leases without sleeping.
	// Defaults to time.Now.
	Now func() time.Time
	// AckGrace is how long the messages of a session that closed stay in
	// flight (see queuepg.Options.AckGrace). Zero releases them at once.
	AckGrace time.Duration
	// Caps bound each connection's queue (see queue.Caps; SetCaps changes
	// them later). Zero values: no caps.
	Caps queue.Caps
}

// Memory implements mediator.Store, mediator.Queue and pickup.Queue.
type Memory struct {
	lease    time.Duration
	ackGrace time.Duration
	now      func() time.Time

	// keyLock is the key-creation lock: a one-slot semaphore rather than a
	// mutex so that waiting for it can end with the context. It is separate
	// from mu because fn calls back into the store.
	keyLock chan struct{}

	mu          sync.Mutex
	seq         uint64 // insertion counter, breaks ties between equal times
	keys        map[string]record.Key
	conns       map[string]*connection // by id
	connsByKeys map[[2]string]string   // (our key, their key) → id
	routes      map[string]route       // recipient key → route
	devices     map[string]device      // connection id → push registration
	msgs        map[string]*message    // by id
	byConn      map[string][]*message  // connection id → messages, oldest first
	sessions    map[string]*session    // live sessions by session id
	caps        queue.Caps             // per-connection queue caps
}

// session is a registered live session; seq orders a connection's
// sessions by registration (the newest is the one forwards report).
type session struct {
	queue.Session
	seq uint64
}

type connection struct {
	record.Connection
	seq uint64
}

type route struct {
	connectionID string
	seq          uint64 // routes are listed in insertion order
}

// device is a wallet's push registration; a nil field is unset.
type device struct {
	token, platform *string
}

type message struct {
	queue.Message
	seq          uint64
	sending      bool
	leaseExpires time.Time
	holder       queue.Holder
}

// New returns an empty Memory.
func New(opts Options) *Memory {
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Memory{
		lease:       opts.Lease,
		ackGrace:    opts.AckGrace,
		now:         opts.Now,
		keyLock:     make(chan struct{}, 1),
		keys:        map[string]record.Key{},
		conns:       map[string]*connection{},
		connsByKeys: map[[2]string]string{},
		routes:      map[string]route{},
		devices:     map[string]device{},
		msgs:        map[string]*message{},
		byConn:      map[string][]*message{},
		sessions:    map[string]*session{},
		caps:        queue.Caps{Soft: max(opts.Caps.Soft, 0), Hard: max(opts.Caps.Hard, 0)},
	}
}

// timestamp returns the clock's time as the database would store it.
func (m *Memory) timestamp() time.Time {
	return dbTime(m.now())
}

// dbTime returns t as storepg would give it back: microsecond precision
// (pgx truncates) and no monotonic clock reading, so that both backends
// return comparable times.
func dbTime(t time.Time) time.Time {
	return t.Round(0).Truncate(time.Microsecond)
}

func (m *Memory) nextSeq() uint64 {
	m.seq++
	return m.seq
}

// ---- mediator.Store ----

// WithKeyCreationLock runs fn while no other WithKeyCreationLock of this
// Memory runs. Waiting ends with ctx.
func (m *Memory) WithKeyCreationLock(ctx context.Context, fn func(ctx context.Context) error) error {
	select {
	case m.keyLock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("memstore: key creation lock: %w", ctx.Err())
	}
	defer func() { <-m.keyLock }()
	return fn(ctx)
}

// InsertKey stores a key; a zero CreatedAt means now. A duplicate verkey is
// an error.
func (m *Memory) InsertKey(_ context.Context, k record.Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[k.Verkey]; ok {
		return fmt.Errorf("memstore: insert key: verkey %s already exists", k.Verkey)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = m.timestamp()
	}
	k.CreatedAt = dbTime(k.CreatedAt)
	k.SealedPrivate = slices.Clone(k.SealedPrivate)
	m.keys[k.Verkey] = k
	return nil
}

// KeyByVerkey returns the key with this verkey.
func (m *Memory) KeyByVerkey(_ context.Context, verkey string) (record.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[verkey]
	if !ok {
		return record.Key{}, fmt.Errorf("memstore: key %s: %w", verkey, record.ErrNotFound)
	}
	k.SealedPrivate = slices.Clone(k.SealedPrivate)
	return k, nil
}

// KeysByPurpose returns the keys with purpose p, oldest first.
func (m *Memory) KeysByPurpose(_ context.Context, p record.KeyPurpose) ([]record.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []record.Key
	for _, k := range m.keys {
		if k.Purpose == p {
			k.SealedPrivate = slices.Clone(k.SealedPrivate)
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b record.Key) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Verkey, b.Verkey))
	})
	return out, nil
}

// InsertConnection stores a new connection with the same defaults and
// uniqueness rules as storepg.
func (m *Memory) InsertConnection(_ context.Context, c record.Connection) error {
	id, ok := canonicalUUID(c.ID)
	if !ok {
		return fmt.Errorf("memstore: insert connection: id %q is not a UUID", c.ID)
	}
	c.ID = id
	if c.Mediation == "" {
		c.Mediation = record.MediationNone
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.conns[id]; ok {
		return fmt.Errorf("memstore: insert connection: id %s already exists", id)
	}
	pair := [2]string{c.OurKey, c.TheirKey}
	if _, ok := m.connsByKeys[pair]; ok {
		return fmt.Errorf("memstore: insert connection: a connection with keys (%s, %s) already exists", c.OurKey, c.TheirKey)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = m.timestamp()
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	c.CreatedAt, c.UpdatedAt = dbTime(c.CreatedAt), dbTime(c.UpdatedAt)
	m.conns[id] = &connection{Connection: c, seq: m.nextSeq()}
	m.connsByKeys[pair] = id
	return nil
}

// ConnectionByID returns the connection with this id.
func (m *Memory) ConnectionByID(_ context.Context, id string) (record.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.connection(id); c != nil {
		return c.Connection, nil
	}
	return record.Connection{}, fmt.Errorf("memstore: connection %q: %w", id, record.ErrNotFound)
}

// connection finds a connection by id in any UUID spelling; m.mu is held.
func (m *Memory) connection(id string) *connection {
	if id, ok := canonicalUUID(id); ok {
		return m.conns[id]
	}
	return nil
}

// ConnectionByKeys returns the connection with these keys.
func (m *Memory) ConnectionByKeys(_ context.Context, ourKey, theirKey string) (record.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.connsByKeys[[2]string{ourKey, theirKey}]; ok {
		return m.conns[id].Connection, nil
	}
	return record.Connection{}, fmt.Errorf("memstore: connection by keys: %w", record.ErrNotFound)
}

// ConnectionByTheirKey returns the newest connection whose peer sends from
// theirKey. A linear scan: the embedded store serves small deployments.
func (m *Memory) ConnectionByTheirKey(_ context.Context, theirKey string) (record.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *connection
	for _, c := range m.conns {
		if c.TheirKey != theirKey {
			continue
		}
		if best == nil || cmp.Or(c.CreatedAt.Compare(best.CreatedAt), cmp.Compare(c.seq, best.seq)) > 0 {
			best = c
		}
	}
	if best == nil {
		return record.Connection{}, fmt.Errorf("memstore: connection by their key: %w", record.ErrNotFound)
	}
	return best.Connection, nil
}

// SetConnectionState updates a connection's handshake state.
func (m *Memory) SetConnectionState(_ context.Context, id string, s record.ConnectionState) error {
	return m.updateConnection(id, func(c *record.Connection) { c.State = s })
}

// SetMediationState updates a connection's mediation state.
func (m *Memory) SetMediationState(_ context.Context, id string, s record.MediationState) error {
	return m.updateConnection(id, func(c *record.Connection) { c.Mediation = s })
}

func (m *Memory) updateConnection(id string, set func(*record.Connection)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.connection(id)
	if c == nil {
		return fmt.Errorf("memstore: update connection %q: %w", id, record.ErrNotFound)
	}
	set(&c.Connection)
	if now := m.timestamp(); now.After(c.UpdatedAt) {
		c.UpdatedAt = now
	}
	return nil
}

// AddRoute registers recipientKey for connectionID; see mediator.Store.
func (m *Memory) AddRoute(_ context.Context, connectionID, recipientKey string) (record.RouteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.connection(connectionID)
	if c == nil {
		return "", fmt.Errorf("memstore: add route: connection %q: %w", connectionID, record.ErrNotFound)
	}
	if c.Mediation != record.MediationGranted {
		return record.RouteNotGranted, nil
	}
	if r, ok := m.routes[recipientKey]; ok {
		if r.connectionID == c.ID {
			return record.RouteNoChange, nil
		}
		return record.RouteConflict, nil
	}
	m.routes[recipientKey] = route{connectionID: c.ID, seq: m.nextSeq()}
	return record.RouteAdded, nil
}

// RemoveRoute unregisters recipientKey if connectionID registered it.
func (m *Memory) RemoveRoute(_ context.Context, connectionID, recipientKey string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := canonicalUUID(connectionID)
	if r, found := m.routes[recipientKey]; !ok || !found || r.connectionID != id {
		return false, nil
	}
	delete(m.routes, recipientKey)
	return true, nil
}

// Routes lists connectionID's keys oldest first, skipping offset and returning
// at most limit (limit <= 0: all), with the connection's total.
func (m *Memory) Routes(_ context.Context, connectionID string, limit, offset int) ([]string, int, error) {
	id, ok := canonicalUUID(connectionID)
	if !ok {
		return nil, 0, nil
	}
	m.mu.Lock()
	type keyed struct {
		key string
		seq uint64
	}
	var all []keyed
	for k, r := range m.routes {
		if r.connectionID == id {
			all = append(all, keyed{k, r.seq})
		}
	}
	m.mu.Unlock()

	slices.SortFunc(all, func(a, b keyed) int { return cmp.Compare(a.seq, b.seq) })
	total := len(all)
	all = all[min(max(offset, 0), total):]
	if limit > 0 && limit < len(all) {
		all = all[:limit]
	}
	keys := make([]string, len(all))
	for i, k := range all {
		keys[i] = k.key
	}
	return keys, total, nil
}

// SetDeviceInfo stores the push token and platform of connectionID's
// wallet, replacing any earlier ones; with both nil it removes them. Storing
// for an unknown connection is record.ErrNotFound; removing is not an error.
func (m *Memory) SetDeviceInfo(_ context.Context, connectionID string, token, platform *string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.connection(connectionID)
	switch {
	case token == nil && platform == nil:
		if c != nil {
			delete(m.devices, c.ID)
		}
		return nil
	case c == nil:
		return fmt.Errorf("memstore: set device info: connection %q: %w", connectionID, record.ErrNotFound)
	}
	m.devices[c.ID] = device{token: clonePtr(token), platform: clonePtr(platform)}
	return nil
}

// DeviceInfo returns the push token and platform stored for connectionID;
// ok is false when there is no token.
func (m *Memory) DeviceInfo(_ context.Context, connectionID string) (token, platform string, ok bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, valid := canonicalUUID(connectionID)
	d, found := m.devices[id]
	if !valid || !found || d.token == nil {
		return "", "", false, nil
	}
	if d.platform != nil {
		platform = *d.platform
	}
	return *d.token, platform, true, nil
}

func clonePtr(p *string) *string {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// ---- mediator.Queue ----

// EnqueueForward queues payload for the connection that registered
// recipientKey, or returns queue.ErrUnknownRecipient (wrapped).
//
// Enqueued.LiveInstance is the instance of the connection's newest
// registered live session, or "". Nobody is notified: memstore serves one
// process, which pushes to its own sockets itself.
func (m *Memory) EnqueueForward(_ context.Context, recipientKey string, payload []byte) (queue.Enqueued, error) {
	if err := checkMessage(recipientKey, payload); err != nil {
		return queue.Enqueued{}, fmt.Errorf("memstore: enqueue forward: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.routes[recipientKey]
	if !ok {
		return queue.Enqueued{}, fmt.Errorf("memstore: enqueue forward to %s: %w", recipientKey, queue.ErrUnknownRecipient)
	}
	return m.enqueueCapped("enqueue forward", r.connectionID, recipientKey, payload)
}

// Enqueue queues payload for connectionID, addressed to recipientKey.
func (m *Memory) Enqueue(_ context.Context, connectionID, recipientKey string, payload []byte) (queue.Enqueued, error) {
	id, ok := canonicalUUID(connectionID)
	if !ok {
		return queue.Enqueued{}, fmt.Errorf("memstore: enqueue: connection id %q is not a UUID", connectionID)
	}
	if err := checkMessage(recipientKey, payload); err != nil {
		return queue.Enqueued{}, fmt.Errorf("memstore: enqueue: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enqueueCapped("enqueue", id, recipientKey, payload)
}

// liveInstance returns the instance of connectionID's newest live session,
// or ""; m.mu is held. A linear scan over the live sessions: the embedded
// store serves small deployments.
func (m *Memory) liveInstance(connectionID string) string {
	var newest *session
	for _, s := range m.sessions {
		if s.ConnectionID == connectionID && (newest == nil || s.seq > newest.seq) {
			newest = s
		}
	}
	if newest == nil {
		return ""
	}
	return newest.Instance
}

// enqueue adds a message; m.mu is held.
func (m *Memory) enqueue(connectionID, recipientKey string, payload []byte) queue.Message {
	msg := &message{
		Message: queue.Message{
			ID:           uuid.NewString(),
			ConnectionID: connectionID,
			RecipientKey: recipientKey,
			Payload:      slices.Clone(payload),
			ReceivedAt:   m.timestamp(),
		},
		seq: m.nextSeq(),
	}
	m.msgs[msg.ID] = msg
	// Keep the list sorted by (ReceivedAt, seq). With a clock that does not
	// go backwards the new message is the newest and this is an append.
	list := m.byConn[connectionID]
	i, _ := slices.BinarySearchFunc(list, msg, compareMessages)
	m.byConn[connectionID] = slices.Insert(list, i, msg)
	return msg.copy()
}

func compareMessages(a, b *message) int {
	return cmp.Or(a.ReceivedAt.Compare(b.ReceivedAt), cmp.Compare(a.seq, b.seq))
}

// copy returns the message with its own payload, safe to hand out.
func (msg *message) copy() queue.Message {
	out := msg.Message
	out.Payload = slices.Clone(msg.Payload)
	return out
}

// checkMessage applies the checks queuepg makes (queue.CheckPayload) and
// gets from its did:key conversion.
func checkMessage(recipientKey string, payload []byte) error {
	if raw, err := base58.Decode(recipientKey); err != nil || len(raw) != 32 {
		return fmt.Errorf("%w: recipient key %q is not a base58 Ed25519 public key", queue.ErrUnknownRecipient, recipientKey)
	}
	return queue.CheckPayload(payload)
}

// ---- pickup.Queue ----

// claimable reports whether msg matches f's key and may be handed out at now.
// The connection is matched by the caller's choice of list.
func (msg *message) claimable(recipientKey string, now time.Time) bool {
	if recipientKey != "" && msg.RecipientKey != recipientKey {
		return false
	}
	return !msg.sending || msg.leaseExpires.Before(now)
}

// Stats describes the claimable messages matching f.
func (m *Memory) Stats(_ context.Context, f queue.Filter) (queue.Stats, error) {
	id, ok := canonicalUUID(f.ConnectionID)
	if !ok {
		return queue.Stats{}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.timestamp()
	var s queue.Stats
	for _, msg := range m.byConn[id] {
		if !msg.claimable(f.RecipientKey, now) {
			continue
		}
		if s.Count == 0 {
			s.Oldest = msg.ReceivedAt
		}
		s.Count++
		s.TotalBytes += int64(len(msg.Payload))
		s.Newest = msg.ReceivedAt
	}
	return s, nil
}

// Claim hands out up to limit claimable messages matching f, oldest first,
// leased to h. limit <= 0 returns nothing; limit > MaxClaim is clamped.
func (m *Memory) Claim(_ context.Context, f queue.Filter, limit int, h queue.Holder) ([]queue.Message, error) {
	id, ok := canonicalUUID(f.ConnectionID)
	if !ok || limit <= 0 {
		return nil, nil
	}
	limit = min(limit, MaxClaim)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.timestamp()
	var out []queue.Message
	for _, msg := range m.byConn[id] {
		if len(out) == limit {
			break
		}
		if !msg.claimable(f.RecipientKey, now) {
			continue
		}
		msg.sending = true
		msg.leaseExpires = now.Add(m.lease)
		msg.holder = h
		msg.Attempts++
		out = append(out, msg.copy())
	}
	return out, nil
}

// AckStats is Ack followed by Stats of the connection's messages.
func (m *Memory) AckStats(ctx context.Context, connectionID string, ids []string) (int, queue.Stats, error) {
	n, err := m.Ack(ctx, connectionID, ids)
	if err != nil {
		return 0, queue.Stats{}, err
	}
	s, err := m.Stats(ctx, queue.Filter{ConnectionID: connectionID})
	return n, s, err
}

// Ack deletes the connection's messages with these ids, whatever their state,
// and returns how many went. Other ids are ignored.
func (m *Memory) Ack(_ context.Context, connectionID string, ids []string) (int, error) {
	connID, ok := canonicalUUID(connectionID)
	if !ok {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, msg := range m.owned(connID, ids) {
		delete(m.msgs, msg.ID)
		list := m.byConn[connID]
		if i, found := slices.BinarySearchFunc(list, msg, compareMessages); found {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(m.byConn, connID)
		} else {
			m.byConn[connID] = list
		}
		n++
	}
	return n, nil
}

// Release puts the connection's messages with these ids that h still holds
// back to pending, keeping their attempt counts. Other ids are ignored, and
// so are messages someone else claimed after h's lease ran out.
func (m *Memory) Release(_ context.Context, h queue.Holder, connectionID string, ids []string) error {
	connID, ok := canonicalUUID(connectionID)
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range m.owned(connID, ids) {
		if msg.sending && msg.holder == h {
			msg.unclaim()
		}
	}
	return nil
}

// unclaim returns a claimed message to pending; m.mu is held.
func (msg *message) unclaim() {
	msg.sending = false
	msg.leaseExpires = time.Time{}
	msg.holder = queue.Holder{}
}

// ---- pickup.Registry ----

// RegisterSession records a live session. Registering the same session id
// again updates it but keeps its age: it does not become its connection's
// newest session by switching mode.
func (m *Memory) RegisterSession(_ context.Context, s queue.Session) error {
	if s.ID == "" {
		return errors.New("memstore: register session: empty session id")
	}
	id, ok := canonicalUUID(s.ConnectionID)
	if !ok {
		return fmt.Errorf("memstore: register session: connection id %q is not a UUID", s.ConnectionID)
	}
	s.ConnectionID = id
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.sessions[s.ID]; ok {
		old.Session = s
		return nil
	}
	m.sessions[s.ID] = &session{Session: s, seq: m.nextSeq()}
	return nil
}

// UnregisterSession removes live session sessionID, and only it; the
// messages it holds in flight become claimable once AckGrace has passed
// (at once without a grace). Unknown sessions are not an error.
func (m *Memory) UnregisterSession(_ context.Context, sessionID string) error {
	if sessionID == "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, sessionID)
	graceEnd := m.now().Add(m.ackGrace)
	for _, msg := range m.msgs {
		if msg.sending && msg.holder.Session == sessionID {
			if m.ackGrace <= 0 {
				msg.unclaim()
			} else if msg.leaseExpires.After(graceEnd) {
				msg.leaseExpires = graceEnd
			}
		}
	}
	return nil
}

// owned returns the distinct messages among ids that belong to connID;
// m.mu is held.
func (m *Memory) owned(connID string, ids []string) []*message {
	var out []*message
	seen := make(map[string]bool, len(ids))
	for _, raw := range ids {
		id, ok := canonicalUUID(raw)
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		if msg, ok := m.msgs[id]; ok && msg.ConnectionID == connID {
			out = append(out, msg)
		}
	}
	return out
}

// canonicalUUID parses s and returns it in canonical lower-case form, the
// same spelling PostgreSQL returns.
func canonicalUUID(s string) (string, bool) {
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// WakeConnection does nothing: in one process the caller wakes its own
// sessions.
func (m *Memory) WakeConnection(context.Context, string) error { return nil }
