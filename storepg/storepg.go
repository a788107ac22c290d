// Package storepg keeps the mediator's keys, connections and mediation
// routes in PostgreSQL (tables created by internal/pgdb's migrations).
//
// Lookups that find nothing return an error for which
// errors.Is(err, record.ErrNotFound) holds; an id that is not a UUID finds
// nothing. List lookups that find nothing return an empty list and no error.
package storepg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openmediator/mediator/record"
)

// keyCreationLockID is the session-level advisory lock key behind
// WithKeyCreationLock; it spells "medkeys!" in ASCII and must differ from
// internal/pgdb's migration lock.
const keyCreationLockID int64 = 0x6d65646b65797321

// queryTimeout bounds each query on top of the caller's context, so a hung
// connection cannot stall a caller that passed a context without deadline.
const queryTimeout = 5 * time.Second

// unlockTimeout bounds the advisory unlock, which must run even when the
// caller's context is already cancelled.
const unlockTimeout = 5 * time.Second

// SQLSTATE codes this package reacts to.
const codeForeignKeyViolation = "23503"

// Store is the PostgreSQL mediator.Store. It is safe for concurrent use,
// also by several instances on the same database.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool, whose schema must have been migrated.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// WithKeyCreationLock runs fn while holding a session-level advisory lock.
// Waiting for the lock ends with ctx. The lock is released when fn returns
// or panics.
//
// The lock lives on a connection of its own, opened for the call, not on one
// of the pool's: fn uses the store (and so the pool) while the lock is held,
// and callers waiting for the lock would otherwise sit on pool connections,
// so that as many waiters as the pool has connections starve the holder and
// nobody progresses. Ending that session also releases the lock whatever
// happens, even if the unlock cannot be sent.
func (s *Store) WithKeyCreationLock(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("storepg: key creation lock: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		// Unlock first so the next holder need not wait for the server to
		// notice the closed session; Close releases it regardless.
		_, _ = conn.Exec(cctx, "SELECT pg_advisory_unlock($1)", keyCreationLockID)
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", keyCreationLockID); err != nil {
		return fmt.Errorf("storepg: key creation lock: %w", err)
	}
	return fn(ctx)
}

// InsertKey stores one of the mediator's keys. A zero CreatedAt means now.
// Inserting a verkey twice is an error.
func (s *Store) InsertKey(ctx context.Context, k record.Key) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	_, err := s.pool.Exec(ctx, `
		INSERT INTO mediator_key (verkey, purpose, sealed_private, created_at)
		VALUES ($1, $2, $3, coalesce($4, now()))`,
		k.Verkey, string(k.Purpose), k.SealedPrivate, nullTime(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("storepg: insert key: %w", err)
	}
	return nil
}

const keyColumns = `verkey, purpose, sealed_private, created_at`

func scanKey(row pgx.CollectableRow) (record.Key, error) {
	var (
		k       record.Key
		purpose string
	)
	err := row.Scan(&k.Verkey, &purpose, &k.SealedPrivate, &k.CreatedAt)
	k.Purpose = record.KeyPurpose(purpose)
	return k, err
}

