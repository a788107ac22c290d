package diddoc

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mr-tron/base58"
)

// ConnectionSigType is the @type of a Connections 1.0 connection~sig.
const ConnectionSigType = "https://didcomm.org/signature/1.0/ed25519Sha512_single"

const connectionSigTypeSuffix = "/signature/1.0/ed25519Sha512_single"

type connectionSig struct {
	Type      string `json:"@type"`
	Signature string `json:"signature"`
	SigData   string `json:"sig_data"`
	Signer    string `json:"signer"`
}

// SignConnection builds a connection~sig decorator (RFC 0234
// ed25519Sha512_single) over the Connections 1.0 "connection" object
// {"DID":…,"DIDDoc":…}: sig_data = base64url(8-byte big-endian timestamp ‖
// connection JSON), signature = base64url(Ed25519 signature over those
// bytes), signer = base58 verkey. The timestamp is in seconds since the
// epoch as RFC 0234 and ACA-Py have it (Credo writes milliseconds; nobody
// reads it back). connectionJSON is compacted but otherwise signed as given.
func SignConnection(connectionJSON []byte, priv ed25519.PrivateKey, now time.Time) (json.RawMessage, error) {
	pub, err := checkOwnPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, connectionJSON); err != nil {
		return nil, fmt.Errorf("%w: connection is not JSON: %v", ErrInvalidInput, err)
	}
	if compact.Len() == 0 || compact.Bytes()[0] != '{' {
		return nil, fmt.Errorf("%w: connection is not a JSON object", ErrInvalidInput)
	}
	ts := now.Unix()
	if ts < 0 {
		return nil, fmt.Errorf("%w: timestamp before 1970", ErrInvalidInput)
	}
	data := make([]byte, 8, 8+compact.Len())
	binary.BigEndian.PutUint64(data, uint64(ts))
	data = append(data, compact.Bytes()...)
	sig := ed25519.Sign(priv, data)
	out, err := json.Marshal(connectionSig{
		Type:      ConnectionSigType,
		Signature: b64url(sig),
		SigData:   b64url(data),
		Signer:    base58.Encode(pub),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return out, nil
}

// VerifyConnection checks a connection~sig decorator and returns the signed
// connection JSON (sig_data without its 8-byte timestamp) and the signer's
// base58 verkey. The caller must check that the signer is the key it
// expects (for a response: the invitation key). The @type may use the
// https://didcomm.org/ or the did:sov:…;spec/ prefix; base64 in either
// alphabet, padded or not; the signer may be base58 or did:key.
func VerifyConnection(sig json.RawMessage) (connectionJSON []byte, signerVerkey string, err error) {
	var cs connectionSig
	if err := json.Unmarshal(sig, &cs); err != nil {
		return nil, "", fmt.Errorf("%w: connection~sig is not a JSON object of strings", ErrInvalidSignature)
	}
	if !strings.HasSuffix(cs.Type, connectionSigTypeSuffix) {
		return nil, "", fmt.Errorf("%w: connection~sig @type %q is not ed25519Sha512_single", ErrInvalidSignature, truncate(cs.Type))
	}
	pub, err := parseVerkey(cs.Signer)
	if err != nil {
		return nil, "", fmt.Errorf("%w: signer: %v", ErrInvalidSignature, err)
	}
	data, err := decodeBase64Any(cs.SigData)
	if err != nil {
		return nil, "", fmt.Errorf("%w: sig_data: %v", ErrInvalidSignature, err)
	}
	if len(data) <= 8 {
		return nil, "", fmt.Errorf("%w: sig_data too short", ErrInvalidSignature)
	}
	s, err := decodeBase64Any(cs.Signature)
	if err != nil || len(s) != ed25519.SignatureSize {
		return nil, "", fmt.Errorf("%w: signature is not a base64 Ed25519 signature", ErrInvalidSignature)
	}
	if !ed25519.Verify(pub, data, s) {
		return nil, "", fmt.Errorf("%w: connection~sig does not verify", ErrInvalidSignature)
	}
	body := data[8:]
	if !json.Valid(body) {
		return nil, "", fmt.Errorf("%w: signed connection is not JSON", ErrInvalidSignature)
	}
	return body, base58.Encode(pub), nil
}

// ConnectionSigTime returns the timestamp inside a connection~sig's
// sig_data, interpreting it as seconds or, if implausibly large,
// milliseconds (Credo). It does not verify the signature.
func ConnectionSigTime(sig json.RawMessage) (time.Time, error) {
	var cs connectionSig
	if err := json.Unmarshal(sig, &cs); err != nil {
		return time.Time{}, fmt.Errorf("%w: connection~sig is not a JSON object of strings", ErrInvalidSignature)
	}
	data, err := decodeBase64Any(cs.SigData)
	if err != nil || len(data) < 8 {
		return time.Time{}, fmt.Errorf("%w: sig_data malformed", ErrInvalidSignature)
	}
	v := binary.BigEndian.Uint64(data[:8])
	const msThreshold = 1 << 40 // ~ year 36812 in seconds, 2004 in ms
	if v >= msThreshold {
		if v > 1<<62 {
			return time.Time{}, fmt.Errorf("%w: timestamp out of range", ErrInvalidSignature)
		}
		return time.UnixMilli(int64(v)).UTC(), nil
	}
	return time.Unix(int64(v), 0).UTC(), nil
}
