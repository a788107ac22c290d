package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

func queueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "inspect and purge the queued messages (reads the database directly)",
		Description: `Depth counts every queued message of a connection: pending, and in flight
(handed to the wallet, waiting for its acknowledgement while the lease runs).

Example:
   mediator queue stats --database-url postgres://mediator@db:5432/mediator --limit 10`,
		HideHelpCommand: true,
		Subcommands:     []*cli.Command{queueStatsCommand(), queueListCommand(), queuePurgeCommand()},
	}
}

func queueStatsCommand() *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "queue depth, in-flight count, oldest message age and size per connection, deepest first, and totals",
		Description: `Totals cover every connection, also those beyond --limit. A connection
shown as "(no record)" has messages but no connection record.

Example:
   mediator queue stats --database-url "$MEDIATOR_DATABASE_URL" --limit 10
   mediator queue stats --json | jq '.totals.oldest_age_seconds'`,
		Flags: adminDBFlags(
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "show the `N` deepest queues (0: all)"},
		),
		Action: func(c *cli.Context) error {
			return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
				s, err := a.QueueStats(ctx, c.Int("limit"))
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(c.App.Writer, queueStatsJSON(s))
				}
				tw := newTable(c.App.Writer)
				tabRow(tw, "CONNECTION", "LABEL", "DEPTH", "IN FLIGHT", "OLDEST", "BYTES")
				for _, q := range s.Connections {
					label := orDash(q.Label)
					if !q.Known {
						label = "(no record)"
					}
					tabRow(tw, q.ConnectionID, label, q.Depth, q.InFlight, humanAge(s.Now, q.Oldest), humanBytes(q.TotalBytes))
				}
				t := s.Totals
				tabRow(tw, "TOTAL", pluralize(t.Connections, "connection"), t.Depth, t.InFlight, humanAge(s.Now, t.Oldest), humanBytes(t.TotalBytes))
				if err := tw.Flush(); err != nil {
					return err
				}
				if len(s.Connections) < t.Connections {
					fmt.Fprintf(c.App.Writer, "(the %d deepest of %d queues; --limit 0 shows all)\n", len(s.Connections), t.Connections)
				}
				return nil
			})
		},
	}
}

type queueStatsDoc struct {
	GeneratedAt jsonTime        `json:"generated_at"`
	Connections []connQueueJSON `json:"connections"`
	Totals      queueTotalsJSON `json:"totals"`
}

type connQueueJSON struct {
	ConnectionID     string   `json:"connection_id"`
	Label            string   `json:"label"`
	ConnectionKnown  bool     `json:"connection_known"`
	Depth            int      `json:"depth"`
	InFlight         int      `json:"in_flight"`
	TotalBytes       int64    `json:"total_bytes"`
	OldestAt         jsonTime `json:"oldest_at"`
	OldestAgeSeconds *int64   `json:"oldest_age_seconds"`
}

type queueTotalsJSON struct {
	Connections      int      `json:"connections"`
	Depth            int      `json:"depth"`
	InFlight         int      `json:"in_flight"`
	TotalBytes       int64    `json:"total_bytes"`
	OldestAt         jsonTime `json:"oldest_at"`
	OldestAgeSeconds *int64   `json:"oldest_age_seconds"`
}

func queueStatsJSON(s storepg.QueueStats) queueStatsDoc {
	d := queueStatsDoc{GeneratedAt: jsonTime(s.Now), Connections: []connQueueJSON{}, Totals: queueTotalsJSON{
		Connections: s.Totals.Connections, Depth: s.Totals.Depth, InFlight: s.Totals.InFlight,
		TotalBytes: s.Totals.TotalBytes, OldestAt: jsonTime(s.Totals.Oldest), OldestAgeSeconds: ageSeconds(s.Now, s.Totals.Oldest),
	}}
	for _, q := range s.Connections {
		d.Connections = append(d.Connections, connQueueJSON{
			ConnectionID: q.ConnectionID, Label: q.Label, ConnectionKnown: q.Known, Depth: q.Depth, InFlight: q.InFlight,
			TotalBytes: q.TotalBytes, OldestAt: jsonTime(q.Oldest), OldestAgeSeconds: ageSeconds(s.Now, q.Oldest),
		})
	}
	return d
}

func queueListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list one connection's queued messages, oldest first (never their content)",
		Description: `STATE is pending, sending (in flight: handed out, waiting for the wallet's
acknowledgement) or "sending, lease expired" (handed out but not acknowledged
in time: it will be delivered again). ATTEMPTS counts deliveries.

Example:
   mediator queue list --database-url "$MEDIATOR_DATABASE_URL" --connection 0b5c1a9e-8f1d-4a51-9d6e-2f4f3c7d9a10`,
		Flags: adminDBFlags(
			&cli.StringFlag{Name: "connection", Usage: "the connection `ID` (required; see queue stats or connections list)"},
			&cli.IntFlag{Name: "limit", Value: 100, Usage: "show the `N` oldest messages (0: all)"},
		),
		Action: func(c *cli.Context) error {
			id := c.String("connection")
			if id == "" {
				return errors.New("--connection ID is required (queue stats lists the connections with queued messages)")
			}
			return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
				l, err := a.QueueList(ctx, id, c.Int("limit"))
				if errors.Is(err, record.ErrNotFound) {
					return unknownConnection(id)
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					doc := queueListDoc{GeneratedAt: jsonTime(l.Now), Total: l.Total, Messages: []queuedMessageJSON{}}
					for _, m := range l.Messages {
						doc.Messages = append(doc.Messages, queuedMessageJSON{
							ID: m.ID, ConnectionID: m.ConnectionID, State: m.State, LeaseExpired: m.LeaseExpired,
							RecipientKey: m.RecipientKey, SizeBytes: m.SizeBytes, CreatedAt: jsonTime(m.CreatedAt),
							Attempts: m.Attempts, LeaseExpiresAt: jsonTime(m.LeaseExpiresAt), SendingInstance: m.SendingInstance,
						})
					}
					return writeJSON(c.App.Writer, doc)
				}
				tw := newTable(c.App.Writer)
				tabRow(tw, "ID", "STATE", "RECIPIENT KEY", "SIZE", "AGE", "ATTEMPTS")
				for _, m := range l.Messages {
					state := m.State
					if m.LeaseExpired {
						state += ", lease expired"
					}
					tabRow(tw, m.ID, state, m.RecipientKey, humanBytes(int64(m.SizeBytes)), humanAge(l.Now, m.CreatedAt), m.Attempts)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if len(l.Messages) < l.Total {
					fmt.Fprintf(c.App.Writer, "(the %d oldest of %d messages; --limit 0 shows all)\n", len(l.Messages), l.Total)
				}
				return nil
			})
		},
	}
}

type queueListDoc struct {
	GeneratedAt jsonTime            `json:"generated_at"`
	Total       int                 `json:"total"`
	Messages    []queuedMessageJSON `json:"messages"`
}

type queuedMessageJSON struct {
	ID              string   `json:"id"`
	ConnectionID    string   `json:"connection_id"`
	State           string   `json:"state"`
	LeaseExpired    bool     `json:"lease_expired"`
	RecipientKey    string   `json:"recipient_key"`
	SizeBytes       int      `json:"size_bytes"`
	CreatedAt       jsonTime `json:"created_at"`
	Attempts        int      `json:"attempts"`
	LeaseExpiresAt  jsonTime `json:"lease_expires_at"`
	SendingInstance string   `json:"sending_instance"`
}

func queuePurgeCommand() *cli.Command {
	return &cli.Command{
		Name:  "purge",
		Usage: "delete queued messages of a connection and/or older than an age; --dry-run only counts",
		Description: `Deletes the messages matching every filter given (at least one), pending or
in flight, and prints how many. The wallet never receives them. Messages queued
after the purge started are left alone. Run with --dry-run first.

Example:
   mediator queue purge --database-url "$MEDIATOR_DATABASE_URL" --older-than 720h --dry-run
   mediator queue purge --database-url "$MEDIATOR_DATABASE_URL" --connection 0b5c1a9e-8f1d-4a51-9d6e-2f4f3c7d9a10`,
		Flags: adminDBFlags(
			&cli.StringFlag{Name: "connection", Usage: "only the messages of connection `ID`"},
			&cli.DurationFlag{Name: "older-than", Usage: "only messages queued longer ago than `DURATION` (e.g. 72h)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "count the messages that would be deleted, delete nothing"},
		),
		Action: func(c *cli.Context) error {
			f := storepg.PurgeFilter{ConnectionID: c.String("connection"), OlderThan: c.Duration("older-than")}
			if f.ConnectionID == "" && f.OlderThan == 0 {
				return errors.New("queue purge needs --connection ID and/or --older-than DURATION: it never empties every queue")
			}
			if f.OlderThan < 0 {
				return fmt.Errorf("--older-than %v: give a positive duration, e.g. 72h", f.OlderThan)
			}
			dry := c.Bool("dry-run")
			return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
				n, err := a.PurgeQueue(ctx, f, dry)
				if errors.Is(err, record.ErrNotFound) {
					return unknownConnection(f.ConnectionID)
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					doc := purgeDoc{DryRun: dry, ConnectionID: f.ConnectionID,
						OlderThanSeconds: int64(f.OlderThan / time.Second), Matched: n}
					if !dry {
						doc.Deleted = n
					}
					return writeJSON(c.App.Writer, doc)
				}
				if dry {
					fmt.Fprintf(c.App.Writer, "dry run: %s would be deleted\n", pluralize(n, "message"))
				} else {
					fmt.Fprintf(c.App.Writer, "deleted %s\n", pluralize(n, "message"))
				}
				return nil
			})
		},
	}
}

type purgeDoc struct {
	DryRun           bool   `json:"dry_run"`
	ConnectionID     string `json:"connection_id"`
	OlderThanSeconds int64  `json:"older_than_seconds"`
	Matched          int    `json:"matched"`
	Deleted          int    `json:"deleted"`
}

func unknownConnection(id string) error {
	return fmt.Errorf("connection %q not found: give a connection id (UUID) from `mediator connections list` or `mediator queue stats`", id)
}
