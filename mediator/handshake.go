package mediator

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hyperledger/aries-framework-go/pkg/didcomm/protocol/decorator"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/record"
)

// DID Exchange problem codes (RFC 0023).
const (
	codeRequestNotAccepted     = "request_not_accepted"
	codeRequestProcessingErr   = "request_processing_error"
	codeNoExistingConnection   = "no_existing_connection"
	typeConnectionsResponse    = didcomm.PrefixHTTPS + "connections/1.0/response"
	typeConnectionsProblem     = didcomm.PrefixHTTPS + "connections/1.0/problem_report"
	typeOOBProblem             = didcomm.PrefixHTTPS + "out-of-band/1.1/problem_report"
	typeHandshakeReuseAccepted = "handshake-reuse-accepted"
)

// signedAttachment is an RFC 0017 attachment carrying signed base64 data.
type signedAttachment struct {
	ID       string                `json:"@id"`
	MimeType string                `json:"mime-type,omitempty"`
	Data     diddoc.AttachmentData `json:"data"`
}

type didExchangeRequest struct {
	Label        string            `json:"label"`
	DID          string            `json:"did"`
	DIDDocAttach *signedAttachment `json:"did_doc~attach"`
}

type didExchangeResponse struct {
	didcomm.Header
	DID             string            `json:"did"`
	DIDDocAttach    *signedAttachment `json:"did_doc~attach,omitempty"`
	DIDRotateAttach *signedAttachment `json:"did_rotate~attach,omitempty"`
}

// handleDIDExchangeRequest answers a DID Exchange 1.0/1.1 request made from
// our invitation. Our response DID uses the same did:peer method variant as
// the requester's (what Credo's own responder does): did:peer:1 with a
// did_doc~attach signed by the invitation key, otherwise did:peer:4 or
// did:peer:2 with a did_rotate~attach signed by the invitation key.
func (a *Agent) handleDIDExchangeRequest(ctx context.Context, in *inbound) error {
	problemType := in.msg.MsgType
	problemType.Name = "problem-report"
	refuse := func(code, text string) error {
		a.log.InfoContext(ctx, "DID Exchange request refused", "code", code, "reason", text)
		return a.replyUnbound(ctx, in, didcomm.NewProblemReport(problemType.URI(), in.msg, code, text, false))
	}
	if pthid := in.msg.ParentThreadID(); pthid != "" && pthid != a.invitation.ID {
		return refuse(codeRequestNotAccepted, "request does not answer this mediator's invitation")
	}
	var req didExchangeRequest
	if err := in.msg.Decode(&req); err != nil {
		return refuse(codeRequestNotAccepted, err.Error())
	}
	theirs, err := resolveRequester(req)
	if err != nil {
		return refuse(codeRequestNotAccepted, err.Error())
	}
	connKey, err := a.keys.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	resp := didExchangeResponse{Header: didcomm.NewHeader(in.msg.MsgType.PIURI() + "/response")}
	resp.Thread = &decorator.Thread{ID: in.msg.ID}
	resp.DID, resp.DIDDocAttach, resp.DIDRotateAttach, err = a.ourDIDExchangeDID(req.DID, publicKey(connKey))
	if err != nil {
		return fmt.Errorf("mediator: DID Exchange response: %w", err)
	}
	conn, err := a.newConnection(ctx, in, theirs, resp.DID, connKey, req.Label)
	if err != nil {
		return err
	}
	a.log.InfoContext(ctx, "DID Exchange response", "connection", conn.ID, "their_did_method", didMethod(theirs.DID), "our_did_method", didMethod(resp.DID))
	return a.reply(ctx, in, conn, resp)
}

