package didcomm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// scanHeader must give json.Unmarshal's header whenever it gives one.
func FuzzScanHeader(f *testing.F) {
	for _, seed := range []string{
		`{"@type":"https://didcomm.org/routing/1.0/forward","@id":"1","to":"abc","msg":{"protected":"x","iv":"y"}}`,
		`{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"p","~thread":{"thid":"a","pthid":"b","sender_order":1},"~transport":{"return_route":"all"}}`,
		`{"@type":null,"@id":null,"~thread":null,"~transport":null}`,
		`{"@type":"a","@type":"b"}`,
		`{"~thread":{"thid":"a"},"~thread":{"pthid":"b"}}`,
		`{"@Type":"x"}`,
		`{"@TYPE":"x","@type":"y"}`,
		`{"\u0040type":"x"}`,
		`{"@type":"https:\/\/didcomm.org\/a\/1.0\/b"}`,
		`{"@type":"\u00e9"}`,
		`{"@id":5}`,
		`{"@type":["a"]}`,
		`{"~thread":{"thid":1}}`,
		`{"~thread":"x"}`,
		`{"~transport":{"return_route":"thread","return_route_thread":"t"},"x":[1,{"y":"}"}]}`,
		`{ "@type" : "a" , "@id" : "b" }`,
		`{"~tHread":{}}`,
		"{\"@id\":\"\xff\"}",
		`{}`,
		`{"k":"v\\","@id":"i"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		b = bytes.TrimSpace(b)
		var want Header
		werr := json.Unmarshal(b, &want)
		var got Header
		if !scanHeader(b, &got) {
			return
		}
		if werr != nil {
			t.Fatalf("scanHeader(%q) = %+v, but json.Unmarshal fails: %v", b, got, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scanHeader(%q) = %+v; json.Unmarshal: %+v", b, got, want)
		}
	})
}

// The fast path takes the usual messages and leaves the odd ones to
// json.Unmarshal.
func TestScanHeaderTakesUsualMessages(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"@type":"https://didcomm.org/routing/1.0/forward","@id":"1","to":"abc","msg":{"protected":"x"}}`, true},
		{`{"@type":"https://didcomm.org/messagepickup/2.0/messages-received","@id":"2","message_id_list":["a"],"~thread":{"thid":"t"},"~transport":{"return_route":"all"}}`, true},
		{`{"@Type":"x"}`, false},
		{`{"@type":"a","@type":"b"}`, false},
		{`{"@type":"https:\/\/didcomm.org"}`, false},
		{`{"@id":5}`, false},
	} {
		var h Header
		if ok := scanHeader([]byte(tc.in), &h); ok != tc.ok {
			t.Errorf("scanHeader(%s) ok = %v, want %v", tc.in, ok, tc.ok)
		}
	}
}

// scanHeader knows every field of Header: one added there must be added to
// it too, or the fast path would leave the new field empty.
func TestScanHeaderCoversHeader(t *testing.T) {
	var tags []string
	ht := reflect.TypeFor[Header]()
	for i := range ht.NumField() {
		tags = append(tags, strings.Split(ht.Field(i).Tag.Get("json"), ",")[0])
	}
	slices.Sort(tags)
	if want := []string{"@id", "@type", "~thread", "~transport"}; !slices.Equal(tags, want) {
		t.Fatalf("Header's JSON fields are %q; scanHeader decodes %q: update it", tags, want)
	}
}
