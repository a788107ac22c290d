package mediator_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/transport"
)

// packedFor authcrypts a basic message from sender to a recipient verkey:
// what a third party hands the mediator inside a forward.
func packedFor(t *testing.T, sender *peer, recipientVerkey, text string) []byte {
	t.Helper()
	plain, _ := json.Marshal(map[string]any{
		"@type": "https://didcomm.org/basicmessage/1.0/message", "@id": uuid.NewString(), "content": text,
	})
	packed, err := envelope.PackAuthcrypt(plain, sender.key, pubOf(t, recipientVerkey))
	if err != nil {
		t.Fatal(err)
	}
	return packed
}

// anoncrypt packs a plaintext object for one key.
func anoncrypt(t *testing.T, msg any, to ed25519.PublicKey) []byte {
	t.Helper()
	plain, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := envelope.PackAnoncrypt(plain, to)
	if err != nil {
		t.Fatal(err)
	}
	return packed
}

// forwardTo wraps inner in a forward to `to`, anoncrypted to our routing key.
func forwardTo(t *testing.T, e *env, to string, inner []byte) []byte {
	t.Helper()
	return anoncrypt(t, map[string]any{
		"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
		"to": to, "msg": json.RawMessage(inner),
	}, e.routingPub(t))
}

func TestForward(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	key, _ := newVerkey(t)
	if got := e.keylistUpdate(t, p, [2]string{didKeyOf(t, key), "add"}); got[0].Result != "success" {
		t.Fatal(got)
	}
	sender := newPeer(t)
	routing := e.routingPub(t)

	tests := []struct {
		name  string
		build func(inner []byte) []byte
	}{
		{"to base58", func(inner []byte) []byte { return forwardTo(t, e, key, inner) }},
		{"to did:key", func(inner []byte) []byte { return forwardTo(t, e, didKeyOf(t, key), inner) }},
		{"to did:key with fragment", func(inner []byte) []byte {
			dk := didKeyOf(t, key)
			return forwardTo(t, e, dk+"#"+strings.TrimPrefix(dk, "did:key:"), inner)
		}},
		{"msg as a JSON string", func(inner []byte) []byte {
			return anoncrypt(t, map[string]any{"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
				"to": key, "msg": string(inner)}, routing)
		}},
		{"legacy did:sov type", func(inner []byte) []byte {
			return anoncrypt(t, map[string]any{"@type": "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward", "@id": uuid.NewString(),
				"to": key, "msg": json.RawMessage(inner)}, routing)
		}},
		{"without @id", func(inner []byte) []byte {
			return anoncrypt(t, map[string]any{"@type": "https://didcomm.org/routing/1.0/forward",
				"to": key, "msg": json.RawMessage(inner)}, routing)
		}},
		{"authcrypted by the sender", func(inner []byte) []byte {
			plain, _ := json.Marshal(map[string]any{"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString(),
				"to": key, "msg": json.RawMessage(inner)})
			packed, err := envelope.PackAuthcrypt(plain, sender.key, routing)
			if err != nil {
				t.Fatal(err)
			}
			return packed
		}},
		{"nested forward to our routing key", func(inner []byte) []byte {
			innerFwd := forwardTo(t, e, key, inner)
			return forwardTo(t, e, e.agent.RoutingVerkey(), innerFwd)
		}},
		{"nested forward to our routing key as did:key, three levels", func(inner []byte) []byte {
			m := forwardTo(t, e, key, inner)
			for range 3 {
				m = forwardTo(t, e, didKeyOf(t, e.agent.RoutingVerkey()), m)
			}
			return m
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := packedFor(t, sender, key, tc.name)
			s := newSession(transport.KindHTTP)
			if err := e.handle(t, tc.build(inner), s); err != nil {
				t.Fatalf("HandleInbound: %v (status %d)", err, httpStatus(err))
			}
			if s.count() != 0 {
				t.Fatal("something was sent back on a forward")
			}
			if n := e.stats(t, p.connID).Count; n != 1 {
				t.Fatalf("queued %d, want 1", n)
			}
			msgs := e.claimAll(t, p.connID)
			if len(msgs) != 1 {
				t.Fatalf("claimed %d", len(msgs))
			}
			if !jsonEqual(msgs[0].Payload, inner) {
				t.Fatalf("queued payload %s\nwant %s", msgs[0].Payload, inner)
			}
			if msgs[0].RecipientKey != key {
				t.Fatalf("queued for %q, want base58 %q", msgs[0].RecipientKey, key)
			}
			if msgs[0].ConnectionID != p.connID {
				t.Fatalf("queued for connection %s", msgs[0].ConnectionID)
			}
			// Clean up for the next case.
			ids := []string{msgs[0].ID}
			if n, err := e.store.Ack(t.Context(), p.connID, ids); err != nil || n != 1 {
				t.Fatal(n, err)
			}
		})
	}
}

