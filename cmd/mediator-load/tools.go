package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openmediator/mediator/internal/loadgen"
)

func pickupLatencyCommand() *cli.Command {
	return &cli.Command{
		Name:  "pickup-latency",
		Usage: "time pickup v2 delivery-requests of one wallet over HTTP",
		Description: `Connects one wallet, then repeats: queue --batch forwards for it, time a
delivery-request (limit --batch) and the messages-received that follows. Only
the HTTP round trips are timed, not packing the request or opening the reply.

Example:
   mediator-load pickup-latency --target http://127.0.0.1:8080 --requests 300 --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "target", Required: true, Usage: "mediator `URL` (invitation URL or base URL)"},
			&cli.IntFlag{Name: "requests", Value: 200, Usage: "timed rounds"},
			&cli.IntFlag{Name: "warmup", Value: 20, Usage: "untimed rounds first"},
			&cli.IntFlag{Name: "batch", Value: 10, Usage: "messages per round"},
			&cli.IntFlag{Name: "payload-bytes", Value: 700, Usage: "plaintext `BYTES` per message"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "bound on the whole probe"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
		},
		Action: func(c *cli.Context) error {
			res, err := loadgen.RunPickupLatency(c.Context, loadgen.PickupLatencyConfig{
				Target: c.String("target"), Requests: c.Int("requests"), Warmup: c.Int("warmup"),
				Batch: c.Int("batch"), PayloadBytes: c.Int("payload-bytes"), Timeout: c.Duration("timeout"),
			})
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			table := func(w io.Writer) error {
				d, a := res.DeliveryRequestMs, res.MessagesReceivedMs
				_, err := fmt.Fprintf(w, "delivery-request (%d messages): p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (%d requests)\n"+
					"messages-received:              p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\nerrors %d\n",
					res.Batch, d.P50, d.P90, d.P99, d.Max, d.Count, a.P50, a.P90, a.P99, a.Max, res.Errors)
				return err
			}
			if err := printResult(c.App.Writer, c.Bool("json"), res, table); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if res.Errors > 0 {
				return cli.Exit(fmt.Sprintf("%d errors", res.Errors), 1)
			}
			return nil
		},
	}
}

// readyResult is what ready-time prints.
type readyResult struct {
	Command  []string  `json:"command"`
	ReadyMs  []float64 `json:"readyMs"`
	MedianMs float64   `json:"medianMs"`
	MinMs    float64   `json:"minMs"`
	MaxMs    float64   `json:"maxMs"`
}

func readyTimeCommand() *cli.Command {
	return &cli.Command{
		Name:      "ready-time",
		Usage:     "time a mediator process from start to its first 200 on /readyz",
		ArgsUsage: "-- COMMAND [ARGS...]",
		Description: `Starts COMMAND (with this process's environment), polls --url every
--poll until it answers 200, records the time since the process was started,
then stops it with SIGINT (SIGKILL after 15s). Repeats --runs times.

Example:
   MEDIATOR_LISTEN=127.0.0.1:8099 mediator-load ready-time --url http://127.0.0.1:8099/readyz -- ./mediator serve`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Required: true, Usage: "readiness `URL`"},
			&cli.IntFlag{Name: "runs", Value: 3, Usage: "starts to time"},
			&cli.DurationFlag{Name: "poll", Value: 2 * time.Millisecond, Usage: "polling period"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up on a start after this long"},
			&cli.StringFlag{Name: "log", Usage: "append the process's output to `FILE` (default: discard)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
		},
		Action: func(c *cli.Context) error {
			argv := c.Args().Slice()
			if len(argv) == 0 {
				return cli.Exit("ready-time: give the command after --", 2)
			}
			var out io.Writer = io.Discard
			if p := c.String("log"); p != "" {
				f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
				if err != nil {
					return cli.Exit(err.Error(), 2)
				}
				defer f.Close()
				out = f
			}
			res := readyResult{Command: argv}
			for range max(c.Int("runs"), 1) {
				d, err := timeToReady(c.Context, argv, c.String("url"), c.Duration("poll"), c.Duration("timeout"), out)
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				res.ReadyMs = append(res.ReadyMs, float64(d.Microseconds())/1000)
			}
			sorted := slices.Clone(res.ReadyMs)
			slices.Sort(sorted)
			res.MedianMs, res.MinMs, res.MaxMs = sorted[len(sorted)/2], sorted[0], sorted[len(sorted)-1]
			table := func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "start to ready: median %.1f ms (min %.1f, max %.1f) over %d starts\n",
					res.MedianMs, res.MinMs, res.MaxMs, len(res.ReadyMs))
				return err
			}
			if err := printResult(c.App.Writer, c.Bool("json"), res, table); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			return nil
		},
	}
}

// timeToReady starts argv and returns the time until url answered 200.
func timeToReady(ctx context.Context, argv []string, url string, poll, timeout time.Duration, out io.Writer) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("ready-time: start %s: %w", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := start.Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			stop()
			return 0, err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d := time.Since(start)
				stop()
				return d, nil
			}
		}
		select {
		case err := <-exited:
			return 0, fmt.Errorf("ready-time: %s exited before it was ready: %v", argv[0], err)
		case <-ctx.Done():
			stop()
			return 0, ctx.Err()
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			stop()
			return 0, errors.New("ready-time: not ready within the timeout")
		}
	}
}

func sampleEnvelopeCommand() *cli.Command {
	return &cli.Command{
		Name:  "sample-envelope",
		Usage: "print one packed message shaped like the ones the load run forwards (for pgbench payloads)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "payload-bytes", Value: 700, Usage: "plaintext `BYTES`"},
		},
		Action: func(c *cli.Context) error {
			b, err := loadgen.SampleInner(c.Int("payload-bytes"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
			return err
		},
	}
}
