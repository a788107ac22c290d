package mediator_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/transport"
)

// signedDocAttach makes a did_doc~attach for doc signed by the given keys.
func signedDocAttach(t *testing.T, doc []byte, signers ...ed25519.PrivateKey) map[string]any {
	t.Helper()
	data, err := diddoc.SignAttachmentMulti(doc, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"@id": uuid.NewString(), "mime-type": "application/json", "data": data}
}

func peer1(t *testing.T, p *peer) (string, []byte) {
	t.Helper()
	did, doc, err := diddoc.NewPeerDID1(p.pub(), []string{"didcomm:transport/queue"})
	if err != nil {
		t.Fatal(err)
	}
	return did, doc
}

type attachment struct {
	ID   string                `json:"@id"`
	Data diddoc.AttachmentData `json:"data"`
}

type exchangeResponse struct {
	DID       string      `json:"did"`
	DocAttach *attachment `json:"did_doc~attach"`
	Rotate    *attachment `json:"did_rotate~attach"`
}

func TestDIDExchangeRequest(t *testing.T) {
	tests := []struct {
		name       string
		version    string // request minor version
		numalgo    string // requester's DID
		wantPrefix string
		wantDoc    bool // did_doc~attach (did:peer:1) instead of did_rotate~attach
	}{
		{name: "1.1 did:peer:2", version: "1.1", numalgo: "2", wantPrefix: "did:peer:2."},
		{name: "1.1 did:peer:4", version: "1.1", numalgo: "4", wantPrefix: "did:peer:4z"},
		{name: "1.1 did:peer:1", version: "1.1", numalgo: "1", wantPrefix: "did:peer:1z", wantDoc: true},
		{name: "1.0 did:peer:2", version: "1.0", numalgo: "2", wantPrefix: "did:peer:2."},
		{name: "1.0 did:peer:1", version: "1.0", numalgo: "1", wantPrefix: "did:peer:1z", wantDoc: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			p := newPeer(t)
			p.to = e.invitationPub(t)
			reqID := uuid.NewString()
			req := map[string]any{
				"@type": "https://didcomm.org/didexchange/" + tc.version + "/request", "@id": reqID,
				"~thread": map[string]any{"pthid": e.agent.Invitation().ID},
				"label":   "Alice's phone",
			}
			switch tc.numalgo {
			case "1":
				did, doc := peer1(t, p)
				p.did = did
				req["did_doc~attach"] = signedDocAttach(t, doc, p.key)
			case "4":
				did, err := diddoc.NewPeerDID4(p.pub(), []string{"didcomm:transport/queue"})
				if err != nil {
					t.Fatal(err)
				}
				p.did = did
			}
			req["did"] = p.did

			r := e.request(t, p, req)
			r.expectType(t, "https://didcomm.org/didexchange/"+tc.version+"/response")
			r.expectThread(t, thid(reqID))
			var resp exchangeResponse
			r.decode(t, &resp)
			if !strings.HasPrefix(resp.DID, tc.wantPrefix) {
				t.Fatalf("response did %q, want prefix %q", resp.DID, tc.wantPrefix)
			}

			var res diddoc.Resolved
			var err error
			if tc.wantDoc {
				if resp.Rotate != nil {
					t.Errorf("did:peer:1 response also has did_rotate~attach")
				}
				if resp.DocAttach == nil {
					t.Fatal("did:peer:1 response has no did_doc~attach")
				}
				payload, signers, err := diddoc.VerifyAttachment(resp.DocAttach.Data)
				if err != nil {
					t.Fatalf("did_doc~attach does not verify: %v", err)
				}
				if !reflect.DeepEqual(signers, []string{e.agent.InvitationVerkey()}) {
					t.Fatalf("did_doc~attach signers %v, want the invitation key %s", signers, e.agent.InvitationVerkey())
				}
				if res, err = diddoc.ResolvePeerDID(resp.DID, payload); err != nil {
					t.Fatalf("resolve response did:peer:1 with its document: %v", err)
				}
				// What Credo checks: signed by a key of the document or an invitation key.
				if _, err := diddoc.ResolveSignedDoc(resp.DID, resp.DocAttach.Data, []string{e.agent.Invitation().Services[0].RecipientKeys[0]}); err != nil {
					t.Fatalf("ResolveSignedDoc: %v", err)
				}
			} else {
				if resp.DocAttach != nil {
					t.Errorf("response has an unexpected did_doc~attach")
				}
				if resp.Rotate == nil {
					t.Fatal("response has no did_rotate~attach")
				}
				payload, signers, err := diddoc.VerifyAttachment(resp.Rotate.Data)
				if err != nil {
					t.Fatalf("did_rotate~attach does not verify: %v", err)
				}
				if string(payload) != resp.DID {
					t.Fatalf("did_rotate payload %q, want the response did %q", payload, resp.DID)
				}
				if !reflect.DeepEqual(signers, []string{e.agent.InvitationVerkey()}) {
					t.Fatalf("did_rotate signers %v, want the invitation key %s", signers, e.agent.InvitationVerkey())
				}
				if _, err := diddoc.VerifyDIDRotate(resp.DID, resp.Rotate.Data, e.agent.Invitation().Services[0].RecipientKeys); err != nil {
					t.Fatalf("VerifyDIDRotate: %v", err)
				}
				if res, err = diddoc.ResolvePeerDID(resp.DID, nil); err != nil {
					t.Fatalf("resolve response did: %v", err)
				}
			}
			if !reflect.DeepEqual(res.Endpoints, e.cfg.Endpoints) {
				t.Errorf("our DID's endpoints %v, want %v", res.Endpoints, e.cfg.Endpoints)
			}
			if len(res.RecipientKeys) != 1 {
				t.Fatalf("our DID has recipient keys %v", res.RecipientKeys)
			}
			ourKey := res.RecipientKeys[0]
			if ourKey == e.agent.InvitationVerkey() || ourKey == e.agent.RoutingVerkey() {
				t.Fatal("the connection reuses a deployment key")
			}
			if r.sender != ourKey {
				t.Errorf("response packed from %s, want the new connection key %s", r.sender, ourKey)
			}

			conn, err := e.store.ConnectionByKeys(ctx, ourKey, p.verkey)
			if err != nil {
				t.Fatalf("connection not stored: %v", err)
			}
			want := record.Connection{
				ID: conn.ID, State: record.StateResponseSent,
				Protocol: "https://didcomm.org/didexchange/" + tc.version,
				OurDID:   resp.DID, OurKey: ourKey, TheirDID: p.did, TheirKey: p.verkey,
				TheirLabel: "Alice's phone", TheirEndpoint: "didcomm:transport/queue",
				InvitationID: e.agent.Invitation().ID, ThreadID: reqID, Mediation: record.MediationNone,
				CreatedAt: conn.CreatedAt, UpdatedAt: conn.UpdatedAt,
			}
			if !reflect.DeepEqual(conn, want) {
				t.Fatalf("stored connection\n got %+v\nwant %+v", conn, want)
			}

			// complete → completed, nothing sent back.
			p.to = pubOf(t, ourKey)
			e.requestNone(t, p, map[string]any{
				"@type": "https://didcomm.org/didexchange/" + tc.version + "/complete", "@id": uuid.NewString(),
				"~thread": map[string]any{"thid": reqID, "pthid": e.agent.Invitation().ID},
			})
			if got := e.conn(t, conn.ID).State; got != record.StateCompleted {
				t.Fatalf("state after complete = %q, want %q", got, record.StateCompleted)
			}
			// The connection now works.
			pingID := uuid.NewString()
			pr := e.request(t, p, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": pingID})
			pr.expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
			pr.expectThread(t, thid(pingID))
		})
	}
}

