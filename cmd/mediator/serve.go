package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/transport"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the mediator",
		Description: `Serves DIDComm over HTTP POST and WebSocket on --listen, plus GET /invitation
(the out-of-band invitation URL, or its JSON with Accept: application/json),
GET /healthz and GET /readyz.

Example:
   mediator serve --listen 0.0.0.0:8080 \
     --endpoint https://mediator.example.org --endpoint wss://mediator.example.org \
     --database-url postgres://mediator@db:5432/mediator --master-key "$(cat /run/secrets/master-key)"`,
		Flags: append(identityFlags(),
			&cli.DurationFlag{Name: "ws-ping-interval", Value: 30 * time.Second, EnvVars: []string{"MEDIATOR_WS_PING_INTERVAL"},
				Usage: "`DURATION` between server pings on WebSockets; a socket silent for twice this is closed"},
			&cli.Int64Flag{Name: "max-message-bytes", Value: 5 << 20, EnvVars: []string{"MEDIATOR_MAX_MESSAGE_BYTES"},
				Usage: "largest inbound message in `BYTES` (HTTP 413 / WebSocket close 1009 above it)"},
			&cli.BoolFlag{Name: "implicit-pickup", Value: true, EnvVars: []string{"MEDIATOR_IMPLICIT_PICKUP"},
				Usage: "push queued messages raw on a WebSocket that sends any message with return_route \"all\" and no pickup protocol (older wallets' Implicit mode)"},
			&cli.BoolFlag{Name: "auto-grant", Value: true, EnvVars: []string{"MEDIATOR_AUTO_GRANT"},
				Usage: "grant every mediation request (false: deny them)"},
		),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	eps, err := endpoints(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	st, err := openStores(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.close()
	if !st.durable {
		log.Warn("no --database-url: running on the in-memory store; connections, keys and queued messages are lost on restart")
	}
	instance := instanceID()
	pk := pickup.New(st.queue, pickup.Options{Instance: instance, Logger: log, Implicit: c.Bool("implicit-pickup")})
	agent, err := mediator.New(ctx, mediator.Config{
		Endpoints: eps, Label: c.String(flagLabel.Name), AutoGrant: c.Bool("auto-grant"), Logger: log,
	}, st.store, st.queue, st.keys, pk)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", c.String(flagListen.Name))
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/invitation", agent.InvitationHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	srv := transport.NewServer(transport.Config{
		MaxMessageBytes: c.Int64("max-message-bytes"),
		PingInterval:    c.Duration("ws-ping-interval"),
		Other:           mux,
		Logger:          log,
	}, agent)

	log.Info("mediator ready", "listen", ln.Addr().String(), "endpoints", eps, "instance", instance,
		"invitation_url", agent.Invitation().URL(), "durable", st.durable)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	<-errc
	log.Info("stopped")
	return nil
}
