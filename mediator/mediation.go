package mediator

import (
	"context"
	"fmt"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/record"
)

// Coordinate-mediation 1.0 (RFC 0211) message types we send.
const (
	typeMediateGrant          = didcomm.PrefixHTTPS + "coordinate-mediation/1.0/mediate-grant"
	typeMediateDeny           = didcomm.PrefixHTTPS + "coordinate-mediation/1.0/mediate-deny"
	typeKeylistUpdateResponse = didcomm.PrefixHTTPS + "coordinate-mediation/1.0/keylist-update-response"
	typeKeylist               = didcomm.PrefixHTTPS + "coordinate-mediation/1.0/keylist"
)

// Keylist-update results (RFC 0211).
const (
	resultSuccess     = "success"
	resultNoChange    = "no_change"
	resultClientError = "client_error"
	resultServerError = "server_error"
)

// maxKeylistUpdates bounds one keylist-update so a single message cannot
// hold the store for long.
const maxKeylistUpdates = 1000

type mediateGrant struct {
	didcomm.Header
	Endpoint    string   `json:"endpoint"`
	RoutingKeys []string `json:"routing_keys"`
}

func (a *Agent) handleMediateRequest(ctx context.Context, in *inbound, conn record.Connection) error {
	conn, err := a.freshConnection(ctx, conn)
	if err != nil {
		return err
	}
	if conn.Mediation != record.MediationGranted {
		if !a.cfg.AutoGrant {
			if err := a.store.SetMediationState(ctx, conn.ID, record.MediationDenied); err != nil {
				return fmt.Errorf("mediator: deny mediation: %w", err)
			}
			a.log.InfoContext(ctx, "mediation denied by policy", "connection", conn.ID)
			return a.reply(ctx, in, conn, didcomm.ReplyHeader(typeMediateDeny, in.msg))
		}
		if err := a.store.SetMediationState(ctx, conn.ID, record.MediationGranted); err != nil {
			return fmt.Errorf("mediator: grant mediation: %w", err)
		}
		a.log.InfoContext(ctx, "mediation granted", "connection", conn.ID, "label", clip(conn.TheirLabel, maxLogTypeLen))
	}
	// A repeated request on a granted connection gets the same grant again:
	// wallets re-provision after losing their data.
	routingKey, err := diddoc.DIDKeyFromVerkey(a.RoutingVerkey())
	if err != nil {
		return fmt.Errorf("mediator: routing key: %w", err)
	}
	grant := mediateGrant{
		Header:      didcomm.ReplyHeader(typeMediateGrant, in.msg),
		Endpoint:    httpEndpoint(a.cfg.Endpoints),
		RoutingKeys: []string{routingKey},
	}
	return a.reply(ctx, in, conn, grant)
}

type keylistUpdate struct {
	Updates []struct {
		RecipientKey string `json:"recipient_key"`
		Action       string `json:"action"`
	} `json:"updates"`
}

type keylistUpdated struct {
	RecipientKey string `json:"recipient_key"`
	Action       string `json:"action"`
	Result       string `json:"result"`
}

type keylistUpdateResponse struct {
	didcomm.Header
	Updated []keylistUpdated `json:"updated"`
}

func (a *Agent) handleKeylistUpdate(ctx context.Context, in *inbound, conn record.Connection) error {
	conn, err := a.freshConnection(ctx, conn)
	if err != nil {
		return err
	}
	if conn.Mediation != record.MediationGranted {
		return a.notGranted(ctx, in, conn)
	}
	var req keylistUpdate
	if err := in.msg.Decode(&req); err != nil {
		return a.reply(ctx, in, conn, didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg,
			"message-parse-failure", err.Error(), false))
	}
	if len(req.Updates) > maxKeylistUpdates {
		return a.reply(ctx, in, conn, didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg,
			"request_not_accepted", fmt.Sprintf("at most %d updates per message", maxKeylistUpdates), false))
	}
	resp := keylistUpdateResponse{Header: didcomm.ReplyHeader(typeKeylistUpdateResponse, in.msg),
		Updated: make([]keylistUpdated, 0, len(req.Updates))}
	for _, u := range req.Updates {
		resp.Updated = append(resp.Updated, keylistUpdated{
			RecipientKey: u.RecipientKey, // echoed in the form received
			Action:       u.Action,
			Result:       a.applyKeylistUpdate(ctx, conn, u.RecipientKey, u.Action),
		})
	}
	return a.reply(ctx, in, conn, resp)
}

