package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// validCases are checked against json.Valid, so a wrong want in this table
// fails too.
var validCases = []struct {
	in   string
	want bool
}{
	{``, false},
	{` `, false},
	{`{}`, true},
	{` [ ] `, true},
	{`{"a":1,"b":[true,false,null,"x",{"c":-0.5e+10}]}`, true},
	{"{\"a\"\t:\r\n1 }", true},
	{`"text"`, true},
	{`0`, true},
	{`-0`, true},
	{`1E9`, true},
	{`12.34e-5`, true},
	{`01`, false},
	{`1.`, false},
	{`.5`, false},
	{`1e`, false},
	{`1e+`, false},
	{`-`, false},
	{`+1`, false},
	{`1 2`, false},
	{`truex`, false},
	{`tru`, false},
	{`nul`, false},
	{`[1,]`, false},
	{`[,1]`, false},
	{`{"a":}`, false},
	{`{"a" 1}`, false},
	{`{"a":1,}`, false},
	{`{a:1}`, false},
	{`{"a":1]`, false},
	{`[1}`, false},
	{`[`, false},
	{`{"a":1`, false},
	{`"unterminated`, false},
	{`"a\"b\\c\/d\b\f\n\r\t\u00e9\uABCD"`, true},
	{`"\x"`, false},
	{`"\u12"`, false},
	{`"\u12g4"`, false},
	{`"\`, false},
	{"\"tab\there\"", false},
	{"\"\x1f\"", false},
	{"\"\x7f\"", true},
	{"\"\xff\xfe not UTF-8\"", true},
	{"\"" + strings.Repeat("0123456789abcdef", 20) + "\"", true},
	{"\"" + strings.Repeat("0123456789abcdef", 20) + "\x01\"", false},
	{"\"" + strings.Repeat("0123456789abcdef", 20) + "\\\"\"", true},
	{"\"1234567\\\"", false},
	{"[\"" + strings.Repeat("é", 40) + "\"]", true},
	{"\xef\xbb\xbf{}", false}, // a byte order mark is not white space
	{`{"a":1}{}`, false},
}

func TestValid(t *testing.T) {
	for _, tc := range validCases {
		if got := Valid([]byte(tc.in)); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if std := json.Valid([]byte(tc.in)); std != tc.want {
			t.Errorf("json.Valid(%q) = %v: the table is wrong", tc.in, std)
		}
	}
}

// encoding/json allows 10,000 nested arrays or objects, empty ones
// included, and no more.
func TestValidNestingLimit(t *testing.T) {
	for _, tc := range []struct {
		open, empty, close string
		levels             int // containers, the innermost empty one included
		want               bool
	}{
		{"[", "[]", "]", 10000, true},
		{"[", "[]", "]", 10001, false},
		{`{"a":`, "{}", "}", 10000, true},
		{`{"a":`, "{}", "}", 10001, false},
		{"[", "[]", "]", 65, true}, // past Valid's stack buffer
	} {
		in := strings.Repeat(tc.open, tc.levels-1) + tc.empty + strings.Repeat(tc.close, tc.levels-1)
		if got, std := Valid([]byte(in)), json.Valid([]byte(in)); got != tc.want || std != tc.want {
			t.Errorf("%d levels of %s: Valid = %v, json.Valid = %v; want %v", tc.levels, tc.empty, got, std, tc.want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, tc := range validCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(`{"protected":"eyJ","iv":"abc","ciphertext":"` + strings.Repeat("QUJD", 30) + `","tag":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := Valid(data), json.Valid(data); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid = %v", data, got, want)
		}
	})
}

// benchMessage is shaped like a forward's plaintext: a few short fields and
// a packed message of about 1.5 KiB, mostly base64.
var benchMessage = []byte(`{"@type":"https://didcomm.org/routing/1.0/forward","@id":"6b0b8f1c-1a6e-4d38-9a2b-3f0f8d1e2c4a",` +
	`"to":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK","msg":{"protected":"` + strings.Repeat("eyJlbmMiOiJ4Y2hhY2hhMjBwb2x5MTMwNV9pZXRm", 8) +
	`","iv":"M2JfZjY0ZTc5YzQ2","ciphertext":"` + strings.Repeat("QmFzZTY0IGNpcGhlcnRleHQgb2YgYSBiYXNpYyBtZXNzYWdl", 24) + `","tag":"dGFnLXRhZy10YWctdGFn"}}`)

func BenchmarkValid(b *testing.B) {
	b.SetBytes(int64(len(benchMessage)))
	for b.Loop() {
		if !Valid(benchMessage) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkValidStdlib(b *testing.B) {
	b.SetBytes(int64(len(benchMessage)))
	for b.Loop() {
		if !json.Valid(benchMessage) {
			b.Fatal("invalid")
		}
	}
}