func resolveRequester(req didExchangeRequest) (diddoc.Resolved, error) {
	if req.DID == "" {
		return diddoc.Resolved{}, errors.New("request has no did")
	}
	var (
		res diddoc.Resolved
		err error
	)
	if req.DIDDocAttach != nil {
		// The signers must be keys of the attached document itself.
		res, err = diddoc.ResolveSignedDoc(req.DID, req.DIDDocAttach.Data, nil)
	} else {
		res, err = diddoc.ResolveDID(req.DID, nil)
	}
	if err != nil {
		return res, fmt.Errorf("resolve %s: %w", didMethod(req.DID), err)
	}
	if len(res.RecipientKeys) == 0 {
		return res, errors.New("requester's DID document has no DIDComm recipient key")
	}
	return res, nil
}

// ourDIDExchangeDID makes our DID for a new connection and the signed
// attachment that proves it to the requester.
func (a *Agent) ourDIDExchangeDID(theirDID string, pub ed25519.PublicKey) (string, *signedAttachment, *signedAttachment, error) {
	switch {
	case strings.HasPrefix(theirDID, "did:peer:1"):
		did, doc, err := diddoc.NewPeerDID1(pub, a.cfg.Endpoints)
		if err != nil {
			return "", nil, nil, err
		}
		data, err := diddoc.SignAttachment(doc, a.invitationKey)
		if err != nil {
			return "", nil, nil, err
		}
		return did, &signedAttachment{ID: uuid.NewString(), MimeType: "application/json", Data: data}, nil, nil
	case strings.HasPrefix(theirDID, "did:peer:4"):
		did, err := diddoc.NewPeerDID4(pub, a.cfg.Endpoints)
		if err != nil {
			return "", nil, nil, err
		}
		return a.rotated(did)
	default:
		did, err := diddoc.NewPeerDID2(pub, a.cfg.Endpoints)
		if err != nil {
			return "", nil, nil, err
		}
		return a.rotated(did)
	}
}

func (a *Agent) rotated(did string) (string, *signedAttachment, *signedAttachment, error) {
	data, err := diddoc.SignAttachment([]byte(did), a.invitationKey)
	if err != nil {
		return "", nil, nil, err
	}
	return did, nil, &signedAttachment{ID: uuid.NewString(), MimeType: "text/string", Data: data}, nil
}