// notAPoint returns a base58 32-byte key that is not an Ed25519 point.
func notAPoint(t *testing.T) string {
	t.Helper()
	for i := range 1000 {
		b := make([]byte, 32)
		b[0], b[1] = byte(i), byte(i>>8)
		if _, err := new(edwards25519.Point).SetBytes(b); err != nil {
			return base58.Encode(b)
		}
	}
	t.Fatal("no invalid point found")
	return ""
}

func TestForwardRefused(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	key, _ := newVerkey(t)
	e.keylistUpdate(t, p, [2]string{key, "add"})
	unknown, _ := newVerkey(t)
	sender := newPeer(t)
	inner := packedFor(t, sender, key, "x")
	routing := e.routingPub(t)
	fwd := func(fields map[string]any) []byte {
		m := map[string]any{"@type": "https://didcomm.org/routing/1.0/forward", "@id": uuid.NewString()}
		for k, v := range fields {
			m[k] = v
		}
		return anoncrypt(t, m, routing)
	}
	tooDeep := forwardTo(t, e, key, inner)
	for range 4 {
		tooDeep = forwardTo(t, e, e.agent.RoutingVerkey(), tooDeep)
	}
	tests := []struct {
		name   string
		packed []byte
		status int
	}{
		{"unknown recipient key", forwardTo(t, e, unknown, inner), http.StatusNotFound},
		{"unknown recipient did:key", forwardTo(t, e, didKeyOf(t, unknown), inner), http.StatusNotFound},
		// Not checked to be a point on the way in: no route can hold one.
		{"recipient key not an Ed25519 point", forwardTo(t, e, notAPoint(t), inner), http.StatusNotFound},
		{"missing msg", fwd(map[string]any{"to": key}), http.StatusBadRequest},
		{"null msg", fwd(map[string]any{"to": key, "msg": nil}), http.StatusBadRequest},
		{"msg is a number", fwd(map[string]any{"to": key, "msg": 42}), http.StatusBadRequest},
		{"msg is an array", fwd(map[string]any{"to": key, "msg": []any{1}}), http.StatusBadRequest},
		{"msg string is not JSON", fwd(map[string]any{"to": key, "msg": "hello"}), http.StatusBadRequest},
		{"msg string holds an array", fwd(map[string]any{"to": key, "msg": "[1,2]"}), http.StatusBadRequest},
		{"msg is not UTF-8", fwd(map[string]any{"to": key, "msg": json.RawMessage("{\"a\":\"\xff\xfe\"}")}), http.StatusBadRequest},
		{"missing to", fwd(map[string]any{"msg": json.RawMessage(inner)}), http.StatusBadRequest},
		{"bad to", fwd(map[string]any{"to": "not-a-key", "msg": json.RawMessage(inner)}), http.StatusBadRequest},
		{"to is a number", fwd(map[string]any{"to": 7, "msg": json.RawMessage(inner)}), http.StatusBadRequest},
		{"nested too deeply", tooDeep, http.StatusBadRequest},
		{"nested forward that is not an envelope", forwardTo(t, e, e.agent.RoutingVerkey(), []byte(`{"hello":"world"}`)), http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.handle(t, tc.packed, newSession(transport.KindHTTP))
			if err == nil {
				t.Fatal("HandleInbound succeeded")
			}
			if got := httpStatus(err); got != tc.status {
				t.Fatalf("HTTPStatus() = %d, want %d (err %v)", got, tc.status, err)
			}
			if n := e.stats(t, p.connID).Count; n != 0 {
				t.Fatalf("%d queued", n)
			}
		})
	}
}

