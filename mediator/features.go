package mediator

import (
	"context"
	"sort"
	"strings"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/record"
)

const (
	typePingResponse = didcomm.PrefixHTTPS + "trust_ping/1.0/ping_response"
	typeDisclose     = didcomm.PrefixHTTPS + "discover-features/1.0/disclose"
	typeDisclosures  = didcomm.PrefixHTTPS + "discover-features/2.0/disclosures"
)

// protocolRoles lists the protocols we implement (exact minor versions)
// and our role in each, for discover-features.
func protocolRoles() map[string][]string {
	p := map[string][]string{
		didcomm.PrefixHTTPS + "didexchange/1.0":            {"responder"},
		didcomm.PrefixHTTPS + "didexchange/1.1":            {"responder"},
		didcomm.PrefixHTTPS + "connections/1.0":            {"invitee", "inviter"},
		didcomm.PrefixHTTPS + "out-of-band/1.1":            {"sender"},
		didcomm.PrefixHTTPS + "coordinate-mediation/1.0":   {"mediator"},
		didcomm.PrefixHTTPS + "routing/1.0":                {"mediator"},
		didcomm.PrefixHTTPS + "trust_ping/1.0":             {"receiver"},
		didcomm.PrefixHTTPS + "discover-features/1.0":      {"responder"},
		didcomm.PrefixHTTPS + "discover-features/2.0":      {"responder"},
		didcomm.PrefixHTTPS + "push-notifications-fcm/1.0": {"notification-sender"},
	}
	for _, pid := range pickup.Protocols() {
		p[pid] = []string{"mediator"}
	}
	return p
}

// matchProtocols returns the sorted PIURIs matching a discover-features
// query, where '*' is a wildcard and the legacy prefix is accepted.
func matchProtocols(query string) []string {
	query = didcomm.NormalizeType(query)
	var out []string
	for pid := range protocolRoles() {
		if wildcardMatch(query, pid) {
			out = append(out, pid)
		}
	}
	sort.Strings(out)
	return out
}

type ping struct {
	ResponseRequested *bool `json:"response_requested"`
}

func (a *Agent) handlePing(ctx context.Context, in *inbound, conn record.Connection) error {
	var p ping
	if err := in.msg.Decode(&p); err != nil {
		return err
	}
	if p.ResponseRequested != nil && !*p.ResponseRequested {
		return nil
	}
	return a.reply(ctx, in, conn, didcomm.ReplyHeader(typePingResponse, in.msg))
}

type query struct {
	Query string `json:"query"`
}

type protocolDescriptor struct {
	PID   string   `json:"pid"`
	Roles []string `json:"roles,omitempty"`
}

type disclose struct {
	didcomm.Header
	Protocols []protocolDescriptor `json:"protocols"`
}

func (a *Agent) handleQuery(ctx context.Context, in *inbound, conn record.Connection) error {
	var q query
	if err := in.msg.Decode(&q); err != nil {
		return err
	}
	roles := protocolRoles()
	d := disclose{Header: didcomm.ReplyHeader(typeDisclose, in.msg), Protocols: []protocolDescriptor{}}
	for _, pid := range matchProtocols(q.Query) {
		d.Protocols = append(d.Protocols, protocolDescriptor{PID: pid, Roles: roles[pid]})
	}
	return a.reply(ctx, in, conn, d)
}

type queries struct {
	Queries []struct {
		FeatureType string `json:"feature-type"`
		Match       string `json:"match"`
	} `json:"queries"`
}

type disclosure struct {
	FeatureType string   `json:"feature-type"`
	ID          string   `json:"id"`
	Roles       []string `json:"roles,omitempty"`
}

type disclosures struct {
	didcomm.Header
	Disclosures []disclosure `json:"disclosures"`
}

func (a *Agent) handleQueries(ctx context.Context, in *inbound, conn record.Connection) error {
	var q queries
	if err := in.msg.Decode(&q); err != nil {
		return err
	}
	roles := protocolRoles()
	d := disclosures{Header: didcomm.ReplyHeader(typeDisclosures, in.msg), Disclosures: []disclosure{}}
	seen := map[string]bool{}
	for _, item := range q.Queries {
		if item.FeatureType != "protocol" {
			continue
		}
		for _, pid := range matchProtocols(item.Match) {
			if !seen[pid] {
				seen[pid] = true
				d.Disclosures = append(d.Disclosures, disclosure{FeatureType: "protocol", ID: pid, Roles: roles[pid]})
			}
		}
	}
	return a.reply(ctx, in, conn, d)
}

// wildcardMatch matches s against a pattern in which '*' stands for any run
// of characters, '/' included (so "https://didcomm.org/*" matches all).
func wildcardMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