// newConnection stores the connection made by a handshake request. Their
// key is the one they authcrypted the request with: it is what every later
// message of theirs is sent from.
func (a *Agent) newConnection(ctx context.Context, in *inbound, theirs diddoc.Resolved, ourDID string, ourKey ed25519.PrivateKey, label string) (record.Connection, error) {
	now := time.Now().UTC()
	conn := record.Connection{
		ID:            uuid.NewString(),
		State:         record.StateResponseSent,
		Protocol:      in.msg.MsgType.PIURI(),
		OurDID:        ourDID,
		OurKey:        keyringVerkey(ourKey),
		TheirDID:      theirs.DID,
		TheirKey:      in.theirKey,
		TheirLabel:    label,
		TheirEndpoint: theirs.Endpoint,
		InvitationID:  a.invitation.ID,
		ThreadID:      in.msg.ThreadID(),
		Mediation:     record.MediationNone,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	if !contains(theirs.RecipientKeys, in.theirKey) {
		a.log.InfoContext(ctx, "handshake request sender key is not in the requester's DID document", "their_did_method", didMethod(theirs.DID))
	}
	if err := a.store.InsertConnection(ctx, conn); err != nil {
		return conn, fmt.Errorf("mediator: store connection: %w", err)
	}
	return conn, nil
}

type connectionsRequest struct {
	Label      string `json:"label"`
	Connection struct {
		DID    string          `json:"DID"`
		DIDDoc json.RawMessage `json:"DIDDoc"`
	} `json:"connection"`
}

type connectionsResponse struct {
	didcomm.Header
	ConnectionSig json.RawMessage `json:"connection~sig"`
}

// handleConnectionsRequest answers an RFC 0160 Connections 1.0 request.
func (a *Agent) handleConnectionsRequest(ctx context.Context, in *inbound) error {
	refuse := func(code, text string) error {
		a.log.InfoContext(ctx, "Connections request refused", "code", code, "reason", text)
		return a.replyUnbound(ctx, in, didcomm.NewProblemReport(typeConnectionsProblem, in.msg, code, text, false))
	}
	var req connectionsRequest
	if err := in.msg.Decode(&req); err != nil {
		return refuse(codeRequestNotAccepted, err.Error())
	}
	theirs, err := diddoc.ResolveLegacy(req.Connection.DID, req.Connection.DIDDoc)
	if err != nil {
		return refuse(codeRequestNotAccepted, err.Error())
	}
	connKey, err := a.keys.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	ourDID, ourDoc, err := diddoc.NewLegacyDoc(publicKey(connKey), a.cfg.Endpoints)
	if err != nil {
		return fmt.Errorf("mediator: legacy DID doc: %w", err)
	}
	connJSON, err := json.Marshal(struct {
		DID    string          `json:"DID"`
		DIDDoc json.RawMessage `json:"DIDDoc"`
	}{ourDID, ourDoc})
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	sig, err := diddoc.SignConnection(connJSON, a.invitationKey, time.Now())
	if err != nil {
		return fmt.Errorf("mediator: sign connection: %w", err)
	}
	conn, err := a.newConnection(ctx, in, theirs, ourDID, connKey, req.Label)
	if err != nil {
		return err
	}
	resp := connectionsResponse{Header: didcomm.NewHeader(typeConnectionsResponse), ConnectionSig: sig}
	resp.Thread = &decorator.Thread{ID: in.msg.ID}
	a.log.InfoContext(ctx, "Connections response", "connection", conn.ID)
	return a.reply(ctx, in, conn, resp)
}

// handleReuse answers out-of-band handshake-reuse on an existing connection.
func (a *Agent) handleReuse(ctx context.Context, in *inbound, conn record.Connection) error {
	t := in.msg.MsgType
	t.Name = typeHandshakeReuseAccepted
	h := didcomm.NewHeader(t.URI())
	h.Thread = &decorator.Thread{ID: in.msg.ThreadID(), PID: in.msg.ParentThreadID()}
	return a.reply(ctx, in, conn, h)
}

// handleReuseToInvitationKey handles a reuse sent to the invitation key: it
// is accepted on the sender's existing connection if there is one.
func (a *Agent) handleReuseToInvitationKey(ctx context.Context, in *inbound) error {
	conn, err := a.store.ConnectionByTheirKey(ctx, in.theirKey)
	if errors.Is(err, record.ErrNotFound) {
		return a.replyUnbound(ctx, in, didcomm.NewProblemReport(typeOOBProblem, in.msg, codeNoExistingConnection,
			"no connection exists for the sender of this handshake-reuse", false))
	}
	if err != nil {
		return fmt.Errorf("mediator: reuse lookup: %w", err)
	}
	return a.handleReuse(ctx, in, conn)
}

// replyUnbound answers a message that has no connection (yet): packed from
// the key it was sent to, to its sender, on the return route only.
func (a *Agent) replyUnbound(ctx context.Context, in *inbound, msg any) error {
	if in.session == nil || in.msg.ReturnRoute() == didcomm.ReturnRouteNone {
		return nil
	}
	plain, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	ours, err := a.keys.EnvelopeKey(ctx, in.ourKey)
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	theirs, err := decodeVerkey(in.theirKey)
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	packed, err := envelope.PackAuthcryptWith(plain, ours, theirs)
	if err != nil {
		return fmt.Errorf("mediator: %w", err)
	}
	return in.session.Send(ctx, packed)
}

func didMethod(did string) string {
	parts := strings.SplitN(did, ":", 4)
	switch {
	case len(parts) >= 3 && parts[1] == "peer" && len(parts[2]) > 0:
		return "peer:" + parts[2][:1]
	case len(parts) >= 2 && parts[0] == "did":
		return parts[1]
	default:
		return "unqualified"
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
