package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Lenient base64: agents send base64url unpadded (Askar, Credo, ACA-Py) or
// padded (indy-sdk), and a few libraries fall back to the standard alphabet.
// All of them are accepted; a mix of the two alphabets in one value is not.

// trimPadding removes up to two trailing '=' characters.
func trimPadding(s []byte) []byte {
	for i := 0; i < 2 && len(s) > 0 && s[len(s)-1] == '='; i++ {
		s = s[:len(s)-1]
	}
	return s
}

// encodingFor picks the alphabet of an unpadded value.
func encodingFor(s []byte) *base64.Encoding {
	if bytes.ContainsAny(s, "+/") {
		return base64.RawStdEncoding
	}
	return base64.RawURLEncoding
}

// appendDecode decodes the lenient base64 value src into a new slice whose
// capacity exceeds its length by extra bytes.
func appendDecode(src []byte, extra int) ([]byte, error) {
	src = trimPadding(src)
	enc := encodingFor(src)
	dst := make([]byte, enc.DecodedLen(len(src)), enc.DecodedLen(len(src))+extra)
	n, err := enc.Decode(dst, src)
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}

// decodeString decodes a small lenient base64 value.
func decodeString(s string) ([]byte, error) {
	return appendDecode([]byte(s), 0)
}

var errNotString = errors.New("not a JSON string")

// jsonString returns the contents of the JSON string token data. If the
// string has no escapes (always, for base64) it is a sub-slice of data and
// nothing is copied; otherwise it is unquoted into a new slice.
func jsonString(data []byte) ([]byte, error) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return nil, errNotString
	}
	inner := data[1 : len(data)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// protectedField is the protected header: its text, kept as the AAD, and the
// decoded JSON. Decoding it in UnmarshalJSON avoids an intermediate string.
type protectedField struct {
	text    []byte
	decoded []byte
}

// UnmarshalJSON implements json.Unmarshaler. null leaves the field unset.
func (p *protectedField) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	s, err := jsonString(data)
	if err != nil {
		return fmt.Errorf("protected: %w", err)
	}
	decoded, err := appendDecode(s, 0)
	if err != nil {
		return fmt.Errorf("protected: %w", err)
	}
	p.text = append(make([]byte, 0, len(s)), s...) // s may alias the input
	p.decoded = decoded
	return nil
}

// ciphertextField is the decoded ciphertext, with spare capacity for the tag
// so that ciphertext||tag needs no copy. Decoding in UnmarshalJSON saves two
// copies of what is usually the bulk of the message.
type ciphertextField []byte

// UnmarshalJSON implements json.Unmarshaler. null leaves the field unset.
func (c *ciphertextField) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	s, err := jsonString(data)
	if err != nil {
		return fmt.Errorf("ciphertext: %w", err)
	}
	b, err := appendDecode(s, tagSize)
	if err != nil {
		return fmt.Errorf("ciphertext: %w", err)
	}
	*c = b
	return nil
}
