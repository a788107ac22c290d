package mediator_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"testing"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/transport"
)

func TestTrustPing(t *testing.T) {
	tests := []struct {
		name      string
		extra     map[string]any
		wantReply bool
	}{
		{"response_requested absent", nil, true},
		{"response_requested true", map[string]any{"response_requested": true}, true},
		{"response_requested false", map[string]any{"response_requested": false}, false},
		{"with comment", map[string]any{"comment": "hi", "response_requested": true}, true},
	}
	for _, tc := range tests {
		for _, kind := range []transport.Kind{transport.KindHTTP, transport.KindWebSocket} {
			t.Run(tc.name+" "+string(kind), func(t *testing.T) {
				e := newEnv(t)
				p := e.connect(t)
				pingID := uuid.NewString()
				msg := map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": pingID,
					"~transport": map[string]any{"return_route": "all"}}
				for k, v := range tc.extra {
					msg[k] = v
				}
				s := newSession(kind)
				if err := e.send(t, p, msg, s); err != nil {
					t.Fatal(err)
				}
				sent := s.drain()
				if !tc.wantReply {
					if len(sent) != 0 {
						t.Fatalf("%d replies to a ping without response_requested", len(sent))
					}
					if n := e.stats(t, p.connID).Count; n != 0 {
						t.Fatalf("%d messages queued for a ping without response_requested", n)
					}
					return
				}
				if len(sent) != 1 {
					t.Fatalf("%d replies, want 1", len(sent))
				}
				r := p.open(t, sent[0])
				r.expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
				r.expectThread(t, thid(pingID))
				if r.sender != p.ourKey {
					t.Fatalf("ping_response packed from %s, want %s", r.sender, p.ourKey)
				}
				if n := e.stats(t, p.connID).Count; n != 0 {
					t.Fatalf("reply sent on the return route was also queued (%d)", n)
				}
			})
		}
	}
}

func TestTrustPingLegacyPrefix(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	r := e.request(t, p, map[string]any{"@type": "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/trust_ping/1.0/ping", "@id": "lp"})
	r.expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
	r.expectThread(t, thid("lp"))
	// A ping_response to us is accepted and not answered.
	e.requestNone(t, p, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping_response", "@id": "pr",
		"~thread": map[string]any{"thid": "x"}})
}

var allProtocols = []string{
	"https://didcomm.org/connections/1.0",
	"https://didcomm.org/coordinate-mediation/1.0",
	"https://didcomm.org/didexchange/1.0",
	"https://didcomm.org/didexchange/1.1",
	"https://didcomm.org/discover-features/1.0",
	"https://didcomm.org/discover-features/2.0",
	"https://didcomm.org/messagepickup/1.0",
	"https://didcomm.org/messagepickup/2.0",
	"https://didcomm.org/out-of-band/1.1",
	"https://didcomm.org/push-notifications-fcm/1.0",
	"https://didcomm.org/routing/1.0",
	"https://didcomm.org/trust_ping/1.0",
}