func TestDIDExchangeRequestWithoutPthid(t *testing.T) {
	e := newEnv(t)
	p := newPeer(t)
	p.to = e.invitationPub(t)
	r := e.request(t, p, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/request", "@id": "req-no-pthid", "label": "x", "did": p.did,
	})
	r.expectType(t, "https://didcomm.org/didexchange/1.1/response")
	r.expectThread(t, thid("req-no-pthid"))
}

func TestDIDExchangeRefused(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, e *env, p *peer, req map[string]any)
		pthid string // "" = the invitation's
	}{
		{name: "wrong pthid", pthid: "not-this-invitation", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			req["did"] = p.did
		}},
		{name: "no did", build: func(t *testing.T, e *env, p *peer, req map[string]any) {}},
		{name: "unsupported DID method", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			req["did"] = "did:web:wallet.example"
		}},
		{name: "malformed did:peer:2", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			req["did"] = "did:peer:2.Vz6Mkgarbage"
		}},
		{name: "did:peer:1 without did_doc~attach", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			req["did"], _ = peer1(t, p)
		}},
		{name: "unsigned did_doc~attach", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			did, doc := peer1(t, p)
			req["did"] = did
			req["did_doc~attach"] = map[string]any{"@id": "a", "mime-type": "application/json",
				"data": map[string]any{"base64": base64.StdEncoding.EncodeToString(doc)}}
		}},
		{name: "did_doc~attach payload altered after signing", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			did, doc := peer1(t, p)
			att := signedDocAttach(t, doc, p.key)
			data := att["data"].(diddoc.AttachmentData)
			altered := strings.Replace(string(doc), "didcomm:transport/queue", "https://evil.example/inbox", 1)
			data.Base64 = base64.StdEncoding.EncodeToString([]byte(altered))
			att["data"] = data
			req["did"] = did
			req["did_doc~attach"] = att
		}},
		{name: "did_doc~attach signature altered", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			did, doc := peer1(t, p)
			att := signedDocAttach(t, doc, p.key)
			data := att["data"].(diddoc.AttachmentData)
			var jws map[string]any
			if err := json.Unmarshal(data.JWS, &jws); err != nil {
				t.Fatal(err)
			}
			sig := []byte(jws["signature"].(string))
			if sig[3] == 'A' {
				sig[3] = 'B'
			} else {
				sig[3] = 'A'
			}
			jws["signature"] = string(sig)
			data.JWS, _ = json.Marshal(jws)
			att["data"] = data
			req["did"] = did
			req["did_doc~attach"] = att
		}},
		{name: "did_doc~attach of another DID", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			did, _ := peer1(t, p)
			other := newPeer(t)
			_, otherDoc := peer1(t, other)
			req["did"] = did
			req["did_doc~attach"] = signedDocAttach(t, otherDoc, other.key)
		}},
		{name: "unqualified did without document", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			req["did"] = base58.Encode(p.pub()[:16])
		}},
		{name: "did is not a string", build: func(t *testing.T, e *env, p *peer, req map[string]any) {
			req["did"] = 42
		}},
	}
	for _, tc := range tests {
		for _, version := range []string{"1.1", "1.0"} {
			t.Run(tc.name+" "+version, func(t *testing.T) {
				ctx := context.Background()
				e := newEnv(t)
				p := newPeer(t)
				p.to = e.invitationPub(t)
				pthid := tc.pthid
				if pthid == "" {
					pthid = e.agent.Invitation().ID
				}
				reqID := uuid.NewString()
				req := map[string]any{
					"@type": "https://didcomm.org/didexchange/" + version + "/request", "@id": reqID,
					"~thread": map[string]any{"pthid": pthid}, "label": "x",
				}
				tc.build(t, e, p, req)

				// Without a return route: silently dropped.
				s := newSession(transport.KindHTTP)
				if err := e.send(t, p, req, s); err != nil {
					t.Fatalf("HandleInbound without return route: %v", err)
				}
				if s.count() != 0 {
					t.Fatalf("problem report sent without a return route")
				}

				r := e.request(t, p, req)
				r.expectType(t, "https://didcomm.org/didexchange/"+version+"/problem-report")
				r.expectThread(t, `{"thid":"`+reqID+`","pthid":"`+pthid+`"}`)
				if code := r.problemCode(t); code != "request_not_accepted" {
					t.Fatalf("problem code %q, want request_not_accepted", code)
				}
				if r.sender != e.agent.InvitationVerkey() {
					t.Fatalf("problem report packed from %s, want the invitation key", r.sender)
				}
				if _, err := e.store.ConnectionByTheirKey(ctx, p.verkey); !errors.Is(err, record.ErrNotFound) {
					t.Fatalf("a refused request stored a connection (err %v)", err)
				}
				keys, err := e.store.KeysByPurpose(ctx, record.PurposeConnection)
				if err != nil || len(keys) != 0 {
					t.Fatalf("a refused request created %d connection keys (%v)", len(keys), err)
				}
			})
		}
	}
}

