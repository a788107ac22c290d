package pgdb

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ServerSettings are the server settings the mediator's tables depend on.
type ServerSettings struct {
	Autovacuum  bool // autovacuum
	TrackCounts bool // track_counts: without it autovacuum never starts
	// QueueAutovacuum is false when queued_message itself has
	// autovacuum_enabled off among its storage parameters (stored as
	// written: false, off, 0, no).
	QueueAutovacuum bool
}

// Warnings describes what is wrong with s for a mediator, one sentence each.
func (s ServerSettings) Warnings() []string {
	if !s.Autovacuum || !s.TrackCounts || !s.QueueAutovacuum {
		// Every delivered message leaves a dead row and dead index entries
		// behind; unvacuumed, claims and acknowledgements walk over them.
		return []string{"autovacuum is off for queued_message (autovacuum, track_counts or the table's autovacuum_enabled): " +
			"every delivered message leaves a dead row that slows later pickups down; turn autovacuum on, or VACUUM queued_message and live_session regularly"}
	}
	return nil
}

// CheckServer reads the server settings the mediator depends on and logs a
// warning for each problem. Only an error reading them is returned.
func CheckServer(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (ServerSettings, error) {
	var s ServerSettings
	err := pool.QueryRow(ctx, `
		SELECT current_setting('autovacuum')::bool, current_setting('track_counts')::bool,
		       coalesce((SELECT o.option_value::bool
		                 FROM pg_class c, pg_options_to_table(c.reloptions) o
		                 WHERE c.oid = to_regclass('queued_message') AND o.option_name = 'autovacuum_enabled'), true)`).
		Scan(&s.Autovacuum, &s.TrackCounts, &s.QueueAutovacuum)
	if err != nil {
		return ServerSettings{}, fmt.Errorf("pgdb: server settings: %w", err)
	}
	for _, w := range s.Warnings() {
		logger.WarnContext(ctx, w)
	}
	return s, nil
}