// KeyByVerkey returns the key with this base58 verkey.
func (s *Store) KeyByVerkey(ctx context.Context, verkey string) (record.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, _ := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM mediator_key WHERE verkey = $1`, verkey)
	k, err := pgx.CollectExactlyOneRow(rows, scanKey)
	if err != nil {
		return record.Key{}, notFound("storepg: key by verkey", err)
	}
	return k, nil
}

// KeysByPurpose returns the keys with purpose p, oldest first.
func (s *Store) KeysByPurpose(ctx context.Context, p record.KeyPurpose) ([]record.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, _ := s.pool.Query(ctx,
		`SELECT `+keyColumns+` FROM mediator_key WHERE purpose = $1 ORDER BY created_at, verkey`, string(p))
	keys, err := pgx.CollectRows(rows, scanKey)
	if err != nil {
		return nil, fmt.Errorf("storepg: keys by purpose: %w", err)
	}
	return keys, nil
}

// InsertConnection stores a new connection. c.ID must be a UUID; zero
// CreatedAt means now and zero UpdatedAt means CreatedAt; an empty Mediation
// means record.MediationNone. A second connection with the same ID or the
// same (OurKey, TheirKey) is an error.
func (s *Store) InsertConnection(ctx context.Context, c record.Connection) error {
	id, err := uuid.Parse(c.ID)
	if err != nil {
		return fmt.Errorf("storepg: insert connection: id %q is not a UUID", c.ID)
	}
	if c.Mediation == "" {
		c.Mediation = record.MediationNone
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	// Empty optional fields are stored as NULL, which is what SQL readers
	// of the table expect for "unknown".
	_, err = s.pool.Exec(ctx, `
		INSERT INTO didcomm_connection (id, state, protocol, our_did, our_key, their_did, their_key,
			their_label, their_endpoint, invitation_id, thread_id, mediation_state, created_at, updated_at)
		VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), NULLIF($4, ''), $5, NULLIF($6, ''), $7,
			NULLIF($8, ''), NULLIF($9, ''), NULLIF($10, ''), NULLIF($11, ''), $12,
			coalesce($13, now()), coalesce($14, $13, now()))`,
		id.String(), string(c.State), c.Protocol, c.OurDID, c.OurKey, c.TheirDID, c.TheirKey,
		c.TheirLabel, c.TheirEndpoint, c.InvitationID, c.ThreadID, string(c.Mediation),
		nullTime(c.CreatedAt), nullTime(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("storepg: insert connection: %w", err)
	}
	return nil
}

const connectionColumns = `id::text, coalesce(state, ''), coalesce(protocol, ''), coalesce(our_did, ''), our_key,
	coalesce(their_did, ''), their_key, coalesce(their_label, ''), coalesce(their_endpoint, ''),
	coalesce(invitation_id, ''), coalesce(thread_id, ''), mediation_state, created_at, updated_at`

func scanConnection(row pgx.CollectableRow) (record.Connection, error) {
	var (
		c                record.Connection
		state, mediation string
	)
	err := row.Scan(&c.ID, &state, &c.Protocol, &c.OurDID, &c.OurKey, &c.TheirDID, &c.TheirKey,
		&c.TheirLabel, &c.TheirEndpoint, &c.InvitationID, &c.ThreadID, &mediation, &c.CreatedAt, &c.UpdatedAt)
	c.State = record.ConnectionState(state)
	c.Mediation = record.MediationState(mediation)
	return c, err
}

// connection runs a query for at most one connection.
func (s *Store) connection(ctx context.Context, op, query string, args ...any) (record.Connection, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, _ := s.pool.Query(ctx, `SELECT `+connectionColumns+` FROM didcomm_connection `+query, args...)
	c, err := pgx.CollectExactlyOneRow(rows, scanConnection)
	if err != nil {
		return record.Connection{}, notFound("storepg: "+op, err)
	}
	return c, nil
}

// ConnectionByID returns the connection with this id.
func (s *Store) ConnectionByID(ctx context.Context, id string) (record.Connection, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return record.Connection{}, fmt.Errorf("storepg: connection %q: %w", id, record.ErrNotFound)
	}
	return s.connection(ctx, "connection by id", `WHERE id = $1`, u.String())
}

// ConnectionByKeys returns the connection on which we use ourKey and the
// peer sends from theirKey.
func (s *Store) ConnectionByKeys(ctx context.Context, ourKey, theirKey string) (record.Connection, error) {
	return s.connection(ctx, "connection by keys", `WHERE our_key = $1 AND their_key = $2`, ourKey, theirKey)
}

// ConnectionByTheirKey returns the newest connection whose peer sends from
// theirKey.
func (s *Store) ConnectionByTheirKey(ctx context.Context, theirKey string) (record.Connection, error) {
	return s.connection(ctx, "connection by their key",
		`WHERE their_key = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, theirKey)
}

