// Package pgtest gives tests their own PostgreSQL database.
//
// Every test gets a freshly created database with a unique name, so tests
// can run in parallel and leave nothing behind: the database is dropped WITH
// (FORCE) when the test ends. The server is the one at
// $MEDIATOR_TEST_DATABASE_URL (default DefaultServerURL). Tests that need it
// fail, never skip, when it is unreachable: a silently skipped storage suite
// looks exactly like a passing one.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openmediator/mediator/internal/pgdb"
)

// EnvServerURL names the environment variable that points the tests at a
// PostgreSQL server; the database named in it is used only to create and drop
// the test databases.
const EnvServerURL = "MEDIATOR_TEST_DATABASE_URL"

// DefaultServerURL is used when EnvServerURL is unset.
const DefaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres"

// setupTimeout bounds each administrative step (connect, create, drop).
const setupTimeout = 30 * time.Second

// ServerURL returns the URL of the test server's administrative database.
func ServerURL() string {
	if u := os.Getenv(EnvServerURL); u != "" {
		return u
	}
	return DefaultServerURL
}

// NewDatabase creates an empty database with a unique name and returns its
// URL. The database is dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	name := uniqueName(t)
	dbURL := ReserveDatabase(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn := connectAdmin(ctx, t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %q: %v", name, err)
	}
	return dbURL
}

// NewPool creates a database like NewDatabase, applies the mediator's
// migrations and returns a pool on it that is closed when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dbURL := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pool, err := pgdb.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatalf("pgtest: open test database: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs before the drop.
	t.Cleanup(pool.Close)
	if err := pgdb.Migrate(ctx, pool, nil); err != nil {
		t.Fatalf("pgtest: migrate test database: %v", err)
	}
	return pool
}

// ReserveDatabase returns the URL of a database called name on the test
// server without creating it, and drops it (if it then exists) when t ends.
// Use it to test code that creates its database itself.
func ReserveDatabase(t testing.TB, name string) string {
	t.Helper()
	// Fail early, with the helpful message, if the server is down.
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	connectAdmin(ctx, t).Close(ctx)

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		conn := connectAdmin(ctx, t)
		defer conn.Close(context.Background())
		// FORCE ends sessions a test left open (e.g. after a failure).
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if err != nil {
			t.Errorf("pgtest: drop database %q: %v", name, err)
		}
	})
	return withDatabase(t, ServerURL(), name)
}

// connectAdmin connects to the server's administrative database or stops t
// with instructions.
func connectAdmin(ctx context.Context, t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("pgtest: these tests need PostgreSQL at %s (set %s to use another server); "+
			"start the local one with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"+
			"connect error: %v", redact(ServerURL()), EnvServerURL, err)
	}
	return conn
}

// withDatabase returns serverURL with its database replaced by name. Both
// URL and keyword/value connection strings are accepted.
func withDatabase(t testing.TB, serverURL, name string) string {
	t.Helper()
	if strings.Contains(serverURL, "://") {
		u, err := url.Parse(serverURL)
		if err != nil {
			t.Fatalf("pgtest: parse %s: %v", EnvServerURL, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// Keyword/value form: a later dbname overrides an earlier one.
	return serverURL + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName builds a database name from the test name (to find leftovers)
// and a random suffix, within PostgreSQL's 63-byte identifier limit.
func uniqueName(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("pgtest: random: %v", err)
	}
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	const prefix, maxBase = "mtest_", 63 - len("mtest_") - 1 - 12
	if len(base) > maxBase {
		base = base[len(base)-maxBase:]
	}
	return prefix + base + "_" + hex.EncodeToString(b[:])
}

// redact hides a password in a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
