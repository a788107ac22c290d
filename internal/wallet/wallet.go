// Package wallet is a minimal DIDComm v1 wallet that talks to the mediator
// the way Credo wallets do (DID Exchange 1.1, coordinate-mediation, pickup
// v2, return_route "all"). End-to-end tests and the load generator use it.
package wallet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/envelope"
)

// ContentType is the DIDComm v1 envelope media type.
const ContentType = "application/didcomm-envelope-enc"

// Invitation is the part of an out-of-band invitation a wallet needs.
type Invitation struct {
	ID       string `json:"@id"`
	Services []struct {
		RecipientKeys   []string `json:"recipientKeys"`
		ServiceEndpoint string   `json:"serviceEndpoint"`
	} `json:"services"`
}

// ParseInvitationURL decodes an ?oob= invitation URL.
func ParseInvitationURL(raw string) (Invitation, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return Invitation{}, err
	}
	oob := u.Query().Get("oob")
	if oob == "" {
		return Invitation{}, errors.New("wallet: invitation URL has no oob parameter")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(oob, "="))
	if err != nil {
		return Invitation{}, fmt.Errorf("wallet: oob: %w", err)
	}
	var inv Invitation
	if err := json.Unmarshal(b, &inv); err != nil {
		return Invitation{}, fmt.Errorf("wallet: oob json: %w", err)
	}
	if len(inv.Services) == 0 || len(inv.Services[0].RecipientKeys) == 0 {
		return Invitation{}, errors.New("wallet: invitation has no service")
	}
	return inv, nil
}

// Wallet is one agent with one key and, after Connect, one connection to
// the mediator.
type Wallet struct {
	Label string
	Key   ed25519.PrivateKey
	DID   string
	HTTP  *http.Client

	// Set by Connect.
	Endpoint      string // mediator http endpoint
	WSEndpoint    string // mediator ws endpoint, if offered
	mediatorKey   ed25519.PublicKey
	RoutingKeys   []string // base58, from the grant
	GrantEndpoint string

	envKey atomic.Pointer[envelope.Key] // Key prepared once (EnvelopeKey)
}

// EnvelopeKey is the wallet's Key prepared for packing and opening
// envelopes, made on first use.
func (w *Wallet) EnvelopeKey() (*envelope.Key, error) {
	if k := w.envKey.Load(); k != nil {
		return k, nil
	}
	k, err := envelope.NewKey(w.Key)
	if err != nil {
		return nil, err
	}
	w.envKey.CompareAndSwap(nil, k)
	return w.envKey.Load(), nil
}

// New makes a wallet with a fresh key and a did:peer:2 DID whose service is
// the queue transport (a phone has no inbound endpoint).
func New(label string) (*Wallet, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	did, err := diddoc.NewPeerDID2(priv.Public().(ed25519.PublicKey), []string{"didcomm:transport/queue"})
	if err != nil {
		return nil, err
	}
	return &Wallet{Label: label, Key: priv, DID: did, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Verkey is the wallet's base58 key.
func (w *Wallet) Verkey() string { return base58.Encode(w.Key.Public().(ed25519.PublicKey)) }

// Pack authcrypts a plaintext from the wallet to the mediator.
func (w *Wallet) Pack(msg any) ([]byte, error) {
	plain, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	k, err := w.EnvelopeKey()
	if err != nil {
		return nil, err
	}
	return envelope.PackAuthcryptWith(plain, k, w.mediatorKey)
}

// Unpack opens an envelope addressed to the wallet and parses it.
func (w *Wallet) Unpack(packed []byte) (*didcomm.Message, envelope.Unpacked, error) {
	un, err := w.Open(packed)
	if err != nil {
		return nil, un, err
	}
	m, err := didcomm.Parse(un.Plaintext)
	return m, un, err
}

// Open decrypts an envelope addressed to the wallet.
func (w *Wallet) Open(packed []byte) (envelope.Unpacked, error) {
	k, err := w.EnvelopeKey()
	if err != nil {
		return envelope.Unpacked{}, err
	}
	e, err := envelope.Parse(packed)
	if err != nil {
		return envelope.Unpacked{}, err
	}
	return e.OpenWith(k)
}

// Post sends a packed message over HTTP and returns the packed reply body
// (nil for 202) or an error naming the status.
func (w *Wallet) Post(ctx context.Context, endpoint string, packed []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(packed))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := w.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusAccepted:
		return nil, nil
	default:
		return nil, &StatusError{Code: resp.StatusCode, Body: string(body)}
	}
}

// StatusError is a non-2xx HTTP answer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Request sends msg to the mediator over HTTP with return_route all and
// returns the unpacked reply (nil if the mediator answered 202).
func (w *Wallet) Request(ctx context.Context, msg map[string]any) (*didcomm.Message, error) {
	msg["~transport"] = map[string]any{"return_route": "all"}
	packed, err := w.Pack(msg)
	if err != nil {
		return nil, err
	}
	body, err := w.Post(ctx, w.Endpoint, packed)
	if err != nil || body == nil {
		return nil, err
	}
	m, _, err := w.Unpack(body)
	return m, err
}

