package diddoc

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"filippo.io/edwards25519"
	"github.com/mr-tron/base58"
)

// Sentinel errors. Every error returned by this package wraps one of them.
var (
	// ErrInvalidKey: a verkey, did:key or JWK is not a valid Ed25519 public key.
	ErrInvalidKey = errors.New("diddoc: invalid key")
	// ErrInvalidDID: a DID is malformed or does not match its document/hash.
	ErrInvalidDID = errors.New("diddoc: invalid DID")
	// ErrUnsupportedDID: the DID method (or did:peer numalgo) is not supported.
	ErrUnsupportedDID = errors.New("diddoc: unsupported DID")
	// ErrInvalidDoc: a DID document is malformed or has no usable key.
	ErrInvalidDoc = errors.New("diddoc: invalid DID document")
	// ErrInvalidSignature: a JWS or signature decorator is malformed or does not verify.
	ErrInvalidSignature = errors.New("diddoc: invalid signature")
	// ErrUntrustedSigner: a signature verifies but was made by a key that is
	// not allowed to sign this data.
	ErrUntrustedSigner = errors.New("diddoc: untrusted signer")
	// ErrInvalidInput: an argument we were given to build something is invalid.
	ErrInvalidInput = errors.New("diddoc: invalid input")
)

const (
	didKeyPrefix = "did:key:"
	// Multicodec prefixes (unsigned varint) of the public key types we meet.
	ed25519Codec0, ed25519Codec1 = 0xed, 0x01
	x25519Codec0, x25519Codec1   = 0xec, 0x01
	// maxKeyStringLen bounds the strings we try to decode as keys (a base58
	// Ed25519 key is 43–44 characters, a did:key with fragment about 105).
	maxKeyStringLen = 256
	// maxBase58KeyLen is the longest base58 form of 32 bytes.
	maxBase58KeyLen = 44
)

// DIDKeyFromVerkey converts a base58 Ed25519 verkey into its did:key form
// ("did:key:z6Mk…"). It also accepts a did:key (returned normalised).
func DIDKeyFromVerkey(verkey string) (string, error) {
	pub, err := parseVerkey(verkey)
	if err != nil {
		return "", err
	}
	return didKeyFromPub(pub), nil
}

// VerkeyFromDIDKey converts "did:key:z6Mk…" (optionally followed by a
// "#fragment", which is ignored as Credo does) into a base58 verkey. Only
// Ed25519 did:keys are accepted.
func VerkeyFromDIDKey(didKey string) (string, error) {
	pub, err := pubFromDIDKey(didKey)
	if err != nil {
		return "", err
	}
	return base58.Encode(pub), nil
}

// NormalizeVerkey accepts a base58 verkey, a did:key (with or without a
// fragment) or a bare multibase fingerprint ("z6Mk…") and returns the base58
// verkey. It checks that the key is 32 bytes and a valid Ed25519 point.
func NormalizeVerkey(s string) (string, error) {
	pub, err := parseVerkey(s)
	if err != nil {
		return "", err
	}
	return base58.Encode(pub), nil
}

// RouteVerkey is NormalizeVerkey for looking a key up, as a forward's "to":
// a base58 key, the form senders use, is not checked to be a valid Ed25519
// point (a point decompression, most of NormalizeVerkey's cost), since the
// keys it is compared with were checked when they were stored; one that is
// not a point matches none of them.
func RouteVerkey(s string) (string, error) {
	t := strings.TrimSpace(s)
	if len(t) <= maxBase58KeyLen && !strings.HasPrefix(t, "did:") {
		if raw, err := base58.Decode(t); err == nil && len(raw) == ed25519.PublicKeySize {
			return base58.Encode(raw), nil
		}
	}
	return NormalizeVerkey(s)
}

// Fingerprint returns the multibase fingerprint "z6Mk…" of an Ed25519 key
// given as base58 or did:key (the part after "did:key:").
func Fingerprint(verkey string) (string, error) {
	pub, err := parseVerkey(verkey)
	if err != nil {
		return "", err
	}
	return fingerprintFromPub(pub), nil
}

// parseVerkey is NormalizeVerkey returning the raw key.
func parseVerkey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return nil, fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(s) > maxKeyStringLen:
		return nil, fmt.Errorf("%w: key string too long (%d characters)", ErrInvalidKey, len(s))
	case strings.HasPrefix(s, "did:"):
		return pubFromDIDKey(s)
	}
	raw, err := base58.Decode(s)
	if err == nil && len(raw) == ed25519.PublicKeySize {
		return checkEd25519(raw)
	}
	// A bare multibase fingerprint "z6Mk…".
	if strings.HasPrefix(s, "z") {
		if pub, ferr := pubFromFingerprint(s); ferr == nil {
			return pub, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not base58: %v", ErrInvalidKey, truncate(s), err)
	}
	return nil, fmt.Errorf("%w: %q decodes to %d bytes, want %d", ErrInvalidKey, truncate(s), len(raw), ed25519.PublicKeySize)
}