// A did_doc~attach must be signed by a key of the requester's own document
// (RFC 0023; Credo's DidExchangeProtocol checks the signer against the
// document's keys). A valid signature by an unrelated key proves nothing.
func TestDIDExchangeDocSignedByForeignKey(t *testing.T) {
	e := newEnv(t)
	p := newPeer(t)
	p.to = e.invitationPub(t)
	_, stranger := newVerkey(t)
	did, doc := peer1(t, p)
	reqID := uuid.NewString()
	s := newSession(transport.KindHTTP)
	err := e.send(t, p, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/request", "@id": reqID,
		"~thread": map[string]any{"pthid": e.agent.Invitation().ID}, "label": "x",
		"did": did, "did_doc~attach": signedDocAttach(t, doc, stranger),
		"~transport": map[string]any{"return_route": "all"},
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	sent := s.drain()
	if len(sent) != 1 {
		t.Fatalf("%d replies", len(sent))
	}
	r := p.open(t, sent[0])
	if r.msg.Type != "https://didcomm.org/didexchange/1.1/problem-report" {
		t.Fatalf("a did_doc~attach signed only by a key outside the document was accepted: got %s, want a problem report", r.msg.Type)
	}
	if code := r.problemCode(t); code != "request_not_accepted" {
		t.Fatalf("code %q", code)
	}
}

func TestDIDExchangeRequestToConnectionKeyIsNotAHandshake(t *testing.T) {
	// A request sent on an existing connection is not a new handshake.
	e := newEnv(t)
	p := e.connect(t)
	s := newSession(transport.KindHTTP)
	err := e.send(t, p, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/request", "@id": uuid.NewString(), "did": p.did,
		"~transport": map[string]any{"return_route": "all"},
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	sent := s.drain()
	if len(sent) != 1 {
		t.Fatalf("%d replies, want 1 problem report", len(sent))
	}
	r := p.open(t, sent[0])
	r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
	if code := r.problemCode(t); code != "unsupported-message-type" {
		t.Fatalf("code %q", code)
	}
}

// legacyConnection builds an unqualified DID and DIDDoc exactly like
// Credo's ConnectionService.createDidDoc.
func legacyConnection(t *testing.T, p *peer) (string, map[string]any) {
	t.Helper()
	did := base58.Encode(p.pub()[:16])
	doc := map[string]any{
		"@context": "https://w3id.org/did/v1",
		"publicKey": []any{map[string]any{
			"id": did + "#1", "controller": did, "type": "Ed25519VerificationKey2018", "publicKeyBase58": p.verkey,
		}},
		"service": []any{map[string]any{
			"id": did + "#IndyAgentService-1", "serviceEndpoint": "didcomm:transport/queue", "type": "IndyAgent",
			"priority": 0, "recipientKeys": []string{p.verkey}, "routingKeys": []string{},
		}},
		"authentication": []any{map[string]any{"publicKey": did + "#1", "type": "Ed25519SignatureAuthentication2018"}},
		"id":             did,
	}
	return did, doc
}

func TestConnectionsRequest(t *testing.T) {
	for _, prefix := range []string{"https://didcomm.org/", "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/"} {
		t.Run(prefix, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			p := newPeer(t)
			p.to = e.invitationPub(t)
			did, doc := legacyConnection(t, p)
			p.did = did
			reqID := uuid.NewString()
			before := time.Now().Add(-time.Second)
			r := e.request(t, p, map[string]any{
				"@type": prefix + "connections/1.0/request", "@id": reqID, "label": "Bifold",
				"connection": map[string]any{"DID": did, "DIDDoc": doc},
			})
			r.expectType(t, "https://didcomm.org/connections/1.0/response")
			r.expectThread(t, thid(reqID))
			sig := r.fields["connection~sig"]
			connJSON, signer, err := diddoc.VerifyConnection(sig)
			if err != nil {
				t.Fatalf("connection~sig does not verify: %v", err)
			}
			if signer != e.agent.InvitationVerkey() {
				t.Fatalf("connection~sig signer %s, want the invitation key %s", signer, e.agent.InvitationVerkey())
			}
			if ts, err := diddoc.ConnectionSigTime(sig); err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
				t.Errorf("connection~sig time %v (%v), want now", ts, err)
			}
			res, err := diddoc.ParseLegacyConnection(connJSON)
			if err != nil {
				t.Fatalf("signed connection does not resolve: %v", err)
			}
			if len(res.RecipientKeys) != 1 || res.Endpoint != e.cfg.Endpoints[0] {
				t.Fatalf("our legacy doc: keys %v, endpoint %q", res.RecipientKeys, res.Endpoint)
			}
			ourKey := res.RecipientKeys[0]
			if r.sender != ourKey {
				t.Errorf("response packed from %s, want %s", r.sender, ourKey)
			}
			if want := base58.Encode(pubOf(t, ourKey)[:16]); res.DID != want {
				t.Errorf("our DID %q, want the unqualified %q", res.DID, want)
			}
			conn, err := e.store.ConnectionByKeys(ctx, ourKey, p.verkey)
			if err != nil {
				t.Fatal(err)
			}
			if conn.State != record.StateResponseSent || conn.Protocol != "https://didcomm.org/connections/1.0" ||
				conn.TheirDID != did || conn.OurDID != res.DID || conn.TheirLabel != "Bifold" ||
				conn.TheirEndpoint != "didcomm:transport/queue" || conn.ThreadID != reqID {
				t.Fatalf("stored connection %+v", conn)
			}
			// Credo's trust ping without a response request completes it.
			p.to = pubOf(t, ourKey)
			e.requestNone(t, p, map[string]any{
				"@type": prefix + "trust_ping/1.0/ping", "@id": uuid.NewString(), "response_requested": false,
			})
			if got := e.conn(t, conn.ID).State; got != record.StateCompleted {
				t.Fatalf("state after ping = %q, want completed", got)
			}
		})
	}
}