func TestMalformedInbound(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	stranger := newPeer(t)
	strangerKey, _ := newVerkey(t)
	unknownPub := pubOf(t, strangerKey)

	authTo := func(plain string, to ed25519.PublicKey) []byte {
		packed, err := envelope.PackAuthcrypt([]byte(plain), p.key, to)
		if err != nil {
			t.Fatal(err)
		}
		return packed
	}
	ping := `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"x"}`
	valid := authTo(ping, p.to)
	var envl map[string]string
	if err := json.Unmarshal(valid, &envl); err != nil {
		t.Fatal(err)
	}
	tweak := func(field, value string) []byte {
		m := map[string]string{}
		for k, v := range envl {
			m[k] = v
		}
		if value == "" {
			delete(m, field)
		} else {
			m[field] = value
		}
		b, _ := json.Marshal(m)
		return b
	}
	flip := func(s string) string {
		b := []byte(s)
		if b[5] == 'A' {
			b[5] = 'B'
		} else {
			b[5] = 'A'
		}
		return string(b)
	}
	strangerToConn, err := envelope.PackAuthcrypt([]byte(ping), stranger.key, p.to)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		packed []byte
	}{
		{"empty body", []byte{}},
		{"not JSON", []byte("hello world")},
		{"JSON array", []byte(`[1,2,3]`)},
		{"empty object", []byte(`{}`)},
		{"plaintext message instead of an envelope", []byte(ping)},
		{"garbage base64", []byte(`{"protected":"!!!not base64!!!","iv":"%%%","ciphertext":"***","tag":"@@@"}`)},
		{"protected is not JSON", tweak("protected", base64.RawURLEncoding.EncodeToString([]byte("nope")))},
		{"missing tag", tweak("tag", "")},
		{"tampered ciphertext", tweak("ciphertext", flip(envl["ciphertext"]))},
		{"tampered tag", tweak("tag", flip(envl["tag"]))},
		{"envelope for an unknown key", authTo(ping, unknownPub)},
		{"anoncrypt non-forward to a connection key", anoncrypt(t, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": "a"}, p.to)},
		{"anoncrypt non-forward to the routing key", anoncrypt(t, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": "a"}, e.routingPub(t))},
		{"anoncrypt handshake to the invitation key", anoncrypt(t, map[string]any{"@type": "https://didcomm.org/didexchange/1.1/request", "@id": "a", "did": p.did}, e.invitationPub(t))},
		{"plaintext is not JSON", authTo("hello", p.to)},
		{"plaintext is a JSON array", authTo(`[{"@type":"https://didcomm.org/trust_ping/1.0/ping"}]`, p.to)},
		{"plaintext without @type", authTo(`{"@id":"x","hello":1}`, p.to)},
		{"plaintext with a DIDComm v2 type", authTo(`{"type":"https://didcomm.org/trust-ping/2.0/ping","id":"x"}`, p.to)},
		{"plaintext with a malformed @type", authTo(`{"@type":"https://didcomm.org/trust_ping/ping","@id":"x"}`, p.to)},
		{"message from an unknown connection", strangerToConn},
		{"non-handshake message to the invitation key", authTo(ping, e.invitationPub(t))},
		{"mediate-request to the routing key", authTo(`{"@type":"https://didcomm.org/coordinate-mediation/1.0/mediate-request","@id":"m"}`, e.routingPub(t))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession(transport.KindHTTP)
			err := e.handle(t, tc.packed, s)
			if err == nil {
				t.Fatal("HandleInbound succeeded")
			}
			if got := httpStatus(err); got != http.StatusBadRequest {
				t.Fatalf("HTTPStatus() = %d, want 400 (err %v)", got, err)
			}
			if n := s.count(); n != 0 {
				t.Fatalf("%d replies sent", n)
			}
			if n := e.stats(t, p.connID).Count; n != 0 {
				t.Fatalf("%d queued", n)
			}
		})
	}
}

func TestUnsupportedMessageType(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	types := []string{
		"https://didcomm.org/basicmessage/1.0/message",
		"https://didcomm.org/coordinate-mediation/1.0/mediate-grant", // one we send, never receive
		"https://didcomm.org/messagepickup/3.0/status-request",
		"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/issue-credential/1.0/offer-credential",
	}
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			id := uuid.NewString()
			r := e.request(t, p, map[string]any{"@type": typ, "@id": id})
			r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
			r.expectThread(t, thid(id))
			if code := r.problemCode(t); code != "unsupported-message-type" {
				t.Fatalf("code %q", code)
			}
		})
	}
	// Problem reports are never answered.
	for _, typ := range []string{
		"https://didcomm.org/report-problem/1.0/problem-report",
		"https://didcomm.org/notification/1.0/problem-report",
		"https://didcomm.org/coordinate-mediation/1.0/problem-report",
		"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/connections/1.0/problem_report",
	} {
		t.Run("answer to "+typ, func(t *testing.T) {
			e.requestNone(t, p, map[string]any{"@type": typ, "@id": uuid.NewString(),
				"description": map[string]string{"code": "x"}, "~thread": map[string]string{"thid": "y"}})
			if n := e.stats(t, p.connID).Count; n != 0 {
				t.Fatalf("%d queued in answer to a problem report", n)
			}
		})
	}
}

