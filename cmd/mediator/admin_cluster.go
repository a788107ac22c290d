package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/storepg"
)

func sessionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "sessions",
		Usage: "inspect the live sessions (wallet sockets) the instances registered (reads the database directly)",
		Description: `Example:
   mediator sessions list --database-url "$MEDIATOR_DATABASE_URL"`,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list live sessions by instance: session id, connection, protocol, age, last seen",
			Description: `PROTOCOL is v2 (Message Pickup 2.0 live mode) or implicit (raw messages on a
return-route socket). LAST SEEN is refreshed by the holding instance's
heartbeat; sessions of a dead instance are removed by the others' janitor.

Example:
   mediator sessions list --database-url "$MEDIATOR_DATABASE_URL" --instance mediator-1-4711-1a2b3c4d
   mediator sessions list --connection 0b5c1a9e-8f1d-4a51-9d6e-2f4f3c7d9a10 --json`,
			Flags: adminDBFlags(
				&cli.StringFlag{Name: "instance", Usage: "only the sessions held by instance `ID` (see instances list)"},
				&cli.StringFlag{Name: "connection", Usage: "only the sessions of connection `ID`"},
			),
			Action: func(c *cli.Context) error {
				if id := c.String("connection"); id != "" {
					if _, err := uuid.Parse(id); err != nil {
						return fmt.Errorf("--connection %q: not a connection id (UUID)", id)
					}
				}
				return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
					l, err := a.Sessions(ctx, storepg.SessionFilter{Instance: c.String("instance"), ConnectionID: c.String("connection")})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return writeJSON(c.App.Writer, sessionListDoc{GeneratedAt: jsonTime(l.Now), Sessions: sessionsJSON(l.Sessions)})
					}
					return printSessions(c, l.Now, l.Sessions)
				})
			},
		}},
	}
}

type sessionListDoc struct {
	GeneratedAt jsonTime          `json:"generated_at"`
	Sessions    []liveSessionJSON `json:"sessions"`
}

type liveSessionJSON struct {
	SessionID    string   `json:"session_id"`
	ConnectionID string   `json:"connection_id"`
	Protocol     string   `json:"protocol"`
	Instance     string   `json:"instance"`
	CreatedAt    jsonTime `json:"created_at"`
	LastSeenAt   jsonTime `json:"last_seen_at"`
}

func sessionsJSON(ss []storepg.LiveSession) []liveSessionJSON {
	out := []liveSessionJSON{}
	for _, s := range ss {
		out = append(out, liveSessionJSON{SessionID: s.SessionID, ConnectionID: s.ConnectionID, Protocol: s.Protocol,
			Instance: s.Instance, CreatedAt: jsonTime(s.CreatedAt), LastSeenAt: jsonTime(s.LastSeen)})
	}
	return out
}

func printSessions(c *cli.Context, now time.Time, ss []storepg.LiveSession) error {
	tw := newTable(c.App.Writer)
	tabRow(tw, "SESSION", "CONNECTION", "PROTOCOL", "INSTANCE", "AGE", "LAST SEEN")
	for _, s := range ss {
		tabRow(tw, s.SessionID, s.ConnectionID, s.Protocol, s.Instance, humanAge(now, s.CreatedAt), humanAge(now, s.LastSeen)+" ago")
	}
	return tw.Flush()
}

func instancesCommand() *cli.Command {
	return &cli.Command{
		Name:  "instances",
		Usage: "inspect the cluster's mediator instances and their heartbeats (reads the database directly)",
		Description: `Example:
   mediator instances list --database-url "$MEDIATOR_DATABASE_URL"`,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list instances: started, heartbeat age, alive, live sessions held",
			Description: `An instance is alive while its heartbeat is younger than --instance-ttl: give
the value the instances run with (serve --instance-ttl). A dead instance's row,
sessions and in-flight messages are cleaned up by a live instance's janitor.

Example:
   mediator instances list --database-url "$MEDIATOR_DATABASE_URL" --instance-ttl 30s`,
			Flags: adminDBFlags(
				&cli.DurationFlag{Name: "instance-ttl", Value: 30 * time.Second, EnvVars: []string{"MEDIATOR_INSTANCE_TTL"},
					Usage: "`DURATION` after which an instance without heartbeat counts as dead"},
			),
			Action: func(c *cli.Context) error {
				if ttl := c.Duration("instance-ttl"); ttl <= 0 {
					return fmt.Errorf("--instance-ttl %v: give a positive duration, e.g. 30s", ttl)
				}
				return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
					l, err := a.Instances(ctx, c.Duration("instance-ttl"))
					if err != nil {
						return err
					}
					if c.Bool("json") {
						doc := instanceListDoc{GeneratedAt: jsonTime(l.Now), InstanceTTLSeconds: c.Duration("instance-ttl").Seconds(),
							Instances: []instanceJSON{}}
						for _, in := range l.Instances {
							doc.Instances = append(doc.Instances, instanceJSON{Instance: in.Instance, StartedAt: jsonTime(in.StartedAt),
								HeartbeatAt: jsonTime(in.HeartbeatAt), HeartbeatAgeSeconds: ageSeconds(l.Now, in.HeartbeatAt),
								Alive: in.Alive, Sessions: in.Sessions})
						}
						return writeJSON(c.App.Writer, doc)
					}
					tw := newTable(c.App.Writer)
					tabRow(tw, "INSTANCE", "STARTED", "HEARTBEAT AGE", "ALIVE", "SESSIONS")
					for _, in := range l.Instances {
						tabRow(tw, in.Instance, humanAge(l.Now, in.StartedAt)+" ago", humanAge(l.Now, in.HeartbeatAt), yesNo(in.Alive), in.Sessions)
					}
					return tw.Flush()
				})
			},
		}},
	}
}

type instanceListDoc struct {
	GeneratedAt        jsonTime       `json:"generated_at"`
	InstanceTTLSeconds float64        `json:"instance_ttl_seconds"`
	Instances          []instanceJSON `json:"instances"`
}

type instanceJSON struct {
	Instance            string   `json:"instance"`
	StartedAt           jsonTime `json:"started_at"`
	HeartbeatAt         jsonTime `json:"heartbeat_at"`
	HeartbeatAgeSeconds *int64   `json:"heartbeat_age_seconds"`
	Alive               bool     `json:"alive"`
	Sessions            int      `json:"sessions"`
}
