package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openmediator/mediator/internal/wallet"
)

// Target is one mediator (or load balancer) the generator talks to.
type Target struct {
	// URL is what was given: an invitation URL or a base URL.
	URL        string            `json:"url"`
	HTTP       string            `json:"http"`
	WS         string            `json:"ws,omitempty"`
	Invitation wallet.Invitation `json:"-"`
}

// ResolveTarget turns an invitation URL (with ?oob=) or a base URL whose
// GET /invitation answers into a Target.
func ResolveTarget(ctx context.Context, client *http.Client, raw string) (Target, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return Target{}, fmt.Errorf("loadgen: target %q: not an absolute URL", raw)
	}
	invURL := raw
	if u.Query().Get("oob") == "" {
		invURL, err = fetchInvitation(ctx, client, strings.TrimRight(raw, "/")+"/invitation")
		if err != nil {
			return Target{}, fmt.Errorf("loadgen: target %q: %w", raw, err)
		}
	}
	inv, err := wallet.ParseInvitationURL(invURL)
	if err != nil {
		return Target{}, fmt.Errorf("loadgen: target %q: %w", raw, err)
	}
	t := Target{URL: raw, Invitation: inv}
	for _, s := range inv.Services {
		switch {
		case t.HTTP == "" && (strings.HasPrefix(s.ServiceEndpoint, "http://") || strings.HasPrefix(s.ServiceEndpoint, "https://")):
			t.HTTP = s.ServiceEndpoint
		case t.WS == "" && (strings.HasPrefix(s.ServiceEndpoint, "ws://") || strings.HasPrefix(s.ServiceEndpoint, "wss://")):
			t.WS = s.ServiceEndpoint
		}
	}
	if t.HTTP == "" {
		return Target{}, fmt.Errorf("loadgen: target %q: the invitation offers no http(s) endpoint", raw)
	}
	return t, nil
}

func fetchInvitation(ctx context.Context, client *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET /invitation: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET /invitation: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /invitation: HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), nil
}

// resolveTargets resolves every target. With direct, each target's own
// URL (without query) is used as its http endpoint, and the same URL with a
// ws(s) scheme as its ws endpoint, instead of the endpoints its invitation
// advertises: that reaches individual instances that advertise their load
// balancer's URL.
func resolveTargets(ctx context.Context, client *http.Client, raws []string, direct bool) ([]Target, error) {
	if len(raws) == 0 {
		return nil, fmt.Errorf("loadgen: at least one target is required")
	}
	out := make([]Target, 0, len(raws))
	for _, r := range raws {
		t, err := ResolveTarget(ctx, client, r)
		if err != nil {
			return nil, err
		}
		if direct {
			u, _ := url.Parse(strings.TrimSpace(r)) // parsed once already
			u.RawQuery, u.Fragment = "", ""
			t.HTTP = u.String()
			switch u.Scheme {
			case "https":
				u.Scheme = "wss"
			default:
				u.Scheme = "ws"
			}
			t.WS = u.String()
		}
		out = append(out, t)
	}
	return out, nil
}

// NewHTTPClient returns a client whose transport keeps up to idlePerHost
// connections alive per host, so that every sender and poller reuses its
// connection instead of paying a TCP handshake per request.
func NewHTTPClient(idlePerHost int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // loopback and lab targets: never through a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no global limit
		MaxIdleConnsPerHost: max(idlePerHost, 2),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