// ConnectionByRoute returns the connection that registered recipientKey
// (base58) for its mediation: one primary-key lookup in mediation_route
// joined to the connection by its primary key.
func (s *Store) ConnectionByRoute(ctx context.Context, recipientKey string) (record.Connection, error) {
	return s.connection(ctx, "connection by route",
		`WHERE id = (SELECT connection_id FROM mediation_route WHERE recipient_key = $1)`, recipientKey)
}

// SetConnectionState updates a connection's handshake state.
func (s *Store) SetConnectionState(ctx context.Context, id string, st record.ConnectionState) error {
	return s.updateConnection(ctx, "set connection state", id, `state = NULLIF($2, '')`, string(st))
}

// SetMediationState updates a connection's mediation state.
func (s *Store) SetMediationState(ctx context.Context, id string, st record.MediationState) error {
	return s.updateConnection(ctx, "set mediation state", id, `mediation_state = $2`, string(st))
}

func (s *Store) updateConnection(ctx context.Context, op, id, set string, value string) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("storepg: %s: connection %q: %w", op, id, record.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	// greatest(): updated_at never goes backwards, e.g. when a record was
	// inserted with a CreatedAt ahead of the database's clock.
	tag, err := s.pool.Exec(ctx,
		`UPDATE didcomm_connection SET `+set+`, updated_at = greatest(now(), updated_at) WHERE id = $1`,
		u.String(), value)
	if err != nil {
		return fmt.Errorf("storepg: %s: %w", op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("storepg: %s: connection %s: %w", op, id, record.ErrNotFound)
	}
	return nil
}

// addRouteAttempts bounds AddRoute's retries; each retry needs the route to
// be deleted between our insert and our read, so two is already rare.
const addRouteAttempts = 5

// AddRoute registers recipientKey for connectionID if its mediation is
// granted (record.RouteNotGranted otherwise). It is atomic across instances:
// of concurrent calls for one key, exactly one connection gets
// record.RouteAdded; and against a concurrent revoke, which locks the
// connection row: either the revoke deletes the new route or the insert sees
// the revoked state. An unknown connection is record.ErrNotFound.
func (s *Store) AddRoute(ctx context.Context, connectionID, recipientKey string) (record.RouteResult, error) {
	u, err := uuid.Parse(connectionID)
	if err != nil {
		return "", fmt.Errorf("storepg: add route: connection %q: %w", connectionID, record.ErrNotFound)
	}
	connID := u.String()
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()

	// Two statements, not one CTE: a single statement's snapshot cannot
	// see a row that a concurrent transaction committed while our INSERT
	// waited on it, so the owner must be read by a second statement. If the
	// row vanished in between (route removed), start over.
	for range addRouteAttempts {
		var state *string // NULL: no such connection
		var added bool
		err := s.pool.QueryRow(ctx, `
			WITH granted AS (
			    SELECT id FROM didcomm_connection
			    WHERE id = $2 AND mediation_state = $3
			    FOR SHARE
			), ins AS (
			    INSERT INTO mediation_route (recipient_key, connection_id)
			    SELECT $1, id FROM granted
			    ON CONFLICT (recipient_key) DO NOTHING
			    RETURNING 1
			)
			SELECT (SELECT mediation_state FROM didcomm_connection WHERE id = $2),
			       EXISTS (SELECT 1 FROM ins)`,
			recipientKey, connID, string(record.MediationGranted)).Scan(&state, &added)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == codeForeignKeyViolation {
				return "", fmt.Errorf("storepg: add route: connection %s: %w", connID, record.ErrNotFound)
			}
			return "", fmt.Errorf("storepg: add route: %w", err)
		}
		switch {
		case added:
			return record.RouteAdded, nil
		case state == nil:
			return "", fmt.Errorf("storepg: add route: connection %s: %w", connID, record.ErrNotFound)
		case *state != string(record.MediationGranted):
			return record.RouteNotGranted, nil
		}
		var owner string
		err = s.pool.QueryRow(ctx,
			`SELECT connection_id::text FROM mediation_route WHERE recipient_key = $1`, recipientKey).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("storepg: add route: %w", err)
		}
		if owner == connID {
			return record.RouteNoChange, nil
		}
		return record.RouteConflict, nil
	}
	return "", fmt.Errorf("storepg: add route: key %s kept changing owner; gave up after %d attempts", recipientKey, addRouteAttempts)
}