func TestConnectionsRequestRefused(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, p *peer) map[string]any
	}{
		{"no connection", func(t *testing.T, p *peer) map[string]any { return map[string]any{} }},
		{"no DIDDoc", func(t *testing.T, p *peer) map[string]any {
			did, _ := legacyConnection(t, p)
			return map[string]any{"DID": did}
		}},
		{"DIDDoc id of another DID", func(t *testing.T, p *peer) map[string]any {
			did, doc := legacyConnection(t, p)
			doc["id"] = "Th7MpTaRZVRYnPiabds81Y"
			return map[string]any{"DID": did, "DIDDoc": doc}
		}},
		{"DIDDoc without keys", func(t *testing.T, p *peer) map[string]any {
			did := base58.Encode(p.pub()[:16])
			return map[string]any{"DID": did, "DIDDoc": map[string]any{"@context": "https://w3id.org/did/v1", "id": did}}
		}},
		{"qualified non-sov DID", func(t *testing.T, p *peer) map[string]any {
			_, doc := legacyConnection(t, p)
			delete(doc, "id")
			return map[string]any{"DID": "did:web:example.com", "DIDDoc": doc}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := newPeer(t)
			p.to = e.invitationPub(t)
			reqID := uuid.NewString()
			r := e.request(t, p, map[string]any{
				"@type": "https://didcomm.org/connections/1.0/request", "@id": reqID, "label": "x",
				"connection": tc.build(t, p),
			})
			r.expectType(t, "https://didcomm.org/connections/1.0/problem_report")
			r.expectThread(t, thid(reqID))
			if code := r.problemCode(t); code != "request_not_accepted" {
				t.Fatalf("code %q", code)
			}
			if _, err := e.store.ConnectionByTheirKey(context.Background(), p.verkey); !errors.Is(err, record.ErrNotFound) {
				t.Fatalf("refused request stored a connection (%v)", err)
			}
		})
	}
}

