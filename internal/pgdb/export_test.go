package pgdb

import (
	"context"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateFS exposes migrate to the external tests, to feed it broken sets of
// migrations.
func MigrateFS(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, fsys fs.FS) error {
	return migrate(ctx, pool, logger, fsys, defaultLockPolicy(), 0)
}

// MigrateFSLocked is MigrateFS with the lock policy given: each statement
// waits at most wait for a lock, and the migration is tried tries times,
// pause apart.
func MigrateFSLocked(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, fsys fs.FS,
	wait, pause time.Duration, tries int) error {
	return migrate(ctx, pool, logger, fsys, lockPolicy{wait: wait, pause: pause, tries: tries}, 0)
}

// Migrations is the embedded set of migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// MigrateFSAtStart is MigrateAtStart over fsys.
func MigrateFSAtStart(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, fsys fs.FS, aliveWithin time.Duration) error {
	return migrate(ctx, pool, logger, fsys, defaultLockPolicy(), aliveWithin)
}
