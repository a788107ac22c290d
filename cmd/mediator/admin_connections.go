package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/storepg"
)

func connectionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "connections",
		Usage: "list, show and revoke the wallets' connections (reads the database directly)",
		Description: `Example:
   mediator connections list --database-url "$MEDIATOR_DATABASE_URL"
   mediator connections show --database-url "$MEDIATOR_DATABASE_URL" 0b5c1a9e-8f1d-4a51-9d6e-2f4f3c7d9a10`,
		HideHelpCommand: true,
		Subcommands:     []*cli.Command{connectionsListCommand(), connectionsShowCommand(), connectionsRevokeCommand()},
	}
}

func connectionsListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list connections, newest first: label, handshake state, mediation, registered keys, queue depth",
		Description: `Example:
   mediator connections list --database-url "$MEDIATOR_DATABASE_URL" --limit 20
   mediator connections list --limit 0 --json | jq -r '.connections[] | select(.mediation == "granted") | .id'`,
		Flags: adminDBFlags(
			&cli.IntFlag{Name: "limit", Value: 100, Usage: "show the `N` newest connections (0: all)"},
		),
		Action: func(c *cli.Context) error {
			return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
				l, err := a.Connections(ctx, c.Int("limit"))
				if err != nil {
					return err
				}
				if c.Bool("json") {
					doc := connectionListDoc{GeneratedAt: jsonTime(l.Now), Total: l.Total, Connections: []connectionSummaryJSON{}}
					for _, s := range l.Connections {
						doc.Connections = append(doc.Connections, connectionSummaryJSON{
							ID: s.ID, Label: s.Label, State: s.State, Mediation: s.Mediation,
							Keys: s.Keys, QueueDepth: s.QueueDepth, CreatedAt: jsonTime(s.CreatedAt),
						})
					}
					return writeJSON(c.App.Writer, doc)
				}
				tw := newTable(c.App.Writer)
				tabRow(tw, "ID", "LABEL", "STATE", "MEDIATION", "KEYS", "QUEUE", "CREATED")
				for _, s := range l.Connections {
					tabRow(tw, s.ID, orDash(s.Label), orDash(s.State), s.Mediation, s.Keys, s.QueueDepth, humanAge(l.Now, s.CreatedAt)+" ago")
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if len(l.Connections) < l.Total {
					fmt.Fprintf(c.App.Writer, "(the %d newest of %d connections; --limit 0 shows all)\n", len(l.Connections), l.Total)
				}
				return nil
			})
		},
	}
}

type connectionListDoc struct {
	GeneratedAt jsonTime                `json:"generated_at"`
	Total       int                     `json:"total"`
	Connections []connectionSummaryJSON `json:"connections"`
}

type connectionSummaryJSON struct {
	ID         string   `json:"id"`
	Label      string   `json:"label"`
	State      string   `json:"state"`
	Mediation  string   `json:"mediation"`
	Keys       int      `json:"keys"`
	QueueDepth int      `json:"queue_depth"`
	CreatedAt  jsonTime `json:"created_at"`
}

func connectionsShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show everything about one connection: its record, registered keys, push device, queue and live sessions",
		ArgsUsage: "ID",
		Description: `Registered keys are printed in base58 and as did:key. Whether a push token is
registered is shown, never the token itself.

Example:
   mediator connections show --database-url "$MEDIATOR_DATABASE_URL" 0b5c1a9e-8f1d-4a51-9d6e-2f4f3c7d9a10`,
		Flags: adminDBFlags(),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "ID")
			if err != nil {
				return err
			}
			return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
				d, err := a.Connection(ctx, id)
				if errors.Is(err, record.ErrNotFound) {
					return unknownConnection(id)
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(c.App.Writer, connectionDetailJSON(d))
				}
				return printConnectionDetail(c, d)
			})
		},
	}
}