func TestHandshakeReuse(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	invID := e.agent.Invitation().ID

	// On the connection.
	r := e.request(t, p, map[string]any{
		"@type": "https://didcomm.org/out-of-band/1.1/handshake-reuse", "@id": "reuse-1",
		"~thread": map[string]any{"thid": "reuse-1", "pthid": invID},
	})
	r.expectType(t, "https://didcomm.org/out-of-band/1.1/handshake-reuse-accepted")
	r.expectThread(t, `{"thid":"reuse-1","pthid":"`+invID+`"}`)

	// To the invitation key, from a known sender: answered on its connection.
	p2 := *p
	p2.to = e.invitationPub(t)
	r = e.request(t, &p2, map[string]any{
		"@type": "https://didcomm.org/out-of-band/1.1/handshake-reuse", "@id": "reuse-2",
		"~thread": map[string]any{"thid": "reuse-2", "pthid": invID},
	})
	r.expectType(t, "https://didcomm.org/out-of-band/1.1/handshake-reuse-accepted")
	r.expectThread(t, `{"thid":"reuse-2","pthid":"`+invID+`"}`)
	if r.sender != p.ourKey {
		t.Fatalf("reuse accepted packed from %s, want the connection key %s", r.sender, p.ourKey)
	}

	// From an unknown sender: OOB problem report.
	stranger := newPeer(t)
	stranger.to = e.invitationPub(t)
	r = e.request(t, stranger, map[string]any{
		"@type": "https://didcomm.org/out-of-band/1.1/handshake-reuse", "@id": "reuse-3",
		"~thread": map[string]any{"thid": "reuse-3", "pthid": invID},
	})
	r.expectType(t, "https://didcomm.org/out-of-band/1.1/problem_report")
	if code := r.problemCode(t); code != "no_existing_connection" {
		t.Fatalf("code %q", code)
	}
}

