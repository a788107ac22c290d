package mediator

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/keyring"
)

// TypeInvitation is the out-of-band invitation type we emit.
const TypeInvitation = didcomm.PrefixHTTPS + "out-of-band/1.1/invitation"

// Handshake protocols offered, in order of preference.
var handshakeProtocols = []string{
	didcomm.PrefixHTTPS + "didexchange/1.1",
	didcomm.PrefixHTTPS + "didexchange/1.0",
	didcomm.PrefixHTTPS + "connections/1.0",
}

// InlineService is an RFC 0434 inline DIDComm service.
type InlineService struct {
	ID              string   `json:"id"`
	Type            string   `json:"type"`
	RecipientKeys   []string `json:"recipientKeys"`
	RoutingKeys     []string `json:"routingKeys"`
	ServiceEndpoint string   `json:"serviceEndpoint"`
}

// Invitation is the mediator's multi-use out-of-band 1.1 invitation.
type Invitation struct {
	Type               string          `json:"@type"`
	ID                 string          `json:"@id"`
	Label              string          `json:"label"`
	Accept             []string        `json:"accept"`
	HandshakeProtocols []string        `json:"handshake_protocols"`
	Services           []InlineService `json:"services"`
}

// newInvitation builds the invitation. Its @id is derived from the
// invitation key so every instance of a deployment gives out the same one
// and any of them recognises it as the parent thread of a request.
func newInvitation(cfg Config, invitationKey ed25519.PublicKey) (Invitation, error) {
	didKey, err := diddoc.DIDKeyFromVerkey(keyring.Verkey(invitationKey))
	if err != nil {
		return Invitation{}, fmt.Errorf("mediator: invitation key: %w", err)
	}
	sum := sha256.Sum256(invitationKey)
	inv := Invitation{
		Type:               TypeInvitation,
		ID:                 uuid.NewSHA1(uuid.NameSpaceURL, sum[:]).String(),
		Label:              cfg.Label,
		Accept:             []string{"didcomm/aip1", "didcomm/aip2;env=rfc19"},
		HandshakeProtocols: handshakeProtocols,
	}
	for i, ep := range cfg.Endpoints {
		inv.Services = append(inv.Services, InlineService{
			ID:              fmt.Sprintf("#inline-%d", i),
			Type:            "did-communication",
			RecipientKeys:   []string{didKey},
			RoutingKeys:     []string{},
			ServiceEndpoint: ep,
		})
	}
	return inv, nil
}

// URL is the invitation as an `oob` URL on the first http(s) endpoint.
func (inv Invitation) URL() string {
	b, _ := json.Marshal(inv) // a struct of strings cannot fail to marshal
	base := httpEndpoint(serviceEndpoints(inv))
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "oob=" + base64.RawURLEncoding.EncodeToString(b)
}

func serviceEndpoints(inv Invitation) []string {
	out := make([]string, len(inv.Services))
	for i, s := range inv.Services {
		out[i] = s.ServiceEndpoint
	}
	return out
}

// InvitationHandler serves GET /invitation: the URL as text/plain, or the
// JSON when the client accepts application/json (how Credo resolves short
// invitation URLs).
func (a *Agent) InvitationHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if acceptsJSON(r.Header.Get("Accept")) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(a.invitation)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, a.invitation.URL())
	})
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "application/json" || mt == "application/didcomm-plain+json") {
			return true
		}
	}
	return false
}