func pubFromDIDKey(didKey string) (ed25519.PublicKey, error) {
	s := strings.TrimSpace(didKey)
	if len(s) > maxKeyStringLen {
		return nil, fmt.Errorf("%w: did:key too long (%d characters)", ErrInvalidKey, len(s))
	}
	if !strings.HasPrefix(s, didKeyPrefix) {
		return nil, fmt.Errorf("%w: %q is not a did:key", ErrInvalidKey, truncate(s))
	}
	id := s[len(didKeyPrefix):]
	if i := strings.IndexAny(id, "#?/"); i >= 0 {
		id = id[:i]
	}
	pub, err := pubFromFingerprint(id)
	if err != nil {
		return nil, fmt.Errorf("%w (in %q)", err, truncate(s))
	}
	return pub, nil
}

// pubFromFingerprint decodes "z" + base58(0xed01 ‖ key).
func pubFromFingerprint(fp string) (ed25519.PublicKey, error) {
	codec, key, err := decodeMultikey(fp)
	if err != nil {
		return nil, err
	}
	if codec != [2]byte{ed25519Codec0, ed25519Codec1} {
		return nil, fmt.Errorf("%w: multicodec 0x%02x%02x is not ed25519-pub", ErrInvalidKey, codec[0], codec[1])
	}
	return checkEd25519(key)
}

// decodeMultikey splits a "z"-multibase multicodec key into its two-byte
// codec prefix and the 32-byte key.
func decodeMultikey(fp string) ([2]byte, []byte, error) {
	var codec [2]byte
	if len(fp) < 2 || fp[0] != 'z' {
		return codec, nil, fmt.Errorf("%w: %q is not a base58btc multibase key", ErrInvalidKey, truncate(fp))
	}
	if len(fp) > maxKeyStringLen {
		return codec, nil, fmt.Errorf("%w: multibase key too long", ErrInvalidKey)
	}
	raw, err := base58.Decode(fp[1:])
	if err != nil {
		return codec, nil, fmt.Errorf("%w: %q is not base58: %v", ErrInvalidKey, truncate(fp), err)
	}
	if len(raw) != 2+32 {
		return codec, nil, fmt.Errorf("%w: multicodec key %q has %d bytes, want 34", ErrInvalidKey, truncate(fp), len(raw))
	}
	codec[0], codec[1] = raw[0], raw[1]
	return codec, raw[2:], nil
}

func checkEd25519(raw []byte) (ed25519.PublicKey, error) {
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 key has %d bytes, want %d", ErrInvalidKey, len(raw), ed25519.PublicKeySize)
	}
	if _, err := new(edwards25519.Point).SetBytes(raw); err != nil {
		return nil, fmt.Errorf("%w: not a valid Ed25519 point", ErrInvalidKey)
	}
	return ed25519.PublicKey(append([]byte(nil), raw...)), nil
}

func fingerprintFromPub(pub ed25519.PublicKey) string {
	return "z" + base58.Encode(append([]byte{ed25519Codec0, ed25519Codec1}, pub...))
}

func x25519FingerprintFromPub(x []byte) string {
	return "z" + base58.Encode(append([]byte{x25519Codec0, x25519Codec1}, x...))
}

func didKeyFromPub(pub ed25519.PublicKey) string {
	return didKeyPrefix + fingerprintFromPub(pub)
}

// x25519FromEd25519 converts an Ed25519 public key to its X25519 (Montgomery)
// form, as libsodium's crypto_sign_ed25519_pk_to_curve25519 does.
func x25519FromEd25519(pub ed25519.PublicKey) ([]byte, error) {
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: not a valid Ed25519 point", ErrInvalidKey)
	}
	return p.BytesMontgomery(), nil
}

// checkOwnKey validates one of our own public keys passed in by the caller.
func checkOwnKey(pub ed25519.PublicKey) error {
	if _, err := checkEd25519(pub); err != nil {
		return fmt.Errorf("%w: our public key: %v", ErrInvalidInput, err)
	}
	return nil
}

func checkOwnPrivateKey(priv ed25519.PrivateKey) (ed25519.PublicKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key has %d bytes, want %d", ErrInvalidInput, len(priv), ed25519.PrivateKeySize)
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key has no Ed25519 public key", ErrInvalidInput)
	}
	if _, err := checkEd25519(pub); err != nil {
		return nil, fmt.Errorf("%w: private key: %v", ErrInvalidInput, err)
	}
	return pub, nil
}

// decodeBase64Any decodes base64 in either alphabet, padded or not, ignoring
// ASCII whitespace (line-wrapped encoders). Mixed alphabets are rejected.
func decodeBase64Any(s string) ([]byte, error) {
	s = stripSpace(s)
	s = strings.TrimRight(s, "=")
	std := strings.ContainsAny(s, "+/")
	url := strings.ContainsAny(s, "-_")
	if std && url {
		return nil, errors.New("mixed base64 and base64url alphabets")
	}
	if url {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// toBase64URLText converts a base64 string textually to unpadded base64url
// exactly as Credo's base64ToBase64URL does (no decoding).
func toBase64URLText(s string) string {
	s = strings.ReplaceAll(s, "+", "-")
	s = strings.ReplaceAll(s, "/", "_")
	return strings.ReplaceAll(s, "=", "")
}

func stripSpace(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// truncate shortens attacker-controlled strings before they go into errors.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