// RemoveRoute unregisters recipientKey if connectionID registered it.
func (s *Store) RemoveRoute(ctx context.Context, connectionID, recipientKey string) (bool, error) {
	u, err := uuid.Parse(connectionID)
	if err != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx,
		`DELETE FROM mediation_route WHERE recipient_key = $1 AND connection_id = $2`, recipientKey, u.String())
	if err != nil {
		return false, fmt.Errorf("storepg: remove route: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Routes lists connectionID's recipient keys oldest first, skipping offset
// and returning at most limit (limit <= 0: all), with the total number of
// keys the connection has.
func (s *Store) Routes(ctx context.Context, connectionID string, limit, offset int) ([]string, int, error) {
	u, err := uuid.Parse(connectionID)
	if err != nil {
		return nil, 0, nil
	}
	var lim *int // NULL: LIMIT ALL
	if limit > 0 {
		lim = &limit
	}
	offset = max(offset, 0)
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()

	// Page and total in one round trip; the total comes from its own
	// subquery because a window count over the page is absent past the end.
	var (
		keys  []string
		total int
	)
	err = s.pool.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM mediation_route WHERE connection_id = $1),
			coalesce(ARRAY(
				SELECT recipient_key FROM mediation_route WHERE connection_id = $1
				ORDER BY created_at, recipient_key LIMIT $2 OFFSET $3), '{}')`,
		u.String(), lim, offset).Scan(&total, &keys)
	if err != nil {
		return nil, 0, fmt.Errorf("storepg: routes: %w", err)
	}
	return keys, total, nil
}

// SetDeviceInfo stores the push token and platform of connectionID's
// wallet, replacing any earlier ones; with both nil it removes them. Storing
// for an unknown connection is record.ErrNotFound; removing is not an error.
func (s *Store) SetDeviceInfo(ctx context.Context, connectionID string, token, platform *string) error {
	u, err := uuid.Parse(connectionID)
	if err != nil {
		if token == nil && platform == nil {
			return nil
		}
		return fmt.Errorf("storepg: set device info: connection %q: %w", connectionID, record.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if token == nil && platform == nil {
		if _, err := s.pool.Exec(ctx, `DELETE FROM device_info WHERE connection_id = $1`, u.String()); err != nil {
			return fmt.Errorf("storepg: remove device info: %w", err)
		}
		return nil
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO device_info (connection_id, device_token, device_platform, updated_at)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (connection_id) DO UPDATE
		SET device_token = excluded.device_token,
		    device_platform = excluded.device_platform,
		    updated_at = excluded.updated_at`,
		u.String(), token, platform)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == codeForeignKeyViolation {
			return fmt.Errorf("storepg: set device info: connection %s: %w", u, record.ErrNotFound)
		}
		return fmt.Errorf("storepg: set device info: %w", err)
	}
	return nil
}

// DeviceInfo returns the push token and platform stored for connectionID;
// ok is false when there is no token.
func (s *Store) DeviceInfo(ctx context.Context, connectionID string) (token, platform string, ok bool, err error) {
	u, err := uuid.Parse(connectionID)
	if err != nil {
		return "", "", false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	err = s.pool.QueryRow(ctx, `
		SELECT device_token, coalesce(device_platform, '') FROM device_info
		WHERE connection_id = $1 AND device_token IS NOT NULL`, u.String()).Scan(&token, &platform)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("storepg: device info: %w", err)
	}
	return token, platform, true, nil
}

// nullTime maps the zero time to NULL so the database supplies now().
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// notFound turns pgx's "no rows" into record.ErrNotFound and wraps any other
// error with op.
func notFound(op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, record.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", op, err)
}
