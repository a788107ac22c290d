package didcomm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hyperledger/aries-framework-go/pkg/didcomm/protocol/decorator"

	"github.com/openmediator/mediator/didcomm"
)

func TestParseType(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		want    didcomm.MessageType
		wantErr bool
	}{
		{name: "https prefix", uri: "https://didcomm.org/messagepickup/2.0/delivery-request",
			want: didcomm.MessageType{Protocol: "messagepickup", Major: 2, Minor: 0, Name: "delivery-request"}},
		{name: "legacy did:sov prefix", uri: "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward",
			want: didcomm.MessageType{Protocol: "routing", Major: 1, Minor: 0, Name: "forward"}},
		{name: "minor version kept", uri: "https://didcomm.org/didexchange/1.1/request",
			want: didcomm.MessageType{Protocol: "didexchange", Major: 1, Minor: 1, Name: "request"}},
		{name: "multi-digit versions", uri: "https://didcomm.org/foo/12.34/bar",
			want: didcomm.MessageType{Protocol: "foo", Major: 12, Minor: 34, Name: "bar"}},
		{name: "underscore names", uri: "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/trust_ping/1.0/ping_response",
			want: didcomm.MessageType{Protocol: "trust_ping", Major: 1, Minor: 0, Name: "ping_response"}},
		{name: "empty", uri: "", wantErr: true},
		{name: "unknown prefix", uri: "https://example.org/trust_ping/1.0/ping", wantErr: true},
		{name: "http not https", uri: "http://didcomm.org/trust_ping/1.0/ping", wantErr: true},
		{name: "did:sov prefix without spec", uri: "did:sov:BzCbsNYhMrjHiqZDTUASHg;trust_ping/1.0/ping", wantErr: true},
		{name: "prefix only", uri: "https://didcomm.org/", wantErr: true},
		{name: "no message name", uri: "https://didcomm.org/trust_ping/1.0", wantErr: true},
		{name: "empty message name", uri: "https://didcomm.org/trust_ping/1.0/", wantErr: true},
		{name: "empty protocol", uri: "https://didcomm.org//1.0/ping", wantErr: true},
		{name: "extra segment", uri: "https://didcomm.org/trust_ping/1.0/ping/extra", wantErr: true},
		{name: "version without minor", uri: "https://didcomm.org/trust_ping/1/ping", wantErr: true},
		{name: "version with empty minor", uri: "https://didcomm.org/trust_ping/1./ping", wantErr: true},
		{name: "version with empty major", uri: "https://didcomm.org/trust_ping/.0/ping", wantErr: true},
		{name: "three-part version", uri: "https://didcomm.org/trust_ping/1.0.0/ping", wantErr: true},
		{name: "letters in version", uri: "https://didcomm.org/trust_ping/1.x/ping", wantErr: true},
		{name: "v-prefixed version", uri: "https://didcomm.org/trust_ping/v1.0/ping", wantErr: true},
		{name: "negative major", uri: "https://didcomm.org/trust_ping/-1.0/ping", wantErr: true},
		{name: "negative minor", uri: "https://didcomm.org/trust_ping/1.-1/ping", wantErr: true},
		{name: "overflowing major", uri: "https://didcomm.org/trust_ping/99999999999999999999.0/ping", wantErr: true},
		{name: "spaces in version", uri: "https://didcomm.org/trust_ping/1 .0/ping", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := didcomm.ParseType(tc.uri)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseType(%q) = %+v, want an error", tc.uri, got)
				}
				if !errors.Is(err, didcomm.ErrInvalidMessage) {
					t.Fatalf("ParseType(%q) error %v does not wrap ErrInvalidMessage", tc.uri, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseType(%q): %v", tc.uri, err)
			}
			if got != tc.want {
				t.Fatalf("ParseType(%q) = %+v, want %+v", tc.uri, got, tc.want)
			}
		})
	}
}

func TestMessageTypeRendering(t *testing.T) {
	tests := []struct {
		uri                      string
		wantKey, wantURI, wantPI string
	}{
		{"https://didcomm.org/messagepickup/2.0/status", "messagepickup/2/status",
			"https://didcomm.org/messagepickup/2.0/status", "https://didcomm.org/messagepickup/2.0"},
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/connections/1.0/request", "connections/1/request",
			"https://didcomm.org/connections/1.0/request", "https://didcomm.org/connections/1.0"},
		{"https://didcomm.org/didexchange/1.1/response", "didexchange/1/response",
			"https://didcomm.org/didexchange/1.1/response", "https://didcomm.org/didexchange/1.1"},
		{"https://didcomm.org/didexchange/1.0/response", "didexchange/1/response",
			"https://didcomm.org/didexchange/1.0/response", "https://didcomm.org/didexchange/1.0"},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			mt, err := didcomm.ParseType(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			if got := mt.Key(); got != tc.wantKey {
				t.Errorf("Key() = %q, want %q", got, tc.wantKey)
			}
			if got := mt.URI(); got != tc.wantURI {
				t.Errorf("URI() = %q, want %q", got, tc.wantURI)
			}
			if got := mt.PIURI(); got != tc.wantPI {
				t.Errorf("PIURI() = %q, want %q", got, tc.wantPI)
			}
		})
	}
}

