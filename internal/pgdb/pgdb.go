// Package pgdb opens the mediator's PostgreSQL database and brings its schema
// up to date.
//
// Several mediator instances may start against the same database at the same
// moment, so both steps tolerate a concurrent twin: creating the database
// accepts "already exists", and every migration runs in its own transaction
// under a transaction-level advisory lock and re-checks whether another
// instance applied it first.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SQLSTATE codes this package reacts to.
const (
	codeInvalidCatalogName = "3D000" // the database named in the URL does not exist
	codeDuplicateDatabase  = "42P04" // CREATE DATABASE found the name taken
	codeUniqueViolation    = "23505" // ... or lost a race for it, see createDatabase
)

// maintenanceDB is the database that exists on every PostgreSQL server and
// that we connect to in order to create the target database.
const maintenanceDB = "postgres"

// defaultConnectTimeout bounds one connection attempt.
const defaultConnectTimeout = 10 * time.Second

// Open connects to databaseURL and returns a pool on it. If the database does
// not exist, it is created first (on the same server, through its "postgres"
// database), which needs the CREATEDB privilege.
//
// The pool is verified with a ping, so a returned pool is usable; ctx bounds
// the whole operation, including creation.
func Open(ctx context.Context, databaseURL string, logger *slog.Logger) (*pgxpool.Pool, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's parse errors already redact the password.
		return nil, fmt.Errorf("pgdb: parse database URL: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		// Makes our sessions recognisable in pg_stat_activity.
		cfg.ConnConfig.RuntimeParams["application_name"] = "mediator"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A server that accepts TCP but never answers must not hang start-up
		// forever; connect_timeout in the URL overrides this.
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	logger.Info("connecting to database", "host", cfg.ConnConfig.Host, "port", cfg.ConnConfig.Port, "database", cfg.ConnConfig.Database)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgdb: open pool: %w", err)
	}
	err = pool.Ping(ctx)
	if err == nil {
		return pool, nil
	}
	if !isCode(err, codeInvalidCatalogName) {
		pool.Close()
		return nil, fmt.Errorf("pgdb: connect to database %q: %w", cfg.ConnConfig.Database, err)
	}

	// The pool holds no connection yet (the only attempt failed), so it can
	// be reused once the database exists.
	if err := createDatabase(ctx, cfg.ConnConfig, logger); err != nil {
		pool.Close()
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgdb: connect to database %q after creating it: %w", cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// createDatabase creates target.Database on target's server.
func createDatabase(ctx context.Context, target *pgx.ConnConfig, logger *slog.Logger) error {
	name := target.Database
	admin := target.Copy()
	admin.Database = maintenanceDB
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("pgdb: database %q does not exist; connect to %q to create it: %w", name, maintenanceDB, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// Identifiers cannot be bind parameters; Sanitize quotes the name so
	// mixed case, dashes or quotes in it are taken literally.
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	switch {
	case err == nil:
		logger.InfoContext(ctx, "created database", slog.String("database", name))
	case isCode(err, codeDuplicateDatabase), isDatabaseNameRace(err):
		// Another instance created it between our ping and here.
		logger.DebugContext(ctx, "database created concurrently", slog.String("database", name))
	default:
		return fmt.Errorf("pgdb: create database %q: %w", name, err)
	}
	return nil
}

// isDatabaseNameRace reports whether err is CREATE DATABASE losing to a
// concurrent CREATE DATABASE of the same name that committed while ours ran:
// PostgreSQL then reports the catalog's unique index, not 42P04.
func isDatabaseNameRace(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation &&
		pgErr.ConstraintName == "pg_database_datname_index"
}

// isCode reports whether err carries a PostgreSQL error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