func TestDiscoverFeatures1(t *testing.T) {
	tests := []struct {
		query string
		want  []string
	}{
		{"https://didcomm.org/messagepickup/2.0", []string{"https://didcomm.org/messagepickup/2.0"}},
		{"https://didcomm.org/messagepickup/1.0", []string{"https://didcomm.org/messagepickup/1.0"}},
		{"https://didcomm.org/messagepickup/*", []string{"https://didcomm.org/messagepickup/1.0", "https://didcomm.org/messagepickup/2.0"}},
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0", []string{"https://didcomm.org/messagepickup/2.0"}},
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/didexchange/*", []string{"https://didcomm.org/didexchange/1.0", "https://didcomm.org/didexchange/1.1"}},
		{"https://didcomm.org/coordinate-mediation/1.0", []string{"https://didcomm.org/coordinate-mediation/1.0"}},
		{"https://didcomm.org/*/1.1", []string{"https://didcomm.org/didexchange/1.1", "https://didcomm.org/out-of-band/1.1"}},
		{"*", allProtocols},
		{"https://didcomm.org/*", allProtocols},
		{"https://didcomm.org/messagepickup/3.0", []string{}},
		{"https://didcomm.org/messagepickup/2", []string{}},
		{"messagepickup/2.0", []string{}},
		{"https://example.org/*", []string{}},
		{"", []string{}},
	}
	e := newEnv(t)
	p := e.connect(t)
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			id := uuid.NewString()
			r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/discover-features/1.0/query", "@id": id, "query": tc.query})
			r.expectType(t, "https://didcomm.org/discover-features/1.0/disclose")
			r.expectThread(t, thid(id))
			if len(tc.want) == 0 && r.field(t, "protocols") != "[]" {
				t.Fatalf("protocols = %s, want []", r.field(t, "protocols"))
			}
			var d struct {
				Protocols []struct {
					PID   string   `json:"pid"`
					Roles []string `json:"roles"`
				} `json:"protocols"`
			}
			r.decode(t, &d)
			got := []string{}
			for _, pr := range d.Protocols {
				got = append(got, pr.PID)
				if len(pr.Roles) == 0 {
					t.Errorf("%s disclosed without roles", pr.PID)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("disclosed %v, want %v", got, tc.want)
			}
			for _, pr := range d.Protocols {
				switch pr.PID {
				case "https://didcomm.org/messagepickup/2.0", "https://didcomm.org/coordinate-mediation/1.0", "https://didcomm.org/routing/1.0":
					if !reflect.DeepEqual(pr.Roles, []string{"mediator"}) {
						t.Errorf("%s roles %v, want [mediator]", pr.PID, pr.Roles)
					}
				}
			}
		})
	}
}

func TestDiscoverFeatures2(t *testing.T) {
	type disc struct {
		FeatureType string   `json:"feature-type"`
		ID          string   `json:"id"`
		Roles       []string `json:"roles"`
	}
	tests := []struct {
		name    string
		queries []map[string]string
		want    []string
	}{
		{"one exact", []map[string]string{{"feature-type": "protocol", "match": "https://didcomm.org/messagepickup/2.0"}},
			[]string{"https://didcomm.org/messagepickup/2.0"}},
		{"wildcard", []map[string]string{{"feature-type": "protocol", "match": "https://didcomm.org/messagepickup/*"}},
			[]string{"https://didcomm.org/messagepickup/1.0", "https://didcomm.org/messagepickup/2.0"}},
		{"overlapping queries deduplicated", []map[string]string{
			{"feature-type": "protocol", "match": "https://didcomm.org/messagepickup/2.0"},
			{"feature-type": "protocol", "match": "https://didcomm.org/messagepickup/*"},
			{"feature-type": "protocol", "match": "https://didcomm.org/trust_ping/1.0"}},
			[]string{"https://didcomm.org/messagepickup/2.0", "https://didcomm.org/messagepickup/1.0", "https://didcomm.org/trust_ping/1.0"}},
		{"goal-code queries ignored", []map[string]string{{"feature-type": "goal-code", "match": "*"}}, []string{}},
		{"legacy prefix", []map[string]string{{"feature-type": "protocol", "match": "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0"}},
			[]string{"https://didcomm.org/routing/1.0"}},
		{"everything", []map[string]string{{"feature-type": "protocol", "match": "*"}}, allProtocols},
		{"no match", []map[string]string{{"feature-type": "protocol", "match": "https://didcomm.org/nope/1.0"}}, []string{}},
		{"no queries", []map[string]string{}, []string{}},
	}
	e := newEnv(t)
	p := e.connect(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := uuid.NewString()
			r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/discover-features/2.0/queries", "@id": id, "queries": tc.queries})
			r.expectType(t, "https://didcomm.org/discover-features/2.0/disclosures")
			r.expectThread(t, thid(id))
			if len(tc.want) == 0 && r.field(t, "disclosures") != "[]" {
				t.Fatalf("disclosures = %s, want []", r.field(t, "disclosures"))
			}
			var d struct {
				Disclosures []disc `json:"disclosures"`
			}
			r.decode(t, &d)
			got := []string{}
			for _, x := range d.Disclosures {
				if x.FeatureType != "protocol" || len(x.Roles) == 0 {
					t.Errorf("disclosure %+v", x)
				}
				got = append(got, x.ID)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("disclosed %v, want %v", got, tc.want)
			}
		})
	}
}

