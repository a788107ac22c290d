package mediator

import (
	"bytes"
	"encoding/json"
	"testing"
)

// scanForward must give json.Unmarshal's answer whenever it gives one.
func FuzzScanForward(f *testing.F) {
	for _, seed := range []string{
		`{"@type":"https://didcomm.org/routing/1.0/forward","@id":"1","to":"abc","msg":{"protected":"x","iv":"y"}}`,
		`{"to":"a","msg":"{\"a\":1}"}`,
		`{"to":null,"msg":null}`,
		`{}`,
		`{ "to" : "a" , "msg" : [1, {"b": "c\"}"}] , "to": "b" }`,
		`{"To":"x","msg":{}}`,
		`{"t\u006f":"x","msg":{}}`,
		`{"to":"\u00e9","msg":{}}`,
		`{"to":1,"msg":{}}`,
		`{"to":"a\\","msg":{"k":"\\\\"}}`,
		`{"msg":{"a":{"b":{"c":[[],{}]}}},"x":true,"y":-1.5e3,"z":"}"}`,
		`{"tO":"x"}`,
		`{"mſg":{}}`,
		"{\"to\":\"\xff\",\"msg\":{}}",
		`[1]`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		b = bytes.TrimSpace(b) // what didcomm.Parse keeps as Raw
		var want forward
		werr := json.Unmarshal(b, &want)
		got, ok := scanForward(b)
		if !ok {
			return
		}
		if werr != nil {
			t.Fatalf("scanForward(%q) = %+v, but json.Unmarshal fails: %v", b, got, werr)
		}
		if got.To != want.To || !bytes.Equal(got.Msg, want.Msg) {
			t.Fatalf("scanForward(%q) = %q, %q; json.Unmarshal: %q, %q", b, got.To, got.Msg, want.To, want.Msg)
		}
	})
}

// The fast path takes the usual forwards, and leaves the odd ones to
// json.Unmarshal.
func TestScanForwardTakesUsualForwards(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"@type":"https://didcomm.org/routing/1.0/forward","@id":"1","to":"abc","msg":{"protected":"x"}}`, true},
		{`{"to":"abc","msg":"{\"protected\":\"x\"}"}`, true},
		{`{"To":"abc","msg":{}}`, false},
		{`{"to":"a\u0062c","msg":{}}`, false},
		{`{"to":5,"msg":{}}`, false},
	} {
		if _, ok := scanForward([]byte(tc.in)); ok != tc.ok {
			t.Errorf("scanForward(%s) ok = %v, want %v", tc.in, ok, tc.ok)
		}
	}
}
