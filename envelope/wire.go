package envelope

import (
	"bytes"
	"encoding/json"

	"github.com/openmediator/mediator/internal/jsonscan"
)

// outerFields holds the four base64 texts of a packed message's outer object,
// still encoded. A nil field was absent (or null).
type outerFields struct {
	protected, iv, ciphertext, tag []byte
}

// splitOuter extracts the outer fields of a packed message.
//
// encoding/json validates the whole input and then scans it again to decode,
// one state-machine step per byte, which for the ciphertext (the bulk of every
// message, megabytes for a forwarded credential) costs several times the
// decryption itself. So the shape every agent sends, an object of the four
// string fields without escapes, is scanned here in one tight pass, and
// anything else (escapes, extra or null fields, syntax errors) is left to
// encoding/json, which stays the reference for what is valid.
func splitOuter(data []byte) (outerFields, error) {
	if f, ok := scanOuter(data); ok {
		return f, nil
	}
	var w struct {
		Protected  *string `json:"protected"`
		IV         *string `json:"iv"`
		Ciphertext *string `json:"ciphertext"`
		Tag        *string `json:"tag"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return outerFields{}, err
	}
	bytesOf := func(s *string) []byte {
		if s == nil {
			return nil
		}
		return append([]byte{}, *s...) // non-nil even when empty
	}
	return outerFields{bytesOf(w.Protected), bytesOf(w.IV), bytesOf(w.Ciphertext), bytesOf(w.Tag)}, nil
}

// scanOuter is the fast path of splitOuter: an object whose keys are exactly
// the four field names and whose values are strings without escapes. It
// reports ok only for input that encoding/json would decode to the same
// fields, or that fails base64 decoding later in any case (see scanString).
// The returned slices alias data.
func scanOuter(data []byte) (f outerFields, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return f, false
	}
	i = skipSpace(data, i+1)
	for {
		key, next, ok := scanString(data, i)
		if !ok {
			return f, false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return f, false
		}
		val, next, ok := scanString(data, skipSpace(data, i+1))
		if !ok {
			return f, false
		}
		// Duplicates: the last one wins, as with encoding/json.
		switch string(key) {
		case "protected":
			f.protected = val
		case "iv":
			f.iv = val
		case "ciphertext":
			f.ciphertext = val
		case "tag":
			f.tag = val
		default:
			// Other keys may differ only in case from ours (encoding/json
			// matches those) or hold any value: not worth handling here.
			return f, false
		}
		i = skipSpace(data, next)
		if i >= len(data) {
			return f, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return f, skipSpace(data, i+1) == len(data)
		default:
			return f, false
		}
	}
}

// scanString scans the JSON string starting at data[i] and returns its
// contents and the index after the closing quote. It refuses (ok false)
// strings with escapes or line breaks, so that what it accepts is the
// string's value. Other control and non-ASCII bytes, which JSON forbids or
// encoding/json would replace, are let through: no field accepts them later
// (base64 rejects them, field names do not match), so they end up malformed
// either way. The searches are bytes.IndexByte's, which are vectorised: a
// byte-at-a-time loop here would cost as much as the base64 decoding.
func scanString(data []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	n := bytes.IndexByte(data[i+1:], '"')
	if n < 0 {
		return nil, 0, false
	}
	s = data[i+1 : i+1+n : i+1+n]
	// An escaped quote would have ended the search early, but then s
	// contains the backslash. Go's base64 decoder skips \r and \n, so they
	// must be refused here.
	if bytes.IndexByte(s, '\\') >= 0 || bytes.IndexByte(s, '\n') >= 0 || bytes.IndexByte(s, '\r') >= 0 {
		return nil, 0, false
	}
	return s, i + 2 + n, true
}

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// parseHeader decodes the protected header b into h, a zero wireHeader,
// exactly as json.Unmarshal does. The usual header (plain strings, each
// field once) is scanned without reflection: json.Unmarshal of it was a
// twentieth of the mediator's CPU per forward. Anything unusual is left to
// json.Unmarshal.
func parseHeader(b []byte, h *wireHeader) error {
	if jsonscan.Valid(b) && scanHeader(b, h) {
		return nil
	}
	*h = wireHeader{}
	return json.Unmarshal(b, h)
}

// scanHeader is parseHeader's fast path for b, valid JSON. It reports false
// where its result might differ from json.Unmarshal's: a key given twice, a
// key that matches a field only case-insensitively or through escapes, a
// string with escapes, a value of the wrong type. wireHeader's and
// wireRecipient's fields are all here (see TestScanHeaderCoversWireHeader).
func scanHeader(b []byte, h *wireHeader) bool {
	var seen [4]bool
	return jsonscan.Object(b, func(key, v []byte) bool {
		switch string(key) {
		case "enc":
			return jsonscan.Once(&seen[0]) && jsonscan.StringInto(&h.Enc, v)
		case "typ":
			return jsonscan.Once(&seen[1]) && jsonscan.StringInto(&h.Typ, v)
		case "alg":
			return jsonscan.Once(&seen[2]) && jsonscan.StringInto(&h.Alg, v)
		case "recipients":
			return jsonscan.Once(&seen[3]) && scanRecipients(v, &h.Recipients)
		}
		return !jsonscan.MightFoldAny(key, "enc", "typ", "alg", "recipients")
	})
}

// scanRecipients decodes the recipients array v: null leaves dst nil, as
// json.Unmarshal does, and [] makes it empty but not nil.
func scanRecipients(v []byte, dst *[]wireRecipient) bool {
	if string(v) == "null" {
		return true
	}
	rs := []wireRecipient{}
	ok := jsonscan.Array(v, func(el []byte) bool {
		rs = append(rs, wireRecipient{})
		return string(el) == "null" || scanRecipient(el, &rs[len(rs)-1])
	})
	*dst = rs
	return ok
}

func scanRecipient(b []byte, r *wireRecipient) bool {
	var seen [2]bool
	return jsonscan.Object(b, func(key, v []byte) bool {
		switch string(key) {
		case "encrypted_key":
			return jsonscan.Once(&seen[0]) && jsonscan.StringInto(&r.EncryptedKey, v)
		case "header":
			return jsonscan.Once(&seen[1]) && (string(v) == "null" || scanRecipientHeader(v, r))
		}
		return !jsonscan.MightFoldAny(key, "encrypted_key", "header")
	})
}

func scanRecipientHeader(b []byte, r *wireRecipient) bool {
	var seen [3]bool
	return jsonscan.Object(b, func(key, v []byte) bool {
		switch string(key) {
		case "kid":
			return jsonscan.Once(&seen[0]) && jsonscan.StringInto(&r.Header.Kid, v)
		case "sender":
			return jsonscan.Once(&seen[1]) && jsonscan.StringInto(&r.Header.Sender, v)
		case "iv":
			return jsonscan.Once(&seen[2]) && jsonscan.StringInto(&r.Header.IV, v)
		}
		return !jsonscan.MightFoldAny(key, "kid", "sender", "iv")
	})
}