func (a *Agent) applyKeylistUpdate(ctx context.Context, conn record.Connection, key, action string) string {
	verkey, err := diddoc.NormalizeVerkey(key)
	if err != nil {
		a.log.InfoContext(ctx, "keylist-update with an invalid key", "connection", conn.ID, "err", err)
		return resultClientError
	}
	switch action {
	case "add":
		res, err := a.store.AddRoute(ctx, conn.ID, verkey)
		if err != nil {
			a.log.ErrorContext(ctx, "keylist add failed", "connection", conn.ID, "err", err)
			return resultServerError
		}
		switch res {
		case record.RouteAdded:
			return resultSuccess
		case record.RouteNoChange:
			return resultNoChange
		case record.RouteNotGranted: // revoked since the check above
			a.log.InfoContext(ctx, "keylist add refused: mediation no longer granted", "connection", conn.ID)
			return resultClientError
		default:
			a.log.WarnContext(ctx, "keylist add refused: key belongs to another connection", "connection", conn.ID, "key", verkey)
			return resultClientError
		}
	case "remove":
		removed, err := a.store.RemoveRoute(ctx, conn.ID, verkey)
		if err != nil {
			a.log.ErrorContext(ctx, "keylist remove failed", "connection", conn.ID, "err", err)
			return resultServerError
		}
		if removed {
			return resultSuccess
		}
		return resultNoChange
	default:
		return resultClientError
	}
}

type keylistQuery struct {
	Paginate *struct {
		Limit  int `json:"limit"`
		Offset int `json:"offset"`
	} `json:"paginate"`
}

type keylistKey struct {
	RecipientKey string `json:"recipient_key"`
}

type pagination struct {
	Count     int `json:"count"`
	Offset    int `json:"offset"`
	Remaining int `json:"remaining"`
}

type keylist struct {
	didcomm.Header
	Keys       []keylistKey `json:"keys"`
	Pagination *pagination  `json:"pagination,omitempty"`
}

// defaultKeylistPage is the page size when the query does not paginate.
const defaultKeylistPage = 1000

func (a *Agent) handleKeylistQuery(ctx context.Context, in *inbound, conn record.Connection) error {
	conn, err := a.freshConnection(ctx, conn)
	if err != nil {
		return err
	}
	if conn.Mediation != record.MediationGranted {
		return a.notGranted(ctx, in, conn)
	}
	var q keylistQuery
	if err := in.msg.Decode(&q); err != nil {
		return a.reply(ctx, in, conn, didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg,
			"message-parse-failure", err.Error(), false))
	}
	limit, offset := defaultKeylistPage, 0
	if q.Paginate != nil {
		if q.Paginate.Limit > 0 && q.Paginate.Limit < limit {
			limit = q.Paginate.Limit
		}
		offset = max(0, q.Paginate.Offset)
	}
	keys, total, err := a.store.Routes(ctx, conn.ID, limit, offset)
	if err != nil {
		return fmt.Errorf("mediator: keylist query: %w", err)
	}
	resp := keylist{Header: didcomm.ReplyHeader(typeKeylist, in.msg), Keys: make([]keylistKey, 0, len(keys))}
	for _, k := range keys {
		dk, err := diddoc.DIDKeyFromVerkey(k)
		if err != nil {
			return fmt.Errorf("mediator: stored key %q: %w", k, err)
		}
		resp.Keys = append(resp.Keys, keylistKey{RecipientKey: dk})
	}
	if q.Paginate != nil {
		resp.Pagination = &pagination{Count: len(keys), Offset: offset, Remaining: max(0, total-offset-len(keys))}
	}
	return a.reply(ctx, in, conn, resp)
}

func (a *Agent) notGranted(ctx context.Context, in *inbound, conn record.Connection) error {
	return a.reply(ctx, in, conn, didcomm.NewProblemReport(didcomm.TypeProblemReport, in.msg,
		"request_not_accepted", "mediation has not been granted on this connection", false))
}