type connectionDetailDoc struct {
	GeneratedAt   jsonTime          `json:"generated_at"`
	ID            string            `json:"id"`
	Label         string            `json:"label"`
	State         string            `json:"state"`
	Protocol      string            `json:"protocol"`
	Mediation     string            `json:"mediation"`
	OurDID        string            `json:"our_did"`
	OurKey        string            `json:"our_key"`
	TheirDID      string            `json:"their_did"`
	TheirKey      string            `json:"their_key"`
	TheirEndpoint string            `json:"their_endpoint"`
	InvitationID  string            `json:"invitation_id"`
	ThreadID      string            `json:"thread_id"`
	CreatedAt     jsonTime          `json:"created_at"`
	UpdatedAt     jsonTime          `json:"updated_at"`
	Keys          []routeKeyJSON    `json:"keys"`
	Device        deviceJSON        `json:"device"`
	Queue         connQueueDetail   `json:"queue"`
	LiveSessions  []liveSessionJSON `json:"live_sessions"`
}

type routeKeyJSON struct {
	Verkey    string   `json:"verkey"`
	DIDKey    string   `json:"did_key"`
	CreatedAt jsonTime `json:"created_at"`
}

type removedKeyJSON struct {
	Verkey string `json:"verkey"`
	DIDKey string `json:"did_key"`
}

type deviceJSON struct {
	TokenPresent bool     `json:"token_present"`
	Platform     string   `json:"platform"`
	UpdatedAt    jsonTime `json:"updated_at"`
}

type connQueueDetail struct {
	Depth            int      `json:"depth"`
	InFlight         int      `json:"in_flight"`
	TotalBytes       int64    `json:"total_bytes"`
	OldestAt         jsonTime `json:"oldest_at"`
	OldestAgeSeconds *int64   `json:"oldest_age_seconds"`
}

func connectionDetailJSON(d storepg.ConnectionDetail) connectionDetailDoc {
	c := d.Connection
	doc := connectionDetailDoc{
		GeneratedAt: jsonTime(d.Now), ID: c.ID, Label: c.TheirLabel, State: string(c.State), Protocol: c.Protocol,
		Mediation: string(c.Mediation), OurDID: c.OurDID, OurKey: c.OurKey, TheirDID: c.TheirDID, TheirKey: c.TheirKey,
		TheirEndpoint: c.TheirEndpoint, InvitationID: c.InvitationID, ThreadID: c.ThreadID,
		CreatedAt: jsonTime(c.CreatedAt), UpdatedAt: jsonTime(c.UpdatedAt),
		Keys:   []routeKeyJSON{},
		Device: deviceJSON{TokenPresent: d.DeviceToken, Platform: d.DevicePlatform, UpdatedAt: jsonTime(d.DeviceUpdatedAt)},
		Queue: connQueueDetail{Depth: d.Queue.Depth, InFlight: d.Queue.InFlight, TotalBytes: d.Queue.TotalBytes,
			OldestAt: jsonTime(d.Queue.Oldest), OldestAgeSeconds: ageSeconds(d.Now, d.Queue.Oldest)},
		LiveSessions: sessionsJSON(d.Sessions),
	}
	for _, k := range d.Keys {
		doc.Keys = append(doc.Keys, routeKeyJSON{Verkey: k.Verkey, DIDKey: verkeyDIDKey(k.Verkey), CreatedAt: jsonTime(k.CreatedAt)})
	}
	return doc
}

