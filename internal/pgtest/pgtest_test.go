package pgtest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/openmediator/mediator/internal/pgtest"
)

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestNewDatabaseIsDroppedAfterTheTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(pgtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		name = cfg.Database
		conn, err := pgx.ConnectConfig(t.Context(), cfg)
		if err != nil {
			t.Fatalf("connect to the new database: %v", err)
		}
		// Left open on purpose: the drop must not depend on tests closing
		// their connections.
		_ = conn
		if !databaseExists(t, name) {
			t.Fatalf("database %q not created", name)
		}
	})
	if name == "" || databaseExists(t, name) {
		t.Errorf("database %q still exists after its test", name)
	}
}

func TestNewPoolIsMigrated(t *testing.T) {
	pool := pgtest.NewPool(t)
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM mediator_schema_migrations").Scan(&n); err != nil || n == 0 {
		t.Errorf("migrations recorded: %d, %v", n, err)
	}
}

// fatalTB records Fatalf instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

type fatalCalled struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(fatalCalled{})
}

func TestUnreachableServerFailsWithInstructions(t *testing.T) {
	t.Setenv(pgtest.EnvServerURL, "postgres://postgres:secret@127.0.0.1:1/postgres?connect_timeout=2")
	fake := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatalCalled); !ok {
					panic(r)
				}
			}
		}()
		pgtest.NewDatabase(fake)
		t.Error("NewDatabase returned against an unreachable server")
	}()
	for _, want := range []string{"these tests need PostgreSQL at", pgtest.EnvServerURL, "pg_ctlcluster"} {
		if !strings.Contains(fake.msg, want) {
			t.Errorf("message %q lacks %q", fake.msg, want)
		}
	}
	if strings.Contains(fake.msg, "secret") {
		t.Errorf("message %q shows the password", fake.msg)
	}
}
