package envelope

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// realHeaders returns the decoded protected headers of the seed envelopes
// that have one: libsodium vectors, real Credo captures, our own output.
func realHeaders(tb testing.TB) [][]byte {
	tb.Helper()
	var packed [][]byte
	for _, v := range loadVectors(tb).Vectors {
		packed = append(packed, []byte(v.Packed))
	}
	for _, ex := range loadCredoExamples(tb) {
		packed = append(packed, ex.Packed)
	}
	own, err := PackAnoncrypt([]byte(`{"@type":"x"}`), pubOf(testKey("bob")), pubOf(testKey("carol")))
	if err != nil {
		tb.Fatal(err)
	}
	packed = append(packed, own)
	var headers [][]byte
	for _, p := range packed {
		f, err := splitOuter(p)
		if err != nil || f.protected == nil {
			continue
		}
		if h, err := appendDecode(f.protected, 0); err == nil {
			headers = append(headers, h)
		}
	}
	return headers
}

// FuzzScanHeader checks parseHeader's fast path against json.Unmarshal:
// whatever scanHeader accepts decodes to the same header.
func FuzzScanHeader(f *testing.F) {
	for _, h := range realHeaders(f) {
		f.Add(h)
	}
	for _, s := range []string{
		`{}`, `null`, `{"recipients":null}`, `{"recipients":[]}`, `{"recipients":[null,{}]}`,
		`{"recipients":[{"header":null,"encrypted_key":null}]}`,
		`{"enc":"a","enc":"b"}`, `{"ENC":"a"}`, `{"\u0065nc":"a"}`, `{"alg":"a\/b"}`,
		`{"recipients":[{"header":{"kid":"k","KID":"x"}}]}`,
		`{"recipients":[{"header":{"kid":1}}]}`, `{"recipients":{}}`, `{"recipients":[1]}`,
		`{"recipients":[{"Header":{}}]}`, `{"typ":"JWM/1.0","x":[1,{"kid":"y"}],"recipients":[{"encrypted_key":"e","header":{"kid":"k","sender":"s","iv":"i","other":2}}]}`,
		"{\"alg\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var got wireHeader
		if !scanHeader(b, &got) {
			return
		}
		var want wireHeader
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("scanHeader(%q) = %+v, but json.Unmarshal fails: %v", b, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scanHeader(%q) = %+v; json.Unmarshal: %+v", b, got, want)
		}
	})
}

// Every header real agents send takes the fast path.
func TestScanHeaderTakesRealHeaders(t *testing.T) {
	headers := realHeaders(t)
	if len(headers) < 3 {
		t.Fatalf("only %d seed headers", len(headers))
	}
	for _, b := range headers {
		var h wireHeader
		if !scanHeader(b, &h) {
			t.Errorf("scanHeader(%s) left it to json.Unmarshal", b)
		}
		if len(h.Recipients) == 0 || h.Recipients[0].Header.Kid == "" {
			t.Errorf("scanHeader(%s) = %+v: no recipient kid", b, h)
		}
	}
}

// parseHeader falls back to json.Unmarshal, and so decodes what the fast
// path declines and rejects what json.Unmarshal rejects.
func TestParseHeaderFallback(t *testing.T) {
	var h wireHeader
	if err := parseHeader([]byte(`{"ALG":"Anoncrypt","enc":"x","enc":"y","recipients":[{"header":{"kid":"a\u0062"}}]}`), &h); err != nil {
		t.Fatal(err)
	}
	if h.Alg != "Anoncrypt" || h.Enc != "y" || len(h.Recipients) != 1 || h.Recipients[0].Header.Kid != "ab" {
		t.Errorf("parseHeader = %+v", h)
	}
	for _, bad := range []string{`{"recipients":[1]}`, `{"alg":`, `[]`} {
		if err := parseHeader([]byte(bad), &h); err == nil {
			t.Errorf("parseHeader(%s) succeeded", bad)
		}
	}
}

// scanHeader knows every field of wireHeader and wireRecipient: one added
// there must be added to it too, or the fast path would leave it empty.
func TestScanHeaderCoversWireHeader(t *testing.T) {
	tags := func(rt reflect.Type) []string {
		var out []string
		for i := range rt.NumField() {
			out = append(out, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		slices.Sort(out)
		return out
	}
	rt := reflect.TypeFor[wireRecipient]()
	for _, c := range []struct {
		rt   reflect.Type
		want []string
	}{
		{reflect.TypeFor[wireHeader](), []string{"alg", "enc", "recipients", "typ"}},
		{rt, []string{"encrypted_key", "header"}},
		{rt.Field(1).Type, []string{"iv", "kid", "sender"}},
	} {
		if got := tags(c.rt); !slices.Equal(got, c.want) {
			t.Errorf("%v's JSON fields are %q; scanHeader decodes %q: update it", c.rt, got, c.want)
		}
	}
}
