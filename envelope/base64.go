package envelope

import (
	"bytes"
	"encoding/base64"
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

// appendDecode decodes the lenient base64 value src into a new slice whose
// capacity exceeds its length by extra bytes.
func appendDecode(src []byte, extra int) ([]byte, error) {
	src = trimPadding(src)
	// Try base64url first, as nearly everyone sends it; only on failure look
	// for the standard alphabet, so that the common case scans src once.
	n := base64.RawURLEncoding.DecodedLen(len(src))
	dst := make([]byte, n, n+extra)
	n, err := base64.RawURLEncoding.Decode(dst, src)
	if err != nil && bytes.ContainsAny(src, "+/") {
		n, err = base64.RawStdEncoding.Decode(dst, src)
	}
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}

// decodeString decodes a small lenient base64 value.
func decodeString(s string) ([]byte, error) {
	return appendDecode([]byte(s), 0)
}
