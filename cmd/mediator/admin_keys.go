package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/storepg"
)

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "show the mediator's public keys (reads the database directly)",
		Description: `Example:
   mediator keys show --database-url "$MEDIATOR_DATABASE_URL"`,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "show the invitation and routing keys (base58 and did:key) and how many connection keys exist",
			Description: `Only public keys are read: no master key is needed and no private key is ever
printed. The invitation key is in the out-of-band invitation wallets scan; the
routing key is the one given to wallets in mediate-grant, so senders encrypt
forwards to it. Both are shared by every instance.

Example:
   mediator keys show --database-url "$MEDIATOR_DATABASE_URL"
   mediator keys show --json | jq -r '.keys[] | select(.purpose == "routing") | .did_key'`,
			Flags: adminDBFlags(),
			Action: func(c *cli.Context) error {
				return withAdmin(c, func(ctx context.Context, a *storepg.Admin) error {
					k, err := a.MediatorKeys(ctx)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						doc := keysDoc{GeneratedAt: jsonTime(k.Now), Keys: []publicKeyJSON{}, ConnectionKeys: k.ConnectionKeys}
						for _, p := range k.Keys {
							doc.Keys = append(doc.Keys, publicKeyJSON{Purpose: string(p.Purpose), Verkey: p.Verkey,
								DIDKey: verkeyDIDKey(p.Verkey), CreatedAt: jsonTime(p.CreatedAt)})
						}
						return writeJSON(c.App.Writer, doc)
					}
					w := c.App.Writer
					if len(k.Keys) == 0 {
						fmt.Fprintln(w, "no invitation or routing key yet: the first `mediator serve` or `mediator invitation` creates them")
					} else {
						tw := newTable(w)
						tabRow(tw, "PURPOSE", "KEY (BASE58)", "DID:KEY", "CREATED")
						for _, p := range k.Keys {
							tabRow(tw, p.Purpose, p.Verkey, orDash(verkeyDIDKey(p.Verkey)), humanAge(k.Now, p.CreatedAt)+" ago")
						}
						if err := tw.Flush(); err != nil {
							return err
						}
					}
					fmt.Fprintf(w, "connection keys: %d\n", k.ConnectionKeys)
					return nil
				})
			},
		}},
	}
}

type keysDoc struct {
	GeneratedAt    jsonTime        `json:"generated_at"`
	Keys           []publicKeyJSON `json:"keys"`
	ConnectionKeys int             `json:"connection_keys"`
}

type publicKeyJSON struct {
	Purpose   string   `json:"purpose"`
	Verkey    string   `json:"verkey"`
	DIDKey    string   `json:"did_key"`
	CreatedAt jsonTime `json:"created_at"`
}