// ---- coordinate-mediation ----

type grantMsg struct {
	Endpoint    string   `json:"endpoint"`
	RoutingKeys []string `json:"routing_keys"`
}

func TestMediateRequest(t *testing.T) {
	tests := []struct {
		name      string
		endpoints []string
		want      string
	}{
		{"http first", []string{"https://m.example/a", "wss://m.example/ws"}, "https://m.example/a"},
		{"ws listed first", []string{"wss://m.example/ws", "http://m.example:8080/", "https://m.example/b"}, "http://m.example:8080/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *mediator.Config) { c.Endpoints = tc.endpoints })
			p := e.connect(t)
			wantKeys := []string{didKeyOf(t, e.agent.RoutingVerkey())}
			var first grantMsg
			for i := range 2 { // a repeated request gets the same grant
				id := uuid.NewString()
				r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": id})
				r.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/mediate-grant")
				r.expectThread(t, thid(id))
				var g grantMsg
				r.decode(t, &g)
				if g.Endpoint != tc.want {
					t.Fatalf("grant endpoint %q, want %q", g.Endpoint, tc.want)
				}
				if !reflect.DeepEqual(g.RoutingKeys, wantKeys) {
					t.Fatalf("routing_keys %v, want %v", g.RoutingKeys, wantKeys)
				}
				if i == 0 {
					first = g
				} else if !reflect.DeepEqual(g, first) {
					t.Fatalf("second grant %+v differs from the first %+v", g, first)
				}
				if got := e.conn(t, p.connID).Mediation; got != record.MediationGranted {
					t.Fatalf("mediation state %q", got)
				}
			}
		})
	}
}

func TestMediateDeny(t *testing.T) {
	e := newEnv(t, func(c *mediator.Config) { c.AutoGrant = false })
	p := e.connect(t)
	id := uuid.NewString()
	r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": id})
	r.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/mediate-deny")
	r.expectThread(t, thid(id))
	if got := e.conn(t, p.connID).Mediation; got != record.MediationDenied {
		t.Fatalf("mediation state %q, want denied", got)
	}
	// keylist-update on a denied mediation is refused.
	key, _ := newVerkey(t)
	r = e.request(t, p, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-update", "@id": "ku",
		"updates": []map[string]string{{"recipient_key": key, "action": "add"}}})
	r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
	if code := r.problemCode(t); code != "request_not_accepted" {
		t.Fatalf("code %q", code)
	}
}

