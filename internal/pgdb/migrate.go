package pgdb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var embedded embed.FS

// migrationLockID is the pg_advisory_xact_lock key that serialises schema
// changes between instances. Any constant works as long as nothing else on
// the database uses it; this one spells "medmigr8" in ASCII.
const migrationLockID int64 = 0x6d65646d69677238

// lockPolicy bounds a migration's wait for the table locks it needs. A
// migration that changes a table takes an exclusive lock on it, and while
// it waits for one (behind a long transaction or a VACUUM, say) every
// forward and delivery of the running instances queues up behind it. So a
// statement waits at most wait (lock_timeout; well below the instances' own
// query timeouts), then the migration rolls back, pauses and tries again,
// tries times in all.
type lockPolicy struct {
	wait, pause time.Duration
	tries       int
}

func defaultLockPolicy() lockPolicy {
	return lockPolicy{wait: 2 * time.Second, pause: 3 * time.Second, tries: 12}
}

// migrationName is "<4+ digit version>_<name>.sql".
var migrationName = regexp.MustCompile(`^([0-9]{4,})_([a-z0-9_]+)\.sql$`)

// A migration is one versioned SQL file.
type migration struct {
	version int
	name    string // file name, for logs and errors
	sql     string
	// breaking: instances of the previous version cannot run beside the
	// schema it makes. Its file says so with breakingMarker on a line.
	breaking bool
}

// breakingMarker marks a migration that instances of the previous version
// cannot run beside (see MigrateAtStart).
const breakingMarker = "-- mediator: stop older instances first"

// ErrOlderInstancesAlive refuses a breaking migration at start while other
// instances are alive (MigrateAtStart).
var ErrOlderInstancesAlive = errors.New("instances of the previous version are running")

