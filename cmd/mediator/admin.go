package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/internal/pgdb"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/pickup"
)

func invitationCommand() *cli.Command {
	return &cli.Command{
		Name:  "invitation",
		Usage: "print the mediator's out-of-band invitation: the URL on the first line, then the JSON",
		Description: `Reads (or, on a new database, creates) the mediator's keys and prints the
multi-use invitation wallets scan. Every instance of a deployment gives out the same one.

Example:
   mediator invitation --database-url postgres://postgres@127.0.0.1:5432/mediator \
     --master-key "$MEDIATOR_MASTER_KEY" --endpoint https://m.example.org --endpoint wss://m.example.org`,
		Flags: append(identityFlags(),
			&cli.BoolFlag{Name: "qr", Usage: "also print the invitation URL as a QR code to scan from the terminal (drawn for a dark background)"}),
		Before: loadConfigFile,
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			if c.String(flagDatabaseURL.Name) == "" {
				return fmt.Errorf("--database-url is required: without a database each run has new keys (ask a running in-memory server instead: GET /invitation)")
			}
			eps, err := endpoints(c)
			if err != nil {
				return err
			}
			st, err := openStores(c.Context, c, log, "")
			if err != nil {
				return err
			}
			defer st.close()
			agent, err := mediator.New(c.Context, mediator.Config{Endpoints: eps, Label: c.String(flagLabel.Name), Logger: log},
				st.store, st.queue, st.keys, pickup.New(st.queue, pickup.Options{Logger: log}))
			if err != nil {
				return err
			}
			inv := agent.Invitation()
			b, err := json.MarshalIndent(inv, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, inv.URL())
			fmt.Fprintln(c.App.Writer, string(b))
			if c.Bool("qr") {
				return printQR(c.App.Writer, inv.URL())
			}
			return nil
		},
	}
}

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "create the database if missing and apply pending schema migrations, then exit",
		Description: `serve migrates at start too; run this before rolling out a new version.
Migrations keep instances of the previous version working, except migration 2
(0002_payload_bytea: queued messages as bytea): stop the old instances, then
run this (serve refuses to apply it while other instances are alive).

Example:
   mediator migrate --database-url postgres://postgres@127.0.0.1:5432/mediator`,
		Flags:  []cli.Flag{flagConfig, flagDatabaseURL, flagDatabasePasswordFile, flagLogFormat, flagLogLevel},
		Before: loadConfigFile,
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			if c.String(flagDatabaseURL.Name) == "" {
				return fmt.Errorf("--database-url (MEDIATOR_DATABASE_URL) is required")
			}
			return migrate(c, log)
		},
	}
}

func migrate(c *cli.Context, log *slog.Logger) error {
	dbURL, err := databaseURL(c)
	if err != nil {
		return err
	}
	pool, err := pgdb.Open(c.Context, dbURL, log)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if err := pgdb.Migrate(c.Context, pool, log); err != nil {
		return fmt.Errorf("migration failed: %w", err)
	}
	fmt.Fprintln(c.App.Writer, "database schema is up to date")
	return nil
}