func TestKeylistBeforeGrant(t *testing.T) {
	e := newEnv(t)
	p := e.connect(t)
	key, _ := newVerkey(t)
	for _, msg := range []map[string]any{
		{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-update", "@id": "ku-1",
			"updates": []map[string]string{{"recipient_key": didKeyOf(t, key), "action": "add"}}},
		{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-query", "@id": "kq-1"},
	} {
		r := e.request(t, p, msg)
		r.expectType(t, "https://didcomm.org/report-problem/1.0/problem-report")
		r.expectThread(t, thid(msg["@id"].(string)))
		if code := r.problemCode(t); code != "request_not_accepted" {
			t.Fatalf("code %q, want request_not_accepted", code)
		}
	}
	keys, total, err := e.store.Routes(context.Background(), p.connID, 0, 0)
	if err != nil || total != 0 || len(keys) != 0 {
		t.Fatalf("routes stored before grant: %v %d %v", keys, total, err)
	}
}

func TestKeylistUpdate(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	other := e.grant(t)
	k1, _ := newVerkey(t)
	k2, _ := newVerkey(t)
	kOther, _ := newVerkey(t)
	if got := e.keylistUpdate(t, other, [2]string{kOther, "add"}); got[0].Result != "success" {
		t.Fatalf("setup: %+v", got)
	}
	unknown, _ := newVerkey(t)
	steps := []struct {
		name, key, action, want string
	}{
		{"add did:key", didKeyOf(t, k1), "add", "success"},
		{"same did:key again", didKeyOf(t, k1), "add", "no_change"},
		{"same key as base58", k1, "add", "no_change"},
		{"same key as did:key with fragment", didKeyOf(t, k1) + "#" + didKeyOf(t, k1)[len("did:key:"):], "add", "no_change"},
		{"add base58", k2, "add", "success"},
		{"remove unknown", unknown, "remove", "no_change"},
		{"remove registered (base58 of a did:key add)", k1, "remove", "success"},
		{"remove it again", didKeyOf(t, k1), "remove", "no_change"},
		{"invalid key", "not-a-key", "add", "client_error"},
		{"invalid did:key", "did:key:z6MkInvalid", "add", "client_error"},
		{"empty key", "", "add", "client_error"},
		{"unknown action", k2, "replace", "client_error"},
		{"action in capitals", unknown, "ADD", "client_error"},
		{"key of another connection", kOther, "add", "client_error"},
		{"remove key of another connection", kOther, "remove", "no_change"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := e.keylistUpdate(t, p, [2]string{st.key, st.action})
			want := []updated{{RecipientKey: st.key, Action: st.action, Result: st.want}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("updated %+v, want %+v", got, want)
			}
		})
	}
	// Final state: p has k2 only; other still has kOther.
	keys, total, err := e.store.Routes(context.Background(), p.connID, 0, 0)
	if err != nil || total != 1 || !reflect.DeepEqual(keys, []string{k2}) {
		t.Fatalf("p's routes %v (total %d, %v), want [%s]", keys, total, err, k2)
	}
	keys, _, _ = e.store.Routes(context.Background(), other.connID, 0, 0)
	if !reflect.DeepEqual(keys, []string{kOther}) {
		t.Fatalf("other's routes %v", keys)
	}

	// Several updates in one message keep their order and echo.
	k3, _ := newVerkey(t)
	got := e.keylistUpdate(t, p, [2]string{didKeyOf(t, k3), "add"}, [2]string{k3, "add"}, [2]string{"bad", "add"}, [2]string{k2, "remove"})
	want := []updated{
		{didKeyOf(t, k3), "add", "success"}, {k3, "add", "no_change"}, {"bad", "add", "client_error"}, {k2, "remove", "success"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("batch: %+v, want %+v", got, want)
	}
	// An empty update list gets an empty (not null) result.
	if got := e.keylistUpdate(t, p); len(got) != 0 {
		t.Fatalf("empty update: %+v", got)
	}
}

func TestKeylistQuery(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	var keys []string
	for range 3 {
		k, _ := newVerkey(t)
		keys = append(keys, k)
	}
	// Registered in both spellings; the keylist uses did:key.
	e.keylistUpdate(t, p, [2]string{keys[0], "add"}, [2]string{didKeyOf(t, keys[1]), "add"}, [2]string{keys[2], "add"})
	dk := func(i int) string { return didKeyOf(t, keys[i]) }
	tests := []struct {
		name     string
		paginate any // nil = absent
		want     []string
		wantPag  string // "" = absent
	}{
		{"no paginate", nil, []string{dk(0), dk(1), dk(2)}, ""},
		{"limit 2", map[string]int{"limit": 2, "offset": 0}, []string{dk(0), dk(1)}, `{"count":2,"offset":0,"remaining":1}`},
		{"limit 2 offset 1", map[string]int{"limit": 2, "offset": 1}, []string{dk(1), dk(2)}, `{"count":2,"offset":1,"remaining":0}`},
		{"limit 1 offset 1", map[string]int{"limit": 1, "offset": 1}, []string{dk(1)}, `{"count":1,"offset":1,"remaining":1}`},
		{"offset past the end", map[string]int{"limit": 5, "offset": 7}, []string{}, `{"count":0,"offset":7,"remaining":0}`},
		{"limit 0 means default", map[string]int{"limit": 0, "offset": 2}, []string{dk(2)}, `{"count":1,"offset":2,"remaining":0}`},
		{"negative offset", map[string]int{"limit": 1, "offset": -4}, []string{dk(0)}, `{"count":1,"offset":0,"remaining":2}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := uuid.NewString()
			msg := map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-query", "@id": id}
			if tc.paginate != nil {
				msg["paginate"] = tc.paginate
			}
			r := e.request(t, p, msg)
			r.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/keylist")
			r.expectThread(t, thid(id))
			var kl struct {
				Keys []struct {
					RecipientKey string `json:"recipient_key"`
				} `json:"keys"`
			}
			r.decode(t, &kl)
			got := []string{}
			for _, k := range kl.Keys {
				got = append(got, k.RecipientKey)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("keys %v, want %v", got, tc.want)
			}
			if len(tc.want) == 0 && r.field(t, "keys") != "[]" {
				t.Fatalf("keys = %s, want []", r.field(t, "keys"))
			}
			if pag := r.field(t, "pagination"); pag != tc.wantPag {
				t.Fatalf("pagination = %s, want %s", pag, tc.wantPag)
			}
		})
	}
}

// ---- replies without a return route ----

func TestRepliesWithoutReturnRouteAreQueued(t *testing.T) {
	tests := []struct {
		name  string
		route string // "" = no ~transport
		fail  bool   // the session fails to send
	}{
		{"no ~transport", "", false},
		{"return_route none", "none", false},
		{"return_route all but the session fails", "all", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.connect(t)
			s := newSession(transport.KindHTTP)
			if tc.fail {
				s.setFail(transport.ErrClosed)
			}
			pingID := uuid.NewString()
			if err := e.send(t, p, withReturnRoute(map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": pingID}, tc.route), s); err != nil {
				t.Fatal(err)
			}
			if n := s.count(); n != 0 {
				t.Fatalf("%d sent on the session", n)
			}
			st := e.stats(t, p.connID)
			if st.Count != 1 {
				t.Fatalf("queued %d, want 1", st.Count)
			}
			msgs := e.claimAll(t, p.connID)
			if len(msgs) != 1 || msgs[0].RecipientKey != p.verkey {
				t.Fatalf("queued %+v, want one message for %s", msgs, p.verkey)
			}
			r := p.open(t, msgs[0].Payload)
			r.expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
			r.expectThread(t, thid(pingID))
		})
	}
}

func TestPickupRepliesAreNeverQueued(t *testing.T) {
	for _, route := range []string{"", "none"} {
		t.Run("route="+route, func(t *testing.T) {
			e := newEnv(t)
			p := e.grant(t)
			for _, msg := range []map[string]any{
				{"@type": "https://didcomm.org/messagepickup/2.0/status-request", "@id": uuid.NewString()},
				{"@type": "https://didcomm.org/messagepickup/2.0/delivery-request", "@id": uuid.NewString(), "limit": 10},
				{"@type": "https://didcomm.org/messagepickup/1.0/batch-pickup", "@id": uuid.NewString(), "batch_size": 10},
			} {
				s := newSession(transport.KindHTTP)
				_ = e.send(t, p, withReturnRoute(msg, route), s) // the error is TestPickupWithoutReturnRouteIsDropped's
				if n := s.count(); n != 0 {
					t.Fatalf("%s: %d sent without a return route", msg["@type"], n)
				}
				if n := e.stats(t, p.connID).Count; n != 0 {
					t.Fatalf("%s: reply queued (%d); pickup messages must not be queued", msg["@type"], n)
				}
			}
		})
	}
}

// ---- pickup through the agent ----

func TestPickupThroughAgent(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	key, _ := newVerkey(t)
	e.keylistUpdate(t, p, [2]string{didKeyOf(t, key), "add"})
	sender := newPeer(t)
	inner := packedFor(t, sender, key, "hello")
	if err := e.handle(t, forwardTo(t, e, key, inner), newSession(transport.KindHTTP)); err != nil {
		t.Fatal(err)
	}

	r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/status-request", "@id": "sr"})
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/status")
	if r.field(t, "message_count") != "1" {
		t.Fatalf("message_count %s", r.field(t, "message_count"))
	}
	r = e.request(t, p, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/delivery-request", "@id": "dr", "limit": 10})
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/delivery")
	r.expectThread(t, thid("dr"))
	var d struct {
		Attach []struct {
			ID   string `json:"@id"`
			Data struct {
				JSON json.RawMessage `json:"json"`
			} `json:"data"`
		} `json:"~attach"`
	}
	r.decode(t, &d)
	if len(d.Attach) != 1 || !jsonEqual(d.Attach[0].Data.JSON, inner) {
		t.Fatalf("delivery %s", r.msg.Raw)
	}
	r = e.request(t, p, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/messages-received", "@id": "mr",
		"message_id_list": []string{d.Attach[0].ID}})
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/status")
	if r.field(t, "message_count") != "0" {
		t.Fatalf("after ack: message_count %s", r.field(t, "message_count"))
	}
	// Deleted for good.
	if msgs := e.claimAll(t, p.connID); len(msgs) != 0 {
		t.Fatalf("%d left", len(msgs))
	}
}

func TestLiveModeThroughAgent(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	key, _ := newVerkey(t)
	e.keylistUpdate(t, p, [2]string{key, "add"})

	// Over HTTP: refused.
	r := e.request(t, p, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/live-delivery-change", "@id": "l1", "live_delivery": true})
	r.expectType(t, "https://didcomm.org/notification/1.0/problem-report")
	r.expectThread(t, `{"pthid":"l1"}`)

	ws := newSession(transport.KindWebSocket)
	if err := e.send(t, p, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/live-delivery-change", "@id": "l2",
		"live_delivery": true, "~transport": map[string]any{"return_route": "all"}}, ws); err != nil {
		t.Fatal(err)
	}
	sent := ws.drain()
	if len(sent) != 1 {
		t.Fatalf("%d replies", len(sent))
	}
	r = p.open(t, sent[0])
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/status")
	if r.field(t, "live_delivery") != "true" {
		t.Fatalf("live_delivery %s", r.field(t, "live_delivery"))
	}

	// A forward is pushed at once on the socket.
	sender := newPeer(t)
	inner := packedFor(t, sender, key, "live!")
	if err := e.handle(t, forwardTo(t, e, key, inner), newSession(transport.KindHTTP)); err != nil {
		t.Fatal(err)
	}
	sent = ws.waitDrain(t, 1)
	if len(sent) != 1 {
		t.Fatalf("%d pushes, want 1", len(sent))
	}
	r = p.open(t, sent[0])
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/delivery")
	if _, ok := r.fields["~thread"]; ok {
		t.Fatal("live push has a ~thread")
	}
	var first struct {
		Attach []struct {
			Data struct {
				JSON json.RawMessage `json:"json"`
			} `json:"data"`
		} `json:"~attach"`
	}
	r.decode(t, &first)
	if len(first.Attach) != 1 || !jsonEqual(first.Attach[0].Data.JSON, inner) {
		t.Fatalf("live push %s, want the forwarded message", r.msg.Raw)
	}
	// A reply on the connection (queued) is pushed too.
	if err := e.send(t, p, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": "queued-ping"}, nil); err != nil {
		t.Fatal(err)
	}
	sent = ws.waitDrain(t, 1)
	if len(sent) != 1 {
		t.Fatalf("%d pushes after a queued reply, want 1", len(sent))
	}
	r = p.open(t, sent[0])
	r.expectType(t, "https://didcomm.org/messagepickup/2.0/delivery")
	var d struct {
		Attach []struct {
			Data struct {
				JSON json.RawMessage `json:"json"`
			} `json:"data"`
		} `json:"~attach"`
	}
	r.decode(t, &d)
	if len(d.Attach) != 1 {
		t.Fatalf("second push has %d attachments, want the queued ping_response only", len(d.Attach))
	}
	p.open(t, d.Attach[0].Data.JSON).expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
	ws.Close()
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func TestAllProtocolsSorted(t *testing.T) {
	if !reflect.DeepEqual(allProtocols, sortedCopy(allProtocols)) {
		t.Fatal("allProtocols must be sorted, as the agent discloses them")
	}
}

// mediator-protocols.md §3: pickup replies that cannot use a return route
// are dropped. Dropping is not a server failure: HandleInbound should not
// return an error without an HTTP status (the transport answers those 500).
func TestPickupWithoutReturnRouteIsDropped(t *testing.T) {
	e := newEnv(t)
	p := e.grant(t)
	s := newSession(transport.KindHTTP)
	err := e.send(t, p, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/status-request", "@id": uuid.NewString()}, s)
	if s.count() != 0 || e.stats(t, p.connID).Count != 0 {
		t.Fatal("a pickup reply without return route was sent or queued")
	}
	if status := httpStatus(err); err != nil && (status < 400 || status > 499) {
		t.Fatalf("mediator/agent.go conversation (Send returns pickup.ErrNoReturnRoute) + pickup/pickup.go statusRequest (returns it): a status-request without "+
			"return route makes HandleInbound return %q with no HTTPStatus, so transport answers HTTP 500 for a "+
			"well-formed message whose reply is merely dropped (mediator-protocols.md §3: drop it)", err)
	}
}

// credo-client-behaviour.md §4.2: a client may send protocol messages right
// after its complete, or without one; a connection in response-sent state
// is usable and becomes completed.
func TestResponseSentConnectionIsUsable(t *testing.T) {
	e := newEnv(t)
	p := newPeer(t)
	p.to = e.invitationPub(t)
	r := e.request(t, p, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/request", "@id": uuid.NewString(),
		"~thread": map[string]any{"pthid": e.agent.Invitation().ID}, "label": "w", "did": p.did,
	})
	var resp exchangeResponse
	r.decode(t, &resp)
	p.to = pubOf(t, r.sender)
	c, err := e.store.ConnectionByKeys(context.Background(), r.sender, p.verkey)
	if err != nil || c.State != record.StateResponseSent {
		t.Fatalf("connection %+v, %v", c, err)
	}
	g := e.request(t, p, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": "mr"})
	g.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/mediate-grant")
	if got := e.conn(t, c.ID); got.State != record.StateCompleted || got.Mediation != record.MediationGranted {
		t.Fatalf("state %q mediation %q, want completed/granted", got.State, got.Mediation)
	}
}

// A connection inserted directly in the store (keyring.NewKey key) is
// served like a handshaken one.
func TestInsertedConnection(t *testing.T) {
	e := newEnv(t)
	none := e.insertConnection(t, record.MediationNone)
	granted := e.insertConnection(t, record.MediationGranted)

	r := e.request(t, none, map[string]any{"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": "p"})
	r.expectType(t, "https://didcomm.org/trust_ping/1.0/ping_response")
	if r.sender != none.ourKey {
		t.Fatalf("packed from %s, want %s", r.sender, none.ourKey)
	}
	key, _ := newVerkey(t)
	r = e.request(t, none, map[string]any{"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-update", "@id": "k",
		"updates": []map[string]string{{"recipient_key": key, "action": "add"}}})
	if code := r.problemCode(t); code != "request_not_accepted" {
		t.Fatalf("keylist-update without grant: %s", r.msg.Raw)
	}
	if got := e.keylistUpdate(t, granted, [2]string{key, "add"}); got[0].Result != "success" {
		t.Fatalf("%+v", got)
	}
	sender := newPeer(t)
	inner := packedFor(t, sender, key, "x")
	if err := e.handle(t, forwardTo(t, e, key, inner), nil); err != nil {
		t.Fatal(err)
	}
	if n := e.stats(t, granted.connID).Count; n != 1 {
		t.Fatalf("queued %d for the inserted connection", n)
	}
}
