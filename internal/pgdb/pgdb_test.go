package pgdb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openmediator/mediator/internal/pgdb"
	"github.com/openmediator/mediator/internal/pgtest"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func open(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pool, err := pgdb.Open(ctx, dbURL, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// awkwardName is a database name that only works quoted: upper case, a
// dash, a space and a double quote.
func awkwardName(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return `Mediator-Test "DB" ` + hex.EncodeToString(b[:])
}

func currentDatabase(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var name string
	if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestOpenCreatesDatabase(t *testing.T) {
	name := awkwardName(t)
	dbURL := pgtest.ReserveDatabase(t, name)

	pool := open(t, dbURL)
	if got := currentDatabase(t, pool); got != name {
		t.Errorf("connected to %q, want %q", got, name)
	}
	if err := pgdb.Migrate(t.Context(), pool, testLogger(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	pool.Close()

	// Opening an existing database creates nothing and works the same.
	if got := currentDatabase(t, open(t, dbURL)); got != name {
		t.Errorf("second open connected to %q, want %q", got, name)
	}
}

// Instances starting together race to create the database; all must win.
func TestOpenConcurrentCreate(t *testing.T) {
	const instances = 4
	name := awkwardName(t)
	dbURL := pgtest.ReserveDatabase(t, name)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() {
			pool, err := pgdb.Open(ctx, dbURL, testLogger(t))
			if err != nil {
				t.Errorf("instance %d: Open: %v", i, err)
				return
			}
			defer pool.Close()
			if err := pool.Ping(ctx); err != nil {
				t.Errorf("instance %d: Ping: %v", i, err)
			}
		})
	}
	wg.Wait()
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ name, url, want string }{
		{"bad URL", "postgres://%zz", "parse database URL"},
		{"nothing listening", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "connect to database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := pgdb.Open(ctx, tc.url, nil)
			if err == nil {
				pool.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

type appliedMigration struct {
	version int
	name    string
}

func applied(t *testing.T, pool *pgxpool.Pool) []appliedMigration {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT version, name FROM mediator_schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []appliedMigration
	for rows.Next() {
		var m appliedMigration
		if err := rows.Scan(&m.version, &m.name); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func tableExists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

var schemaTables = []string{
	"queued_message", "live_session", "mediator_instance", "mediator_key",
	"didcomm_connection", "mediation_route", "device_info",
}

var allMigrations = []appliedMigration{{1, "0001_init.sql"}, {2, "0002_payload_bytea.sql"}}

func TestMigrateTwice(t *testing.T) {
	pool := open(t, pgtest.NewDatabase(t))
	for i := range 2 {
		if err := pgdb.Migrate(t.Context(), pool, testLogger(t)); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	if got := applied(t, pool); !slices.Equal(got, allMigrations) {
		t.Errorf("recorded migrations %v, want %v", got, allMigrations)
	}
	for _, table := range schemaTables {
		if !tableExists(t, pool, table) {
			t.Errorf("table %s missing", table)
		}
	}
}

// Instances starting together migrate together; all succeed and each
// migration runs once.
func TestMigrateConcurrent(t *testing.T) {
	const instances = 4
	dbURL := pgtest.NewDatabase(t)
	pools := make([]*pgxpool.Pool, instances)
	for i := range pools {
		pools[i] = open(t, dbURL) // one pool per "instance"
	}
	var wg sync.WaitGroup
	for i, pool := range pools {
		wg.Go(func() {
			if err := pgdb.Migrate(t.Context(), pool, testLogger(t)); err != nil {
				t.Errorf("instance %d: Migrate: %v", i, err)
			}
		})
	}
	wg.Wait()
	if got := applied(t, pools[0]); !slices.Equal(got, allMigrations) {
		t.Errorf("recorded migrations %v, want %v", got, allMigrations)
	}
}

// Messages queued before 0002 keep their JSON text, now as bytes.
func TestMigratePayloadsToBytea(t *testing.T) {
	ctx := t.Context()
	pool := open(t, pgtest.NewDatabase(t))
	data, err := fs.ReadFile(pgdb.Migrations(), "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	only1 := fstest.MapFS{"0001_init.sql": {Data: data}}
	if err := pgdb.MigrateFS(ctx, pool, testLogger(t), only1); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO queued_message (connection_id, recipient_key, encrypted_message, size_bytes)
		VALUES (gen_random_uuid(), 'k', '{ "protected": "p",  "tag": "t", "iv": "é" }', 44)`); err != nil {
		t.Fatal(err)
	}
	if err := pgdb.Migrate(ctx, pool, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	var payload []byte
	if err := pool.QueryRow(ctx, "SELECT encrypted_message FROM queued_message").Scan(&payload); err != nil {
		t.Fatal(err)
	}
	// jsonb's own text of the object: keys by length, then bytes.
	if want := `{"iv": "é", "tag": "t", "protected": "p"}`; string(payload) != want {
		t.Errorf("migrated payload %q, want %q", payload, want)
	}
}

func TestMigrateBroken(t *testing.T) {
	pool := open(t, pgtest.NewDatabase(t))
	ctx := t.Context()
	fsys := fstest.MapFS{
		"0001_first.sql":  {Data: []byte("CREATE TABLE first_table (x int);")},
		"0002_broken.sql": {Data: []byte("CREATE TABLE half_done (x int);\nSELEC 'typo';")},
		"0003_later.sql":  {Data: []byte("CREATE TABLE later_table (x int);")},
		"README.md":       {Data: []byte("not a migration")},
	}
	err := pgdb.MigrateFS(ctx, pool, testLogger(t), fsys)
	if err == nil {
		t.Fatal("Migrate with a broken migration succeeded")
	}
	if !strings.Contains(err.Error(), "0002_broken.sql") {
		t.Errorf("error %q does not name the broken migration", err)
	}
	// The good migration before it stays; the broken one left nothing
	// behind; the one after it did not run.
	if got := applied(t, pool); len(got) != 1 || got[0].name != "0001_first.sql" {
		t.Errorf("recorded migrations %v, want only 0001_first.sql", got)
	}
	for table, want := range map[string]bool{"first_table": true, "half_done": false, "later_table": false} {
		if got := tableExists(t, pool, table); got != want {
			t.Errorf("table %s exists: %v, want %v", table, got, want)
		}
	}

	// Fixed, it picks up where it stopped.
	fsys["0002_broken.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE half_done (x int);")}
	if err := pgdb.MigrateFS(ctx, pool, testLogger(t), fsys); err != nil {
		t.Fatalf("Migrate after the fix: %v", err)
	}
	if got := applied(t, pool); len(got) != 3 {
		t.Errorf("recorded migrations %v, want three", got)
	}
}

func TestMigrateRejectsBadFiles(t *testing.T) {
	pool := open(t, pgtest.NewDatabase(t))
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"bad name", fstest.MapFS{"1-init.sql": {Data: []byte("SELECT 1")}}, "1-init.sql"},
		{"same version", fstest.MapFS{
			"0001_a.sql": {Data: []byte("SELECT 1")},
			"0001_b.sql": {Data: []byte("SELECT 1")},
		}, "same version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pgdb.MigrateFS(t.Context(), pool, nil, tc.fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if tableExists(t, pool, "mediator_schema_migrations") {
		t.Error("a rejected set of migrations touched the database")
	}
}

func TestServerSettingsWarnings(t *testing.T) {
	const autovacuumOff = "autovacuum is off for queued_message (autovacuum, track_counts or the table's autovacuum_enabled): " +
		"every delivered message leaves a dead row that slows later pickups down; turn autovacuum on, or VACUUM queued_message and live_session regularly"
	for _, tc := range []struct {
		s    pgdb.ServerSettings
		want []string
	}{
		{pgdb.ServerSettings{Autovacuum: true, TrackCounts: true, QueueAutovacuum: true}, nil},
		{pgdb.ServerSettings{Autovacuum: false, TrackCounts: true, QueueAutovacuum: true}, []string{autovacuumOff}},
		{pgdb.ServerSettings{Autovacuum: true, TrackCounts: false, QueueAutovacuum: true}, []string{autovacuumOff}},
		{pgdb.ServerSettings{Autovacuum: true, TrackCounts: true, QueueAutovacuum: false}, []string{autovacuumOff}},
	} {
		if got := tc.s.Warnings(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v.Warnings() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// CheckServer reads the server's settings and the table's storage
// parameters, and logs exactly the warnings they call for.
func TestCheckServer(t *testing.T) {
	pool := pgtest.NewPool(t)
	if err := pgdb.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	var autovacuum, trackCounts bool
	if err := pool.QueryRow(t.Context(), `SELECT current_setting('autovacuum')::bool, current_setting('track_counts')::bool`).
		Scan(&autovacuum, &trackCounts); err != nil {
		t.Fatal(err)
	}
	check := func(queueAutovacuum bool) {
		t.Helper()
		var logs strings.Builder
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		got, err := pgdb.CheckServer(t.Context(), pool, logger)
		want := pgdb.ServerSettings{Autovacuum: autovacuum, TrackCounts: trackCounts, QueueAutovacuum: queueAutovacuum}
		if err != nil || got != want {
			t.Fatalf("CheckServer = %+v, %v; want %+v", got, err, want)
		}
		if n := strings.Count(logs.String(), "level=WARN"); n != len(want.Warnings()) {
			t.Errorf("%d warnings logged, want %d:\n%s", n, len(want.Warnings()), logs.String())
		}
	}
	check(true)
	// PostgreSQL keeps the value as written.
	for _, value := range []string{"false", "off", "0", "no", "true", "on"} {
		if _, err := pool.Exec(t.Context(), "ALTER TABLE queued_message SET (autovacuum_enabled = "+value+")"); err != nil {
			t.Fatal(err)
		}
		check(value == "true" || value == "on")
	}
}

// A migration that cannot get its table lock gives up within lock_timeout
// and tries again, rather than queueing every running instance's queries
// behind its wait; it succeeds once the lock is free, and fails, recording
// nothing, if it never is.
func TestMigrateWaitsForLocksInShortTries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release time.Duration // when the other session lets go; 0: never
		wantErr bool
	}{
		{"lock freed during the tries", 300 * time.Millisecond, false},
		{"lock never freed", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			pool := open(t, pgtest.NewDatabase(t))
			if _, err := pool.Exec(ctx, "CREATE TABLE busy (x int)"); err != nil {
				t.Fatal(err)
			}
			holder, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			release := sync.OnceFunc(func() { _ = holder.Rollback(context.Background()) })
			defer release()
			if _, err := holder.Exec(ctx, "LOCK TABLE busy IN ACCESS SHARE MODE"); err != nil {
				t.Fatal(err)
			}
			if tc.release > 0 {
				time.AfterFunc(tc.release, release)
			}
			fsys := fstest.MapFS{"0001_alter.sql": {Data: []byte("ALTER TABLE busy ADD COLUMN y int")}}
			// One connection, so that the check below sees the one the
			// migration used.
			cfg := pool.Config()
			cfg.MaxConns = 1
			one, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer one.Close()
			var logs strings.Builder
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			start := time.Now()
			err = pgdb.MigrateFSLocked(ctx, one, logger, fsys, 100*time.Millisecond, 50*time.Millisecond, 4)
			took := time.Since(start)
			if n := strings.Count(logs.String(), "waiting for a table lock"); n == 0 || (tc.wantErr && n != 3) {
				t.Errorf("%d retries logged, want some (3 when the lock is never freed):\n%s", n, logs.String())
			}
			var timeout string
			if err := one.QueryRow(ctx, "SHOW lock_timeout").Scan(&timeout); err != nil || timeout != "0" {
				t.Errorf("lock_timeout after the migration = %q, %v; want the default 0", timeout, err)
			}
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "0001_alter.sql") || !strings.Contains(err.Error(), "55P03") {
					t.Fatalf("Migrate = %v, want the migration's lock timeout (55P03)", err)
				}
				var changed bool
				if err := pool.QueryRow(ctx, `SELECT to_regclass('mediator_schema_migrations') IS NOT NULL
					OR EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'busy' AND column_name = 'y')`).
					Scan(&changed); err != nil || changed {
					t.Errorf("after the failed migration: changed %v, %v; want nothing changed or recorded", changed, err)
				}
				// 4 tries of 100 ms with 3 pauses of 50 ms between.
				if took < 550*time.Millisecond {
					t.Errorf("gave up after %v, before its 4 tries", took)
				}
				return
			}
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if got := applied(t, pool); len(got) != 1 || got[0].name != "0001_alter.sql" {
				t.Errorf("recorded migrations %v, want 0001_alter.sql", got)
			}
		})
	}
}

// An instance starting up does not apply a migration that older instances
// cannot run beside while another instance is alive (a rolling upgrade):
// it refuses, changing nothing. With no live instance, or run explicitly
// (`mediator migrate`), the migration is applied.
func TestBreakingMigrationWaitsForOlderInstances(t *testing.T) {
	first := fstest.MapFS{"0001_instances.sql": {Data: []byte(
		"CREATE TABLE mediator_instance (instance text PRIMARY KEY, heartbeat_at timestamptz NOT NULL DEFAULT now())")}}
	both := fstest.MapFS{
		"0001_instances.sql": first["0001_instances.sql"],
		"0002_rewrite.sql":   {Data: []byte("-- rewrites\n-- mediator: stop older instances first\nCREATE TABLE rewritten (x int)")},
	}
	for _, tc := range []struct {
		name      string
		heartbeat string // of the other instance; "" for none
		atStart   bool
		wantErr   bool
	}{
		{"at start, another instance alive", "now()", true, true},
		{"at start, another instance dead", "now() - interval '1 hour'", true, false},
		{"at start, no other instance", "", true, false},
		{"explicit, another instance alive", "now()", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			pool := open(t, pgtest.NewDatabase(t))
			if err := pgdb.MigrateFS(ctx, pool, testLogger(t), first); err != nil {
				t.Fatal(err)
			}
			if tc.heartbeat != "" {
				if _, err := pool.Exec(ctx, "INSERT INTO mediator_instance VALUES ('old-1', "+tc.heartbeat+")"); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if tc.atStart {
				err = pgdb.MigrateFSAtStart(ctx, pool, testLogger(t), both, 30*time.Second)
			} else {
				err = pgdb.MigrateFS(ctx, pool, testLogger(t), both)
			}
			want := []appliedMigration{{1, "0001_instances.sql"}, {2, "0002_rewrite.sql"}}
			if tc.wantErr {
				if !errors.Is(err, pgdb.ErrOlderInstancesAlive) || !strings.Contains(err.Error(), "0002_rewrite.sql") ||
					!strings.Contains(err.Error(), "old-1") || !strings.Contains(err.Error(), "mediator migrate") {
					t.Fatalf("Migrate = %v, want ErrOlderInstancesAlive naming the migration, the instance and `mediator migrate`", err)
				}
				want = want[:1]
			} else if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if got := applied(t, pool); !slices.Equal(got, want) {
				t.Errorf("recorded migrations %v, want %v", got, want)
			}
		})
	}
}
