package main

// Shared plumbing of the operator commands that read the database directly
// (queue, connections, sessions, instances, keys): their common flags, the
// connection to PostgreSQL, and table / JSON output.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/storepg"
)

// adminApplicationName marks the admin commands' sessions in
// pg_stat_activity.
const adminApplicationName = "mediator-admin"

// adminDBFlags are the flags of every database command, then extra.
// The flags are new on every call: urfave/cli keeps state in them.
func adminDBFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagConfig.Name, EnvVars: flagConfig.EnvVars, Usage: flagConfig.Usage},
		&cli.StringFlag{
			Name: "database-url", EnvVars: []string{"MEDIATOR_DATABASE_URL"},
			Usage: "PostgreSQL `URL` of the mediator's database, e.g. postgres://user@host:5432/mediator (required)",
		},
		&cli.StringFlag{
			Name: "database-password-file", EnvVars: []string{"MEDIATOR_DATABASE_PASSWORD_FILE"},
			Usage: "`FILE` holding the database password, used when --database-url has none",
		},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON document (stable field names, RFC 3339 UTC times) instead of a table"},
		&cli.DurationFlag{
			Name: "timeout", Value: storepg.DefaultAdminTimeout,
			Usage: "`DURATION` each database query may take",
		},
	}, extra...)
}

// withAdmin reads --config, connects to --database-url (with the password from
// --database-password-file, as serve does), checks that it holds the mediator's
// schema (it never creates or migrates anything) and runs fn.
func withAdmin(c *cli.Context, fn func(ctx context.Context, a *storepg.Admin) error) error {
	if err := loadConfigFile(c); err != nil {
		return err
	}
	dbURL, err := databaseURL(c)
	if err != nil {
		return err
	}
	if dbURL == "" {
		return errors.New("--database-url (or MEDIATOR_DATABASE_URL) is required: the PostgreSQL URL the mediator instances use, e.g. postgres://mediator@db:5432/mediator")
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return fmt.Errorf("--database-url: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = adminApplicationName
	}
	cfg.MaxConns = 2
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return fmt.Errorf("--timeout %v: give a positive duration, e.g. 30s", timeout)
	}
	ctx := c.Context
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "3D000" {
			return fmt.Errorf("database %q does not exist: check --database-url (`mediator migrate` creates it)", cfg.ConnConfig.Database)
		}
		return fmt.Errorf("database: cannot connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	admin := storepg.NewAdmin(pool, timeout)
	if err := admin.CheckSchema(ctx); err != nil {
		if errors.Is(err, storepg.ErrNoSchema) {
			return fmt.Errorf("database %q has no mediator schema: run `mediator migrate` first (%w)", cfg.ConnConfig.Database, err)
		}
		return err
	}
	return fn(ctx, admin)
}

// ---- output ----

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// tabRow writes one tab-separated table row.
func tabRow(tw io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c)
	}
	fmt.Fprintln(tw)
}

// jsonTime is a time in JSON: RFC 3339 in UTC, whole seconds, or null when zero.
type jsonTime time.Time

func (s jsonTime) MarshalJSON() ([]byte, error) {
	t := time.Time(s)
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

// ageSeconds is now - t in whole seconds for JSON, or nil when t is zero.
func ageSeconds(now, t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	s := int64(max(now.Sub(t), 0) / time.Second)
	return &s
}

// humanAge is now - t for a table ("3m12s", "4h5m", "2d3h"), or "-" when t
// is zero.
func humanAge(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanDuration(now.Sub(t))
}

// humanDuration renders d with its two largest units, whole seconds at
// most: "0s", "45s", "3m12s", "4h5m", "2d3h". Negative durations (clock
// skew) are 0s.
func humanDuration(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}

// humanBytes renders n bytes: "950 B", "1.5 KiB", "12.0 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// orDash returns s, or "-" if it is empty, for table cells.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// yesNo renders a boolean for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// verkeyDIDKey returns the did:key form of a base58 verkey, or "" if it is not
// an Ed25519 key.
func verkeyDIDKey(verkey string) string {
	d, err := diddoc.DIDKeyFromVerkey(verkey)
	if err != nil {
		return ""
	}
	return d
}

// pluralize returns "1 message", "2 messages".
func pluralize(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// oneArg returns the command's single positional argument, named what.
// urfave/cli stops parsing flags at the first argument, so flags after it
// arrive as arguments: say so.
func oneArg(c *cli.Context, what string) (string, error) {
	usage := fmt.Sprintf("%s [flags] %s", c.Command.HelpName, what)
	switch c.NArg() {
	case 0:
		return "", fmt.Errorf("give the %s: %s", strings.ToLower(what), usage)
	case 1:
		return c.Args().First(), nil
	default:
		return "", fmt.Errorf("expected one %s, got %q (flags go before it): %s", strings.ToLower(what), c.Args().Slice(), usage)
	}
}