// mediator-protocols.md §13: the unsupported-message-type problem report is
// sent "only if return route".
func TestUnsupportedMessageTypeWithoutReturnRoute(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	s := newSession(transport.KindHTTP)
	if err := e.send(t, p, map[string]any{"@type": "https://didcomm.org/basicmessage/1.0/message", "@id": "bm", "content": "hi"}, s); err != nil {
		t.Fatalf("HandleInbound: %v", err)
	}
	if n := s.count(); n != 0 {
		t.Fatalf("%d sent without a return route", n)
	}
	if n := e.stats(t, p.connID).Count; n != 0 {
		t.Fatalf("mediator/agent.go dispatchConnection (unsupported-message-type branch: return a.reply(...)) answers an unsupported message type that had no "+
			"return route by queueing a problem report (%d queued); mediator-protocols.md §13 says to send it only "+
			"with a return route", n)
	}
}

// RFC 0092 / mediator-protocols.md §3: with return_route "thread" only
// messages of return_route_thread may use the inbound transport.
func TestReturnRouteThread(t *testing.T) {
	tests := []struct {
		name       string
		transport  map[string]any
		onSession  bool
		pingThread map[string]any
	}{
		{"thread, implicit own thread", map[string]any{"return_route": "thread"}, true, nil},
		{"thread, explicit matching thread", map[string]any{"return_route": "thread", "return_route_thread": "ping-1"}, true, nil},
		{"thread, explicit other thread", map[string]any{"return_route": "thread", "return_route_thread": "another-thread"}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.connect(t)
			s := newSession(transport.KindWebSocket)
			if err := e.send(t, p, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": "ping-1",
				"~transport": tc.transport}, s); err != nil {
				t.Fatal(err)
			}
			onSession, queued := s.count(), e.stats(t, p.connID).Count
			if tc.onSession {
				if onSession != 1 || queued != 0 {
					t.Fatalf("sent %d, queued %d; want the reply on the session", onSession, queued)
				}
				return
			}
			if onSession != 0 || queued != 1 {
				t.Fatalf("mediator/agent.go reply and conversation use the return route for any "+
					"value other than \"none\" and never call didcomm.Message.AllowsReplyOnThread: a reply on thread ping-1 "+
					"went out on a session opened with return_route_thread \"another-thread\" (sent %d, queued %d; want 0, 1)",
					onSession, queued)
			}
		})
	}
}

// A message on a connection whose fields have the wrong types is refused
// like an unreadable one: a message-parse-failure problem report on the
// return route, else 400; never a server error.
func TestMalformedFieldsRefused(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	for _, tc := range []struct {
		typ   string
		field string
		value any
	}{
		{"https://didcomm.org/messagepickup/2.0/delivery-request", "limit", "ten"},
		{"https://didcomm.org/messagepickup/2.0/messages-received", "message_id_list", "notalist"},
		{"https://didcomm.org/messagepickup/2.0/live-delivery-change", "live_delivery", "yes"},
		{"https://didcomm.org/messagepickup/1.0/batch-pickup", "batch_size", "x"},
		{"https://didcomm.org/discover-features/1.0/query", "query", 7},
		{"https://didcomm.org/discover-features/2.0/queries", "queries", "all"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			id := uuid.NewString()
			r := e.request(t, p, map[string]any{"@type": tc.typ, "@id": id, tc.field: tc.value})
			r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
			r.expectThread(t, thid(id))
			if code := r.problemCode(t); code != "message-parse-failure" {
				t.Fatalf("code %q, want message-parse-failure", code)
			}

			s := newSession(transport.KindHTTP)
			err := e.send(t, p, map[string]any{"@type": tc.typ, "@id": uuid.NewString(), tc.field: tc.value}, s)
			if got := httpStatus(err); got != http.StatusBadRequest {
				t.Fatalf("without a return route: HTTPStatus() = %d, want 400 (err %v)", got, err)
			}
			if n := s.count(); n != 0 {
				t.Fatalf("%d sent without a return route", n)
			}
		})
	}
}
