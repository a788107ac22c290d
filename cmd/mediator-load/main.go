// Command mediator-load is a load generator for the mediator. It speaks
// DIDComm v1 like real wallets and senders: K wallets connect (invitation,
// DID Exchange, mediation, keylist-update) and hold a live WebSocket or poll
// with pickup v2, while S senders post forwards to them; it reports forward
// and delivery rates, latency percentiles, errors, losses and duplicates.
//
//	mediator-load --target http://127.0.0.1:8080 --wallets 50 --senders 8 --messages 5000
//	mediator-load --target http://127.0.0.1:8080 --idle-sockets 10000 --hold 10s --watch-pid 1234
//	mediator-load pickup-latency --target http://127.0.0.1:8080
//	mediator-load ready-time --url http://127.0.0.1:8080/readyz -- mediator serve
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		if ec, ok := err.(cli.ExitCoder); ok {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "mediator-load:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "mediator-load:", err)
		os.Exit(2)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "mediator-load",
		Usage: "load generator and benchmark client for the DIDComm mediator",
		Description: `Without a command: a load run (or, with --idle-sockets, an idle-sockets run).
The exit status is 1 when a run lost, duplicated or failed anything, 2 when it
could not run at all.

Example:
   mediator-load --target http://127.0.0.1:8080 --wallets 50 --senders 8 --messages 5000 --json`,
		Flags:                loadFlags(),
		Action:               runLoad,
		ExitErrHandler:       func(*cli.Context, error) {}, // main reports errors
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			pickupLatencyCommand(),
			readyTimeCommand(),
			sampleEnvelopeCommand(),
		},
	}
}
