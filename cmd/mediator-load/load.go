package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/internal/loadgen"
)

func loadFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "target", Aliases: []string{"t"}, EnvVars: []string{"MEDIATOR_LOAD_TARGET"},
			Usage: "mediator `URL`: an invitation URL (?oob=...) or a base URL whose GET /invitation answers; repeatable (instances of one deployment): wallets, sockets and forwards are spread over them"},
		&cli.BoolFlag{Name: "direct", Usage: "talk to each --target base URL itself instead of the endpoints its invitation advertises (reach single instances that advertise a load balancer)"},
		&cli.IntFlag{Name: "wallets", Aliases: []string{"k"}, Value: 10, Usage: "`K` wallets to connect"},
		&cli.IntFlag{Name: "senders", Aliases: []string{"s"}, Value: 4, Usage: "`S` concurrent senders posting forwards"},
		&cli.IntFlag{Name: "messages", Aliases: []string{"n"}, Value: 1000, Usage: "`N` forwards in total"},
		&cli.StringFlag{Name: "mode", Value: "live", Usage: "`MODE` of pickup: live (WebSocket, live delivery), poll (pickup v2 over HTTP every --poll-interval) or queue (wallets drain over HTTP once all forwards are in)"},
		&cli.Float64Flag{Name: "rate", Value: 0, Usage: "total forward `RATE` in messages per second; 0 = as fast as possible"},
		&cli.StringFlag{Name: "distribution", Value: "roundrobin", Usage: "how messages are spread over wallets and targets: roundrobin or random"},
		&cli.DurationFlag{Name: "poll-interval", Value: 200 * time.Millisecond, Usage: "pause between polls of an empty queue in poll mode"},
		&cli.IntFlag{Name: "batch", Value: 10, Usage: "delivery-request `LIMIT`"},
		&cli.IntFlag{Name: "payload-bytes", Value: 700, Usage: "plaintext `BYTES` per message (about 1.5 KiB once packed)"},
		&cli.BoolFlag{Name: "prepack", Usage: "pack every forward before the clock starts (the client then spends only the POST per forward)"},
		&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "bound on the whole run, setup included"},
		&cli.DurationFlag{Name: "settle", Value: time.Second, Usage: "keep listening this long after the last delivery to catch late duplicates"},
		&cli.IntFlag{Name: "connect-concurrency", Value: 8, Usage: "wallets (and sockets) set up at once"},
		&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
		&cli.IntFlag{Name: "idle-sockets", Usage: "instead of a load run, open `N` idle WebSockets with live delivery on and hold them"},
		&cli.IntFlag{Name: "idle-wallets", Value: 10, Usage: "wallets the idle sockets belong to"},
		&cli.DurationFlag{Name: "hold", Value: 10 * time.Second, Usage: "how long to hold the idle sockets"},
		&cli.IntFlag{Name: "watch-pid", Usage: "`PID` of the mediator whose memory (VmRSS) the idle-sockets run samples"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL` of progress logs on stderr: debug, info, warn, error"},
	}
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

func runLoad(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("unexpected argument %q (see --help)", c.Args().First()), 2)
	}
	log, err := newLogger(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	targets := c.StringSlice("target")
	if len(targets) == 0 {
		return cli.Exit("--target is required", 2)
	}
	if n := c.Int("idle-sockets"); n > 0 {
		return runIdle(c, log, targets, n)
	}
	random := false
	switch c.String("distribution") {
	case "roundrobin":
	case "random":
		random = true
	default:
		return cli.Exit("--distribution: use roundrobin or random", 2)
	}
	res, err := loadgen.Run(c.Context, loadgen.Config{
		Targets:            targets,
		Wallets:            c.Int("wallets"),
		Senders:            c.Int("senders"),
		Messages:           c.Int("messages"),
		Mode:               loadgen.Mode(c.String("mode")),
		Rate:               c.Float64("rate"),
		Random:             random,
		Direct:             c.Bool("direct"),
		PollInterval:       c.Duration("poll-interval"),
		Batch:              c.Int("batch"),
		PayloadBytes:       c.Int("payload-bytes"),
		Prepack:            c.Bool("prepack"),
		Timeout:            c.Duration("timeout"),
		Settle:             c.Duration("settle"),
		ConnectConcurrency: c.Int("connect-concurrency"),
		Logger:             log,
	})
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if err := printResult(c.App.Writer, c.Bool("json"), res, res.WriteTable); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if !res.OK() {
		return cli.Exit(fmt.Sprintf("run not clean: %d lost, %d duplicates, %d errors, timed out %v",
			res.Lost, res.Duplicates, res.Errors, res.TimedOut), 1)
	}
	return nil
}

func runIdle(c *cli.Context, log *slog.Logger, targets []string, n int) error {
	res, err := loadgen.RunIdle(c.Context, loadgen.IdleConfig{
		Targets:     targets,
		Sockets:     n,
		Wallets:     c.Int("idle-wallets"),
		Direct:      c.Bool("direct"),
		Hold:        c.Duration("hold"),
		Concurrency: 4 * c.Int("connect-concurrency"),
		WatchPID:    c.Int("watch-pid"),
		Timeout:     c.Duration("timeout"),
		Logger:      log,
	})
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	table := func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "idle sockets: %d/%d live on %d wallets in %.2f s, held %.1f s, %d failed, %d closed early\n",
			res.Opened, res.Sockets, res.Wallets, res.OpenSeconds, res.HoldSeconds, res.Failed, res.ClosedEarly)
		if err == nil && res.Held != nil {
			before := int64(0)
			if res.Before != nil {
				before = res.Before.RSSKiB
			}
			_, err = fmt.Fprintf(w, "mediator RSS: %.1f MiB before, %.1f MiB held (peak %.1f MiB), %.1f KiB per socket\n",
				float64(before)/1024, float64(res.Held.RSSKiB)/1024, float64(res.Held.PeakKiB)/1024, res.PerSocketKiB)
		}
		for k, v := range res.ErrorKinds {
			if err == nil {
				_, err = fmt.Fprintf(w, "  %s: %d, e.g. %s\n", k, v, res.ErrorSamples[k])
			}
		}
		return err
	}
	if err := printResult(c.App.Writer, c.Bool("json"), res, table); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if !res.OK() {
		return cli.Exit(fmt.Sprintf("%d of %d sockets failed, %d closed early", res.Failed, res.Sockets, res.ClosedEarly), 1)
	}
	return nil
}

// printResult writes v as one JSON object, or as a table.
func printResult(w io.Writer, asJSON bool, v any, table func(io.Writer) error) error {
	if w == nil {
		w = os.Stdout
	}
	if !asJSON {
		return table(w)
	}
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}