// Connect runs DID Exchange 1.1 against the invitation over HTTP.
func (w *Wallet) Connect(ctx context.Context, inv Invitation) error {
	invKey, err := diddoc.VerkeyFromDIDKey(inv.Services[0].RecipientKeys[0])
	if err != nil {
		return err
	}
	invPub, err := base58.Decode(invKey)
	if err != nil {
		return err
	}
	for _, s := range inv.Services {
		switch {
		case strings.HasPrefix(s.ServiceEndpoint, "http") && w.Endpoint == "":
			w.Endpoint = s.ServiceEndpoint
		case strings.HasPrefix(s.ServiceEndpoint, "ws") && w.WSEndpoint == "":
			w.WSEndpoint = s.ServiceEndpoint
		}
	}
	w.mediatorKey = invPub
	reqID := uuid.NewString()
	reply, err := w.Request(ctx, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/request", "@id": reqID,
		"~thread": map[string]any{"pthid": inv.ID},
		"label":   w.Label, "did": w.DID,
	})
	if err != nil {
		return fmt.Errorf("wallet: didexchange request: %w", err)
	}
	if reply == nil || reply.MsgType.Key() != "didexchange/1/response" {
		return fmt.Errorf("wallet: expected a didexchange response, got %v", describe(reply))
	}
	var resp struct {
		DID       string `json:"did"`
		DIDRotate *struct {
			Data diddoc.AttachmentData `json:"data"`
		} `json:"did_rotate~attach"`
	}
	if err := reply.Decode(&resp); err != nil {
		return err
	}
	if resp.DIDRotate == nil {
		return errors.New("wallet: response has no did_rotate~attach")
	}
	payload, signers, err := diddoc.VerifyAttachment(resp.DIDRotate.Data)
	if err != nil {
		return fmt.Errorf("wallet: did_rotate: %w", err)
	}
	if string(payload) != resp.DID || len(signers) != 1 || signers[0] != invKey {
		return fmt.Errorf("wallet: did_rotate not signed by the invitation key")
	}
	res, err := diddoc.ResolvePeerDID(resp.DID, nil)
	if err != nil {
		return fmt.Errorf("wallet: resolve mediator DID: %w", err)
	}
	connKey, err := base58.Decode(res.RecipientKeys[0])
	if err != nil {
		return err
	}
	w.mediatorKey = connKey
	_, err = w.Request(ctx, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/complete", "@id": uuid.NewString(),
		"~thread": map[string]any{"thid": reqID, "pthid": inv.ID},
	})
	return err
}

// RequestMediation sends mediate-request and records the grant.
func (w *Wallet) RequestMediation(ctx context.Context) error {
	reply, err := w.Request(ctx, map[string]any{
		"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": uuid.NewString(),
	})
	if err != nil {
		return err
	}
	if reply == nil || reply.MsgType.Key() != "coordinate-mediation/1/mediate-grant" {
		return fmt.Errorf("wallet: expected mediate-grant, got %v", describe(reply))
	}
	var grant struct {
		Endpoint    string   `json:"endpoint"`
		RoutingKeys []string `json:"routing_keys"`
	}
	if err := reply.Decode(&grant); err != nil {
		return err
	}
	w.GrantEndpoint = grant.Endpoint
	w.RoutingKeys = nil
	for _, k := range grant.RoutingKeys {
		vk, err := diddoc.NormalizeVerkey(k)
		if err != nil {
			return err
		}
		w.RoutingKeys = append(w.RoutingKeys, vk)
	}
	return nil
}

// AddKey registers recipientKey (base58 or did:key) and returns the result.
func (w *Wallet) AddKey(ctx context.Context, recipientKey string) (string, error) {
	reply, err := w.Request(ctx, map[string]any{
		"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-update", "@id": uuid.NewString(),
		"updates": []map[string]string{{"recipient_key": recipientKey, "action": "add"}},
	})
	if err != nil {
		return "", err
	}
	var resp struct {
		Updated []struct {
			Result string `json:"result"`
		} `json:"updated"`
	}
	if reply == nil {
		return "", errors.New("wallet: no keylist-update-response")
	}
	if err := reply.Decode(&resp); err != nil {
		return "", err
	}
	if len(resp.Updated) != 1 {
		return "", fmt.Errorf("wallet: %d results", len(resp.Updated))
	}
	return resp.Updated[0].Result, nil
}

// Delivered is one message handed over by the mediator.
type Delivered struct {
	ID      string
	Payload json.RawMessage
}

// ParseDelivery extracts the attachments of a pickup v2 delivery.
func ParseDelivery(m *didcomm.Message) ([]Delivered, error) {
	var d struct {
		Attach []struct {
			ID   string `json:"@id"`
			Data struct {
				JSON   json.RawMessage `json:"json"`
				Base64 string          `json:"base64"`
			} `json:"data"`
		} `json:"~attach"`
	}
	if err := m.Decode(&d); err != nil {
		return nil, err
	}
	out := make([]Delivered, 0, len(d.Attach))
	for _, a := range d.Attach {
		p := a.Data.JSON
		if len(p) == 0 && a.Data.Base64 != "" {
			b, err := base64.StdEncoding.DecodeString(a.Data.Base64)
			if err != nil {
				return nil, err
			}
			p = b
		}
		out = append(out, Delivered{ID: a.ID, Payload: p})
	}
	return out, nil
}