func TestInvitation(t *testing.T) {
	e := newEnv(t)
	inv := e.agent.Invitation()
	if inv.Type != "https://didcomm.org/out-of-band/1.1/invitation" {
		t.Fatalf("type %q", inv.Type)
	}
	if len(inv.Services) != len(e.cfg.Endpoints) {
		t.Fatalf("%d services", len(inv.Services))
	}
	wantKey := didKeyOf(t, e.agent.InvitationVerkey())
	for i, s := range inv.Services {
		if s.ServiceEndpoint != e.cfg.Endpoints[i] || !reflect.DeepEqual(s.RecipientKeys, []string{wantKey}) ||
			s.RoutingKeys == nil || len(s.RoutingKeys) != 0 || s.Type != "did-communication" {
			t.Errorf("service %d = %+v", i, s)
		}
	}
	wantHP := []string{"https://didcomm.org/didexchange/1.1", "https://didcomm.org/didexchange/1.0", "https://didcomm.org/connections/1.0"}
	if !reflect.DeepEqual(inv.HandshakeProtocols, wantHP) {
		t.Errorf("handshake_protocols %v", inv.HandshakeProtocols)
	}
	// Same keys → same invitation id (every instance hands out the same one).
	a2, err := mediator.New(context.Background(), e.cfg, e.store, e.store, e.keys, e.pickup)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Invitation().ID != inv.ID || a2.InvitationVerkey() != e.agent.InvitationVerkey() || a2.RoutingVerkey() != e.agent.RoutingVerkey() {
		t.Fatal("a second agent on the same store has another identity")
	}
	if newEnv(t).agent.Invitation().ID == inv.ID {
		t.Fatal("two deployments share an invitation id")
	}
	if _, err := mediator.New(context.Background(), mediator.Config{}, e.store, e.store, e.keys, e.pickup); err == nil {
		t.Fatal("New without endpoints succeeded")
	}
}
