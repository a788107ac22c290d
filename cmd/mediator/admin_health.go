package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
)

func healthcheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "healthcheck",
		Usage: "GET the health endpoint and exit 0 on HTTP 200, non-zero with a one-line reason otherwise (for a container HEALTHCHECK)",
		Description: `Needs no database and no curl in the image. Redirects are not followed and
proxy settings are ignored: the answer must come from the URL itself.

Example:
   mediator healthcheck --url http://127.0.0.1:8080/healthz --timeout 3s

   # Dockerfile
   HEALTHCHECK --interval=15s --timeout=5s CMD ["/usr/local/bin/mediator", "healthcheck"]`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:8080/healthz", EnvVars: []string{"MEDIATOR_HEALTHCHECK_URL"},
				Usage: "`URL` to GET (/healthz: the process serves; /readyz: it also reaches the database)"},
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second, EnvVars: []string{"MEDIATOR_HEALTHCHECK_TIMEOUT"},
				Usage: "give up after `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			u := c.String("url")
			if err := healthcheck(c, u, c.Duration("timeout")); err != nil {
				return fmt.Errorf("unhealthy: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "healthy: %s answered 200\n", u)
			return nil
		},
	}
}

func healthcheck(c *cli.Context, u string, timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("--timeout %v: give a positive duration", timeout)
	}
	req, err := http.NewRequestWithContext(c.Context, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--url %q: %w", u, err)
	}
	client := &http.Client{
		Timeout:       timeout,
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err // names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil
	}
	// The first line of the body, if short and printable, says why (the
	// mediator's /readyz says "database unavailable" and the like).
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	reason := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if reason == "" || strings.ContainsFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return errors.New("GET " + u + ": " + resp.Status + ": " + reason)
}