// PickupHTTP drains the queue with pickup v2 over HTTP: delivery-request,
// then messages-received for each delivery, until a status says 0.
func (w *Wallet) PickupHTTP(ctx context.Context, limit int) ([]Delivered, error) {
	var all []Delivered
	for {
		reply, err := w.Request(ctx, map[string]any{
			"@type": "https://didcomm.org/messagepickup/2.0/delivery-request", "@id": uuid.NewString(), "limit": limit,
		})
		if err != nil {
			return all, err
		}
		if reply == nil {
			return all, errors.New("wallet: no reply to delivery-request")
		}
		switch reply.MsgType.Key() {
		case "messagepickup/2/status":
			return all, nil
		case "messagepickup/2/delivery":
		default:
			return all, fmt.Errorf("wallet: unexpected %s", reply.Type)
		}
		got, err := ParseDelivery(reply)
		if err != nil {
			return all, err
		}
		all = append(all, got...)
		ids := make([]string, len(got))
		for i, d := range got {
			ids[i] = d.ID
		}
		if _, err := w.Request(ctx, map[string]any{
			"@type": "https://didcomm.org/messagepickup/2.0/messages-received", "@id": uuid.NewString(), "message_id_list": ids,
		}); err != nil {
			return all, err
		}
	}
}

// Socket is a WebSocket to the mediator on which replies arrive.
type Socket struct {
	w    *Wallet
	conn *websocket.Conn
	mu   sync.Mutex
}

// DialWS opens a WebSocket to the mediator's ws endpoint.
func (w *Wallet) DialWS(ctx context.Context) (*Socket, error) {
	if w.WSEndpoint == "" {
		return nil, errors.New("wallet: mediator offered no ws endpoint")
	}
	c, _, err := websocket.DefaultDialer.DialContext(ctx, w.WSEndpoint, nil)
	if err != nil {
		return nil, err
	}
	return &Socket{w: w, conn: c}, nil
}

// Send writes msg (with return_route all) as a binary frame, as Credo does.
func (s *Socket) Send(msg map[string]any) error {
	msg["~transport"] = map[string]any{"return_route": "all"}
	packed, err := s.w.Pack(msg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.WriteMessage(websocket.BinaryMessage, packed)
}

// Receive reads and unpacks the next message, waiting at most d.
func (s *Socket) Receive(d time.Duration) (*didcomm.Message, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(d))
	_, b, err := s.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	m, _, err := s.w.Unpack(b)
	return m, err
}

// Close closes the socket.
func (s *Socket) Close() error { return s.conn.Close() }

// Sender packs messages for a mediated recipient and posts forwards.
type Sender struct {
	Key  ed25519.PrivateKey
	HTTP *http.Client
}

// NewSender makes a sender with a fresh key.
func NewSender() (*Sender, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Sender{Key: priv, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Forward authcrypts plaintext to recipientKey, wraps it in a forward for
// the routing key, and POSTs it to endpoint. It returns the inner envelope.
func (s *Sender) Forward(ctx context.Context, endpoint, routingKey, recipientKey string, plaintext []byte) ([]byte, error) {
	inner, outer, err := s.pack(routingKey, recipientKey, plaintext)
	if err != nil {
		return nil, err
	}
	w := &Wallet{HTTP: s.HTTP}
	if _, err := w.Post(ctx, endpoint, outer); err != nil {
		return nil, err
	}
	return inner, nil
}

// PackForward returns the packed forward Forward would post.
func (s *Sender) PackForward(routingKey, recipientKey string, plaintext []byte) ([]byte, error) {
	_, outer, err := s.pack(routingKey, recipientKey, plaintext)
	return outer, err
}

func (s *Sender) pack(routingKey, recipientKey string, plaintext []byte) (inner, outer []byte, err error) {
	rk, err := base58.Decode(recipientKey)
	if err != nil {
		return nil, nil, err
	}
	inner, err = envelope.PackAuthcrypt(plaintext, s.Key, ed25519.PublicKey(rk))
	if err != nil {
		return nil, nil, err
	}
	fwd, err := json.Marshal(map[string]any{
		"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
		"to": recipientKey, "msg": json.RawMessage(inner),
	})
	if err != nil {
		return nil, nil, err
	}
	routing, err := base58.Decode(routingKey)
	if err != nil {
		return nil, nil, err
	}
	outer, err = envelope.PackAnoncrypt(fwd, ed25519.PublicKey(routing))
	return inner, outer, err
}

func describe(m *didcomm.Message) string {
	if m == nil {
		return "no reply"
	}
	return m.Type + " " + string(m.Raw)
}
