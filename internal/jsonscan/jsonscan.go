// Package jsonscan walks the top level of a JSON object that is known to be
// valid (json.Valid or a decoder has checked it), far faster than
// encoding/json decodes it: it finds the ends of values with bytes.IndexByte
// and bracket counting instead of a full state machine, and allocates
// nothing. It serves messages whose bulk is one large value that only needs
// passing on (a forward's inner message).
//
// Object does not validate. Callers use it as a fast path, check that what
// it found is in the plain form they expect (see PlainString, MightFold),
// and leave anything else to encoding/json, so that the answer is always
// encoding/json's. Valid is json.Valid's check, faster.
package jsonscan

import (
	"bytes"
	"unicode/utf8"
)

// Object calls fn with the key (the raw bytes between its quotes) and the
// raw value of each member of the object b, in order, until fn returns
// false. It reports whether it walked the whole object: false when fn
// stopped it or b is not an object after all.
func Object(b []byte, fn func(key, value []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		kEnd := skipString(b, i)
		if kEnd < 0 {
			return false
		}
		key := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vEnd := skipValue(b, i)
		if vEnd < 0 {
			return false
		}
		if !fn(key, b[i:vEnd]) {
			return false
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return false
		}
		i = skipSpace(b, i+1)
	}
}

// Array calls fn with each raw element of the array b, in order, until fn
// returns false. It reports whether it walked the whole array: false when
// fn stopped it or b is not an array after all.
func Array(b []byte, fn func(value []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		end := skipValue(b, i)
		if end < 0 {
			return false
		}
		if !fn(b[i:end]) {
			return false
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return false
		}
		if b[i] == ']' {
			return skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return false
		}
		i = skipSpace(b, i+1)
	}
}

// PlainString returns the text of v, a raw JSON value, if it is a string
// that encoding/json would decode to its bytes unchanged: no escapes, valid
// UTF-8 (encoding/json replaces bad bytes).
func PlainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

// StringInto does what encoding/json does with v, a raw value, for a string
// field dst, where that is plain: it stores a PlainString, leaves dst alone
// for null, and reports false for anything else (escapes, other types).
func StringInto(dst *string, v []byte) bool {
	if string(v) == "null" {
		return true
	}
	s, ok := PlainString(v)
	if ok {
		*dst = s
	}
	return ok
}

// MightFold reports whether key might name the field name under
// encoding/json's case-insensitive matching: any escape or non-ASCII byte
// counts as might (Unicode folding is not worth repeating here).
func MightFold(key []byte, name string) bool {
	for _, c := range key {
		if c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return bytes.EqualFold(key, []byte(name))
}

// Once marks a field seen and reports whether it was not seen before: a
// scanner that meets a key twice leaves the input to encoding/json, whose
// last-one-wins merging it does not repeat.
func Once(seen *bool) bool {
	if *seen {
		return false
	}
	*seen = true
	return true
}

// MightFoldAny reports whether MightFold(key, name) holds for any of names.
func MightFoldAny(key []byte, names ...string) bool {
	for _, n := range names {
		if MightFold(key, n) {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] (a
// quote), or -1.
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		j += k
		// Escaped if preceded by an odd number of backslashes.
		n := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j := skipString(b, i)
				if j < 0 {
					return -1
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