const createMigrationsTable = `
CREATE TABLE IF NOT EXISTS mediator_schema_migrations (
    version    int         PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies, in version order, every embedded migration that the
// database has not recorded in mediator_schema_migrations. It is safe to run
// from several instances at once and to run again. An error names the
// migration that failed and means the schema is not usable: the caller should
// stop.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	return migrateEmbedded(ctx, pool, logger, 0)
}

// MigrateAtStart is Migrate for an instance that is starting: it refuses
// (ErrOlderInstancesAlive, before changing anything) to apply a migration
// that instances of the previous version cannot run beside while any other
// instance has sent a heartbeat within aliveWithin, as during a rolling
// upgrade. The operator stops them and runs Migrate (`mediator migrate`).
func MigrateAtStart(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, aliveWithin time.Duration) error {
	return migrateEmbedded(ctx, pool, logger, aliveWithin)
}

func migrateEmbedded(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, aliveWithin time.Duration) error {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		return fmt.Errorf("pgdb: migrations: %w", err)
	}
	return migrate(ctx, pool, logger, sub, defaultLockPolicy(), aliveWithin)
}

// migrate is Migrate over any set of migration files, so tests can feed it
// broken ones. aliveWithin > 0 guards breaking migrations (MigrateAtStart).
func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, fsys fs.FS, lp lockPolicy, aliveWithin time.Duration) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	migrations, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	applied := 0
	for _, m := range migrations {
		ran, err := applyRetrying(ctx, pool, logger, m, lp, aliveWithin)
		if err != nil {
			return fmt.Errorf("pgdb: migration %s: %w", m.name, err)
		}
		if ran {
			applied++
			logger.InfoContext(ctx, "applied migration", slog.Int("version", m.version), slog.String("name", m.name))
		}
	}
	logger.DebugContext(ctx, "schema up to date", slog.Int("applied", applied), slog.Int("known", len(migrations)))
	return nil
}

// apply runs m in its own transaction unless it is already recorded, and
// reports whether it ran. One transaction per migration keeps a failure from
// undoing earlier, good migrations, and keeps each one all-or-nothing.
// applyRetrying is apply, tried again while it fails for want of a lock.
func applyRetrying(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, m migration, lp lockPolicy, aliveWithin time.Duration) (bool, error) {
	for try := 1; ; try++ {
		ran, err := apply(ctx, pool, m, lp.wait, aliveWithin)
		var pgErr *pgconn.PgError
		if err == nil || try >= lp.tries || !errors.As(err, &pgErr) || pgErr.Code != "55P03" { // lock_not_available
			return ran, err
		}
		logger.WarnContext(ctx, "migration is waiting for a table lock held by another session; trying again",
			slog.String("name", m.name), slog.Int("try", try), slog.Int("tries", lp.tries), slog.Duration("lock_timeout", lp.wait))
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(lp.pause):
		}
	}
}

func apply(ctx context.Context, pool *pgxpool.Pool, m migration, lockWait, aliveWithin time.Duration) (ran bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Held until commit or rollback: a second instance waits here and
		// then sees the version already recorded.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockID); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		// Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
		// otherwise fail on the catalog's unique index.
		if _, err := tx.Exec(ctx, createMigrationsTable); err != nil {
			return fmt.Errorf("create mediator_schema_migrations: %w", err)
		}
		var done bool
		err := tx.QueryRow(ctx,
			"SELECT EXISTS (SELECT 1 FROM mediator_schema_migrations WHERE version = $1)",
			m.version).Scan(&done)
		if err != nil {
			return fmt.Errorf("read mediator_schema_migrations: %w", err)
		}
		if done {
			return nil
		}
		if m.breaking && aliveWithin > 0 {
			if err := refuseIfAlive(ctx, tx, aliveWithin); err != nil {
				return err
			}
		}
		// Only now: waiting for the advisory lock above, behind another
		// instance's migration, may take as long as that one runs.
		if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)",
			strconv.FormatInt(lockWait.Milliseconds(), 10)); err != nil {
			return fmt.Errorf("set lock_timeout: %w", err)
		}
		// No arguments: pgx sends it with the simple protocol, which
		// allows the several statements a migration file holds.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx,
			"INSERT INTO mediator_schema_migrations (version, name) VALUES ($1, $2)",
			m.version, m.name); err != nil {
			return fmt.Errorf("record: %w", err)
		}
		ran = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return ran, nil
}

// loadMigrations reads the *.sql files at the root of fsys, sorted by
// version. A .sql file with a malformed name or a repeated version is an
// error rather than silently skipped, because skipping it would leave the
// schema behind the code.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("pgdb: list migrations: %w", err)
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		match := migrationName.FindStringSubmatch(e.Name())
		if match == nil {
			return nil, fmt.Errorf("pgdb: migration file %q: name must look like 0001_description.sql", e.Name())
		}
		version, err := strconv.Atoi(match[1])
		if err != nil {
			return nil, fmt.Errorf("pgdb: migration file %q: %w", e.Name(), err)
		}
		if prev, ok := seen[version]; ok {
			return nil, fmt.Errorf("pgdb: migrations %q and %q have the same version %d", prev, e.Name(), version)
		}
		seen[version] = e.Name()
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("pgdb: read migration %q: %w", e.Name(), err)
		}
		out = append(out, migration{version: version, name: e.Name(), sql: string(body),
			breaking: slices.Contains(strings.Split(string(body), "\n"), breakingMarker)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// refuseIfAlive returns ErrOlderInstancesAlive when an instance has sent a
// heartbeat within aliveWithin. The instance migrating has not sent one yet.
func refuseIfAlive(ctx context.Context, tx pgx.Tx, aliveWithin time.Duration) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('mediator_instance') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return err
	}
	var alive []string
	err := tx.QueryRow(ctx, `
		SELECT coalesce(array_agg(instance ORDER BY instance), '{}') FROM mediator_instance
		WHERE heartbeat_at > now() - $1::interval`, aliveWithin).Scan(&alive)
	if err != nil {
		return fmt.Errorf("look for running instances: %w", err)
	}
	if len(alive) > 0 {
		return fmt.Errorf("%w (%d with a heartbeat within %v: %s), and they could not queue messages once this "+
			"migration ran: stop them, run `mediator migrate`, then start this version", ErrOlderInstancesAlive,
			len(alive), aliveWithin, strings.Join(alive, ", "))
	}
	return nil
}