func printConnectionDetail(c *cli.Context, d storepg.ConnectionDetail) error {
	conn := d.Connection
	tw := newTable(c.App.Writer)
	field := func(name string, value any) { tabRow(tw, name+":", value) }
	field("id", conn.ID)
	field("label", orDash(conn.TheirLabel))
	field("state", orDash(string(conn.State)))
	field("protocol", orDash(conn.Protocol))
	field("mediation", conn.Mediation)
	field("our did", orDash(conn.OurDID))
	field("our key", conn.OurKey)
	field("their did", orDash(conn.TheirDID))
	field("their key", conn.TheirKey)
	field("their endpoint", orDash(conn.TheirEndpoint))
	field("invitation id", orDash(conn.InvitationID))
	field("thread id", orDash(conn.ThreadID))
	field("created", humanAge(d.Now, conn.CreatedAt)+" ago")
	field("updated", humanAge(d.Now, conn.UpdatedAt)+" ago")
	device := "no"
	if d.DeviceToken {
		device = "yes (platform " + orDash(d.DevicePlatform) + ", updated " + humanAge(d.Now, d.DeviceUpdatedAt) + " ago)"
	}
	field("device token", device)
	q := d.Queue
	queue := pluralize(q.Depth, "message")
	if q.Depth > 0 {
		queue += fmt.Sprintf(" (%d in flight), %s, oldest %s", q.InFlight, humanBytes(q.TotalBytes), humanAge(d.Now, q.Oldest))
	}
	field("queue", queue)
	field("live sessions", len(d.Sessions))
	field("keys", len(d.Keys))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Sessions) > 0 {
		fmt.Fprintln(c.App.Writer)
		if err := printSessions(c, d.Now, d.Sessions); err != nil {
			return err
		}
	}
	if len(d.Keys) > 0 {
		fmt.Fprintln(c.App.Writer)
		tw = newTable(c.App.Writer)
		tabRow(tw, "KEY (BASE58)", "DID:KEY", "ADDED")
		for _, k := range d.Keys {
			tabRow(tw, k.Verkey, orDash(verkeyDIDKey(k.Verkey)), humanAge(d.Now, k.CreatedAt)+" ago")
		}
		return tw.Flush()
	}
	return nil
}

func connectionsRevokeCommand() *cli.Command {
	return &cli.Command{
		Name:      "revoke",
		Usage:     "end a wallet's mediation: delete its keys (routes), queued messages, live sessions and device token in one transaction",
		ArgsUsage: "ID",
		Description: `Afterwards nothing is routed to the wallet: forwards to its keys are refused as
for an unknown recipient, and what was queued for it is gone. The connection
record stays, with mediation "none" (a wallet that asks again is granted or
denied as --auto-grant says). Sockets the wallet holds open stay open until it
closes them. Prints what was removed.

Example:
   mediator connections revoke --database-url "$MEDIATOR_DATABASE_URL" 0b5c1a9e-8f1d-4a51-9d6e-2f4f3c7d9a10`,
		Flags: adminDBFlags(),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "ID")
			if err != nil {
				return err
			}
			return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
				r, err := a.RevokeConnection(ctx, id)
				if errors.Is(err, record.ErrNotFound) {
					return unknownConnection(id)
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					doc := revokedDoc{ConnectionID: r.ConnectionID, Label: r.Label, MediationWas: r.MediationWas,
						Mediation: string(record.MediationNone), KeysRemoved: []removedKeyJSON{}, MessagesRemoved: r.Messages,
						SessionsRemoved: r.Sessions, DeviceInfoRemoved: r.DeviceInfo}
					for _, k := range r.Keys {
						doc.KeysRemoved = append(doc.KeysRemoved, removedKeyJSON{Verkey: k, DIDKey: verkeyDIDKey(k)})
					}
					return writeJSON(c.App.Writer, doc)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "revoked connection %s (%s): mediation %s -> %s\n", r.ConnectionID, orDash(r.Label), r.MediationWas, record.MediationNone)
				tw := newTable(w)
				tabRow(tw, "keys removed:", len(r.Keys))
				for _, k := range r.Keys {
					tabRow(tw, "  "+k, orDash(verkeyDIDKey(k)))
				}
				tabRow(tw, "messages removed:", r.Messages)
				tabRow(tw, "live sessions removed:", r.Sessions)
				tabRow(tw, "device token removed:", yesNo(r.DeviceInfo))
				return tw.Flush()
			})
		},
	}
}

type revokedDoc struct {
	ConnectionID      string           `json:"connection_id"`
	Label             string           `json:"label"`
	MediationWas      string           `json:"mediation_was"`
	Mediation         string           `json:"mediation"`
	KeysRemoved       []removedKeyJSON `json:"keys_removed"`
	MessagesRemoved   int              `json:"messages_removed"`
	SessionsRemoved   int              `json:"sessions_removed"`
	DeviceInfoRemoved bool             `json:"device_info_removed"`
}
