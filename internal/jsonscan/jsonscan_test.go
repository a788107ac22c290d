package jsonscan

import (
	"slices"
	"testing"
)

func TestObject(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // key=value, in order
		ok   bool
	}{
		{`{}`, nil, true},
		{` { "a" : 1 , "b":"x\"}" ,"c":{"d":[1,"]"]},"e":null} `, []string{`a=1`, `b="x\"}"`, `c={"d":[1,"]"]}`, `e=null`}, true},
		{`{"a\\":"\\\\"}`, []string{`a\\="\\\\"`}, true},
		{`[1]`, nil, false},
		{`{"a":1`, []string{`a=1`}, false},
		{`{"a" 1}`, nil, false},
		{`{"a":1}x`, []string{`a=1`}, false},
		{`{"a":"unterminated}`, nil, false},
		{``, nil, false},
	} {
		var got []string
		ok := Object([]byte(tc.in), func(k, v []byte) bool {
			got = append(got, string(k)+"="+string(v))
			return true
		})
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("Object(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	// fn stops the walk.
	n := 0
	if Object([]byte(`{"a":1,"b":2}`), func(k, v []byte) bool { n++; return false }) || n != 1 {
		t.Errorf("a stopped walk: %d members seen, reported complete", n)
	}
}

func TestArray(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // elements, in order
		ok   bool
	}{
		{`[]`, nil, true},
		{` [ ] `, nil, true},
		{` [ 1 , "a,]" ,{"b":[2,"]"]}, null,[ ] ] `, []string{`1`, `"a,]"`, `{"b":[2,"]"]}`, `null`, `[ ]`}, true},
		{`{"a":1}`, nil, false},
		{`[1`, []string{`1`}, false},
		{`[1 2]`, []string{`1`}, false},
		{`[1]x`, []string{`1`}, false},
		{`["unterminated]`, nil, false},
		{``, nil, false},
	} {
		var got []string
		ok := Array([]byte(tc.in), func(v []byte) bool {
			got = append(got, string(v))
			return true
		})
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("Array(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	n := 0
	if Array([]byte(`[1,2]`), func(v []byte) bool { n++; return false }) || n != 1 {
		t.Errorf("a stopped walk: %d elements seen, reported complete", n)
	}
}

func TestPlainString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`"abc"`, "abc", true},
		{`""`, "", true},
		{`"a\"b"`, "", false},
		{`"a\u0062"`, "", false},
		{"\"\xff\"", "", false},
		{`5`, "", false},
		{`null`, "", false},
	} {
		if got, ok := PlainString([]byte(tc.in)); got != tc.want || ok != tc.ok {
			t.Errorf("PlainString(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMightFold(t *testing.T) {
	for _, tc := range []struct {
		key, name string
		want      bool
	}{
		{"to", "to", true},
		{"TO", "to", true},
		{"tO", "to", true},
		{"t\\u006f", "to", true},
		{"tö", "to", true},
		{"top", "to", false},
		{"msg", "to", false},
	} {
		if got := MightFold([]byte(tc.key), tc.name); got != tc.want {
			t.Errorf("MightFold(%q, %q) = %v, want %v", tc.key, tc.name, got, tc.want)
		}
	}
}

func TestStringInto(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: dst afterwards, starting from "old"
		ok       bool
	}{
		{`"abc"`, "abc", true},
		{`""`, "", true},
		{`null`, "old", true},
		{`"a\"b"`, "old", false},
		{`5`, "old", false},
		{`["a"]`, "old", false},
	} {
		dst := "old"
		if ok := StringInto(&dst, []byte(tc.in)); dst != tc.want || ok != tc.ok {
			t.Errorf("StringInto(%s) = %q, %v; want %q, %v", tc.in, dst, ok, tc.want, tc.ok)
		}
	}
}

func TestMightFoldAny(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"to", true},
		{"MSG", true},
		{"t\\u006f", true},
		{"from", false},
		{"", false},
	} {
		if got := MightFoldAny([]byte(tc.key), "to", "msg"); got != tc.want {
			t.Errorf("MightFoldAny(%q, to, msg) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestOnce(t *testing.T) {
	var seen bool
	if got := []bool{Once(&seen), Once(&seen), Once(&seen)}; !slices.Equal(got, []bool{true, false, false}) {
		t.Errorf("Once, three times = %v, want [true false false]", got)
	}
}
