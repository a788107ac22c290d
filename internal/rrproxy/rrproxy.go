// Package rrproxy is a round-robin reverse proxy with no stickiness, for
// tests and scripts that run several mediator instances behind one URL the
// way a load balancer would. WebSocket upgrades are proxied too (each socket
// stays on the backend that accepted it).
package rrproxy

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// Proxy spreads requests over backends in turn.
type Proxy struct {
	backends []*httputil.ReverseProxy
	next     atomic.Uint64
}

// New returns a proxy over the backend base URLs.
func New(backends []string) (*Proxy, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("rrproxy: no backends")
	}
	p := &Proxy{}
	for _, b := range backends {
		u, err := url.Parse(b)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("rrproxy: backend %q: not an absolute URL", b)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "backend unavailable: "+err.Error(), http.StatusBadGateway)
		}
		p.backends = append(p.backends, rp)
	}
	return p, nil
}

// ServeHTTP forwards r to the next backend.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := p.next.Add(1) - 1
	p.backends[i%uint64(len(p.backends))].ServeHTTP(w, r)
}