func TestIsProblemReport(t *testing.T) {
	tests := []struct {
		uri  string
		want bool
	}{
		{"https://didcomm.org/report-problem/1.0/problem-report", true},
		{"https://didcomm.org/notification/1.0/problem-report", true},
		{"https://didcomm.org/didexchange/1.1/problem-report", true},
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/connections/1.0/problem_report", true},
		{"https://didcomm.org/trust_ping/1.0/ping", false},
		{"https://didcomm.org/report-problem/1.0/problem-reports", false},
	}
	for _, tc := range tests {
		mt, err := didcomm.ParseType(tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		if got := mt.IsProblemReport(); got != tc.want {
			t.Errorf("IsProblemReport(%q) = %v, want %v", tc.uri, got, tc.want)
		}
	}
}

func TestNormalizeType(t *testing.T) {
	tests := []struct{ in, want string }{
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward", "https://didcomm.org/routing/1.0/forward"},
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/*", "https://didcomm.org/messagepickup/*"},
		{"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/", "https://didcomm.org/"},
		{"https://didcomm.org/routing/1.0/forward", "https://didcomm.org/routing/1.0/forward"},
		{"*", "*"},
		{"", ""},
		// Only the exact legacy document URI is rewritten.
		{"did:sov:SomeOtherDid;spec/routing/1.0/forward", "did:sov:SomeOtherDid;spec/routing/1.0/forward"},
		{"xdid:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward", "xdid:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward"},
	}
	for _, tc := range tests {
		if got := didcomm.NormalizeType(tc.in); got != tc.want {
			t.Errorf("NormalizeType(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantErr    bool
		wantType   string
		wantID     string // "" = generated
		wantThread string
		wantParent string
		wantRoute  string
	}{
		{name: "minimal", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"p1"}`,
			wantType: "https://didcomm.org/trust_ping/1.0/ping", wantID: "p1", wantThread: "p1", wantRoute: "none"},
		{name: "legacy type normalised", in: `{"@type":"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/trust_ping/1.0/ping","@id":"p2"}`,
			wantType: "https://didcomm.org/trust_ping/1.0/ping", wantID: "p2", wantThread: "p2", wantRoute: "none"},
		{name: "leading whitespace", in: " \n\t{\"@type\":\"https://didcomm.org/trust_ping/1.0/ping\",\"@id\":\"p3\"}\n",
			wantType: "https://didcomm.org/trust_ping/1.0/ping", wantID: "p3", wantThread: "p3", wantRoute: "none"},
		{name: "thread and transport", in: `{"@type":"https://didcomm.org/didexchange/1.1/complete","@id":"c1",` +
			`"~thread":{"thid":"req","pthid":"inv"},"~transport":{"return_route":"all"}}`,
			wantType: "https://didcomm.org/didexchange/1.1/complete", wantID: "c1", wantThread: "req", wantParent: "inv", wantRoute: "all"},
		{name: "thread with only pthid", in: `{"@type":"https://didcomm.org/didexchange/1.1/request","@id":"r1","~thread":{"pthid":"inv"}}`,
			wantType: "https://didcomm.org/didexchange/1.1/request", wantID: "r1", wantThread: "r1", wantParent: "inv", wantRoute: "none"},
		{name: "empty return route", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"p4","~transport":{}}`,
			wantType: "https://didcomm.org/trust_ping/1.0/ping", wantID: "p4", wantThread: "p4", wantRoute: "none"},
		{name: "missing @id replaced", in: `{"@type":"https://didcomm.org/routing/1.0/forward"}`,
			wantType: "https://didcomm.org/routing/1.0/forward", wantRoute: "none"},
		{name: "empty input", in: ``, wantErr: true},
		{name: "whitespace only", in: "  \n", wantErr: true},
		{name: "not json", in: `hello`, wantErr: true},
		{name: "json array", in: `[{"@type":"https://didcomm.org/trust_ping/1.0/ping"}]`, wantErr: true},
		{name: "json string", in: `"https://didcomm.org/trust_ping/1.0/ping"`, wantErr: true},
		{name: "json null", in: `null`, wantErr: true},
		{name: "truncated object", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping"`, wantErr: true},
		{name: "trailing garbage", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping"} x`, wantErr: true},
		{name: "missing @type", in: `{"@id":"x"}`, wantErr: true},
		{name: "empty @type", in: `{"@type":"","@id":"x"}`, wantErr: true},
		{name: "numeric @type", in: `{"@type":42,"@id":"x"}`, wantErr: true},
		{name: "numeric @id", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":7}`, wantErr: true},
		{name: "bad type", in: `{"@type":"https://didcomm.org/trust_ping/ping","@id":"x"}`, wantErr: true},
		{name: "didcomm v2 type", in: `{"type":"https://didcomm.org/trust-ping/2.0/ping","id":"x"}`, wantErr: true},
		{name: "thread is a string", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping","~thread":"t"}`, wantErr: true},
		{name: "transport is a string", in: `{"@type":"https://didcomm.org/trust_ping/1.0/ping","~transport":"all"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := didcomm.Parse([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want an error", tc.in, m)
				}
				if !errors.Is(err, didcomm.ErrInvalidMessage) {
					t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidMessage", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if m.Type != tc.wantType {
				t.Errorf("Type = %q, want %q", m.Type, tc.wantType)
			}
			if tc.wantID == "" {
				if len(m.ID) != 36 {
					t.Errorf("generated @id = %q, want a UUID", m.ID)
				}
				if m.ThreadID() != m.ID {
					t.Errorf("ThreadID() = %q, want the generated @id %q", m.ThreadID(), m.ID)
				}
			} else {
				if m.ID != tc.wantID {
					t.Errorf("ID = %q, want %q", m.ID, tc.wantID)
				}
				if m.ThreadID() != tc.wantThread {
					t.Errorf("ThreadID() = %q, want %q", m.ThreadID(), tc.wantThread)
				}
			}
			if m.ParentThreadID() != tc.wantParent {
				t.Errorf("ParentThreadID() = %q, want %q", m.ParentThreadID(), tc.wantParent)
			}
			if m.ReturnRoute() != tc.wantRoute {
				t.Errorf("ReturnRoute() = %q, want %q", m.ReturnRoute(), tc.wantRoute)
			}
			if string(m.Raw) != strings.TrimSpace(tc.in) {
				t.Errorf("Raw = %q, want the trimmed input", m.Raw)
			}
		})
	}
}

func TestParseGeneratesDistinctIDs(t *testing.T) {
	in := []byte(`{"@type":"https://didcomm.org/routing/1.0/forward"}`)
	a, err := didcomm.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := didcomm.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID {
		t.Fatalf("two parses of an @id-less message got the same id %q", a.ID)
	}
}

func TestDecode(t *testing.T) {
	m, err := didcomm.Parse([]byte(`{"@type":"https://didcomm.org/messagepickup/2.0/delivery-request","@id":"d","limit":5}`))
	if err != nil {
		t.Fatal(err)
	}
	var ok struct {
		Limit int `json:"limit"`
	}
	if err := m.Decode(&ok); err != nil || ok.Limit != 5 {
		t.Fatalf("Decode = %v, limit %d; want nil, 5", err, ok.Limit)
	}
	var bad struct {
		Limit string `json:"limit"`
	}
	err = m.Decode(&bad)
	if !errors.Is(err, didcomm.ErrInvalidMessage) {
		t.Fatalf("Decode into a mistyped field: err %v, want ErrInvalidMessage", err)
	}
	if !strings.Contains(err.Error(), "messagepickup/2/delivery-request") {
		t.Errorf("Decode error %q does not name the message type", err)
	}
}

func TestAllowsReplyOnThread(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		thid string
		want bool
	}{
		{"no transport", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m"}`, "m", false},
		{"none", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"none"}}`, "m", false},
		{"all, own thread", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"all"}}`, "m", true},
		{"all, other thread", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"all"}}`, "other", true},
		{"thread, implicit, own thread", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"thread"}}`, "m", true},
		{"thread, implicit, other thread", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"thread"}}`, "other", false},
		{"thread, implicit uses thid", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~thread":{"thid":"t1"},"~transport":{"return_route":"thread"}}`, "t1", true},
		{"thread, implicit, own id is not the thread", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~thread":{"thid":"t1"},"~transport":{"return_route":"thread"}}`, "m", false},
		{"thread, explicit match", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"thread","return_route_thread":"x"}}`, "x", true},
		{"thread, explicit mismatch", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"thread","return_route_thread":"x"}}`, "m", false},
		{"unknown value", `{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"m","~transport":{"return_route":"sometimes"}}`, "m", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := didcomm.Parse([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.AllowsReplyOnThread(tc.thid); got != tc.want {
				t.Fatalf("AllowsReplyOnThread(%q) = %v, want %v", tc.thid, got, tc.want)
			}
		})
	}
}

func TestReplyHeaderAndProblemReport(t *testing.T) {
	m, err := didcomm.Parse([]byte(`{"@type":"https://didcomm.org/didexchange/1.1/complete","@id":"c1","~thread":{"thid":"req","pthid":"inv"}}`))
	if err != nil {
		t.Fatal(err)
	}
	h := didcomm.ReplyHeader("https://didcomm.org/x/1.0/y", m)
	if h.Type != "https://didcomm.org/x/1.0/y" || len(h.ID) != 36 || h.ID == m.ID {
		t.Fatalf("ReplyHeader = %+v", h)
	}
	if !reflect.DeepEqual(h.Thread, &decorator.Thread{ID: "req", PID: "inv"}) {
		t.Fatalf("ReplyHeader thread = %+v, want thid req, pthid inv", h.Thread)
	}
	if h2 := didcomm.NewHeader("t"); h2.Thread != nil || h2.Transport != nil || h2.ID == h.ID {
		t.Fatalf("NewHeader = %+v", h2)
	}

	tests := []struct {
		name     string
		asParent bool
		want     string
	}{
		{"threaded", false, `{"thid":"req","pthid":"inv"}`},
		{"as parent", true, `{"pthid":"c1"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr := didcomm.NewProblemReport(didcomm.TypeNotificationProblemReport, m, "e.m.code", "text", tc.asParent)
			b, err := json.Marshal(pr)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if string(got["~thread"]) != tc.want {
				t.Errorf("~thread = %s, want %s", got["~thread"], tc.want)
			}
			if string(got["description"]) != `{"code":"e.m.code","en":"text"}` {
				t.Errorf("description = %s", got["description"])
			}
			if string(got["@type"]) != `"https://didcomm.org/notification/1.0/problem-report"` {
				t.Errorf("@type = %s", got["@type"])
			}
			if _, ok := got["~transport"]; ok {
				t.Errorf("problem report has a ~transport: %s", b)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that what it accepts is
// consistent: a normalised https type that round-trips through ParseType,
// a non-empty id, and Raw that is the trimmed input.
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"p1"}`,
		`{"@type":"did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward","to":"abc","msg":{}}`,
		`{"@type":"https://didcomm.org/didexchange/1.1/complete","@id":"c","~thread":{"thid":"a","pthid":"b"},"~transport":{"return_route":"thread","return_route_thread":"a"}}`,
		`{"@type":"https://didcomm.org/messagepickup/2.0/delivery-request","limit":10}`,
		`{"@type":"https://didcomm.org/a/01.002/b"}`,
		`{"@type":"https://didcomm.org/a/1.0/b/c"}`,
		`{"@type":""}`,
		`{}`,
		`[]`,
		`null`,
		``,
		`{"@type":"https://didcomm.org/a/1.0/b","~thread":{"thid":1}}`,
		"\x00\xff{",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := didcomm.Parse(data)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned both a message and an error")
			}
			if !errors.Is(err, didcomm.ErrInvalidMessage) {
				t.Fatalf("Parse error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		if !strings.HasPrefix(m.Type, didcomm.PrefixHTTPS) {
			t.Fatalf("accepted type %q is not normalised to the https prefix", m.Type)
		}
		mt, err := didcomm.ParseType(m.Type)
		if err != nil {
			t.Fatalf("ParseType(%q) of an accepted message: %v", m.Type, err)
		}
		if mt != m.MsgType {
			t.Fatalf("ParseType(Type) = %+v, MsgType = %+v", mt, m.MsgType)
		}
		again, err := didcomm.ParseType(m.MsgType.URI())
		if err != nil || again != m.MsgType {
			t.Fatalf("URI() %q does not round-trip: %+v, %v", m.MsgType.URI(), again, err)
		}
		if m.ID == "" || m.ThreadID() == "" {
			t.Fatalf("accepted message without id/thread: %+v", m.Header)
		}
		if !bytes.Equal(m.Raw, bytes.TrimSpace(data)) {
			t.Fatalf("Raw %q is not the trimmed input %q", m.Raw, data)
		}
		var v map[string]any
		if err := m.Decode(&v); err != nil {
			t.Fatalf("Decode of an accepted message into a map: %v", err)
		}
		if m.ReturnRoute() == "" {
			t.Fatal("ReturnRoute() is empty")
		}
	})
}
