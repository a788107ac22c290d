// Command mediator is a DIDComm v1 mediator for mobile wallets: it keeps
// forwarded messages in PostgreSQL and hands them over when the wallet picks
// them up or holds a live WebSocket.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		// Errors of the mediator package name it already.
		fmt.Fprintln(os.Stderr, "mediator: "+strings.TrimPrefix(err.Error(), "mediator: "))
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:                 "mediator",
		Usage:                "DIDComm v1 mediator for wallets, backed by PostgreSQL",
		Version:              version,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			serveCommand(),
			invitationCommand(),
			migrateCommand(),
			queueCommand(),
			connectionsCommand(),
			sessionsCommand(),
			instancesCommand(),
			keysCommand(),
			healthcheckCommand(),
			versionCommand(),
			completionCommand(),
		},
	}
}
