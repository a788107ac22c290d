// Package envelope packs and unpacks DIDComm v1 ("Aries", RFC 0019) encrypted
// envelopes, the wire format of every message the mediator sends or receives.
//
// A packed message is the JSON object {protected, iv, ciphertext, tag}.
// protected is the base64url encoding of
//
//	{"enc":"xchacha20poly1305_ietf","typ":"JWM/1.0","alg":"Authcrypt"|"Anoncrypt",
//	 "recipients":[{"encrypted_key":…,"header":{"kid":…,"sender":…,"iv":…}}]}
//
// and its base64url text, byte for byte as received, is the additional
// authenticated data of the content encryption.
//
// The package follows what deployed agents (Askar, indy-sdk, ACA-Py, Credo)
// actually do rather than the letter of the RFC:
//
//   - The content is sealed with ChaCha20-Poly1305 IETF and a 12-byte nonce
//     although the header says "xchacha20poly1305_ietf". On input the cipher is
//     chosen by the nonce length, so XChaCha20-Poly1305 (24-byte nonce) is
//     accepted too.
//   - base64 fields are accepted padded or unpadded, in the URL-safe or the
//     standard alphabet (old indy-sdk pads); output is unpadded base64url, as
//     Askar emits.
//   - Authcrypt wraps the content key per recipient with crypto_box
//     (X25519, XSalsa20-Poly1305) between the sender's and the recipient's
//     keys, and hides the sender's base58 verkey in a sealed box. Anoncrypt
//     wraps the content key in a sealed box. The X25519 keys are converted from
//     the parties' Ed25519 keys, as libsodium does.
//
// The package's own implementation exists because aries-framework-go's legacy
// packers reject unpadded base64url and panic on 24-byte nonces; this one must
// never panic on any input, since every byte of it comes from the network.
package envelope

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/mr-tron/base58"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// Errors returned by Parse, Open and Unpack, always wrapped with details;
// test for them with errors.Is.
var (
	// ErrMalformed reports a packed message that is structurally invalid: not
	// JSON, a missing or mistyped field, bad base64, a wrong length, an
	// unsupported algorithm, or a sender key that does not decode to an
	// Ed25519 public key.
	ErrMalformed = errors.New("envelope: malformed packed message")
	// ErrNoRecipient reports that none of the envelope's recipient keys is one
	// we hold (or, for Open, that the requested kid is not among them).
	ErrNoRecipient = errors.New("envelope: no recipient key is ours")
	// ErrDecrypt reports that a key unwrap or the content decryption failed
	// authentication: wrong key, tampered envelope or a forged sender.
	ErrDecrypt = errors.New("envelope: decryption failed")
)

// MaxRecipients bounds the recipients of one envelope, on input and output.
// Real envelopes have one or a handful; the bound keeps a hostile header from
// costing more than a few key unwraps' worth of parsing.
const MaxRecipients = 100

// Algorithm and encryption labels of the protected header.
const (
	algAuthcrypt = "Authcrypt"
	algAnoncrypt = "Anoncrypt"
	encLabel     = "xchacha20poly1305_ietf" // what everyone emits, whatever the nonce
	encLabelIETF = "chacha20poly1305_ietf"  // accepted: it names what is really used
	typLabel     = "JWM/1.0"
)

// Sizes of the binary fields.
const (
	keySize          = 32 // Ed25519 / X25519 public keys, content key
	tagSize          = chacha20poly1305.Overhead
	boxNonceSize     = 24
	authKeySize      = keySize + box.Overhead          // crypto_box(cek)
	anonKeySize      = keySize + box.AnonymousOverhead // crypto_box_seal(cek)
	minB58KeyLen     = 32                              // base58 of 32 bytes: 32 ('1'*32) …
	maxB58KeyLen     = 44                              // … to 44 characters
	minSenderBoxSize = minB58KeyLen + box.AnonymousOverhead
	maxSenderBoxSize = maxB58KeyLen + box.AnonymousOverhead
)

// Envelope is a parsed, not yet decrypted, packed message. It is immutable,
// so Open may be called on it concurrently.
type Envelope struct {
	anon       bool
	aad        []byte // the protected header's base64 text as received
	nonce      []byte // 12 (ChaCha20) or 24 (XChaCha20) bytes
	sealed     []byte // ciphertext || tag, as the AEAD wants it
	recipients []recipient
}

// recipient is one entry of the protected header, decoded and length-checked.
type recipient struct {
	kid    string   // base58 Ed25519 verkey, as in the header
	pub    [32]byte // kid decoded
	encKey []byte   // authKeySize (authcrypt) or anonKeySize (anoncrypt)
	sender []byte   // sealed base58 sender verkey; authcrypt only
	iv     [24]byte // crypto_box nonce; authcrypt only
}

// Unpacked is the result of decrypting an envelope.
type Unpacked struct {
	Plaintext    []byte
	RecipientKey string // base58 verkey of ours the message was opened with
	SenderKey    string // base58 verkey of the sender; "" for anoncrypt
}

// wireHeader is the decoded protected header.
type wireHeader struct {
	Enc        string          `json:"enc"`
	Typ        string          `json:"typ"`
	Alg        string          `json:"alg"`
	Recipients []wireRecipient `json:"recipients"`
}

type wireRecipient struct {
	EncryptedKey string `json:"encrypted_key"`
	Header       struct {
		Kid    string `json:"kid"`
		Sender string `json:"sender"`
		IV     string `json:"iv"`
	} `json:"header"`
}

// Parse decodes and validates the structure of a packed message without
// decrypting anything, so that the caller can pick a key by Kids. Every
// structural problem is reported as a wrapped ErrMalformed.
func Parse(packed []byte) (*Envelope, error) {
	f, err := splitOuter(packed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case f.protected == nil:
		return nil, fmt.Errorf("%w: missing protected", ErrMalformed)
	case f.iv == nil:
		return nil, fmt.Errorf("%w: missing iv", ErrMalformed)
	case f.ciphertext == nil:
		return nil, fmt.Errorf("%w: missing ciphertext", ErrMalformed)
	case f.tag == nil:
		return nil, fmt.Errorf("%w: missing tag", ErrMalformed)
	}

	nonce, err := appendDecode(f.iv, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: iv: %w", ErrMalformed, err)
	}
	if len(nonce) != chacha20poly1305.NonceSize && len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, fmt.Errorf("%w: iv is %d bytes, want %d or %d", ErrMalformed,
			len(nonce), chacha20poly1305.NonceSize, chacha20poly1305.NonceSizeX)
	}
	tag, err := appendDecode(f.tag, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: tag: %w", ErrMalformed, err)
	}
	if len(tag) != tagSize {
		return nil, fmt.Errorf("%w: tag is %d bytes, want %d", ErrMalformed, len(tag), tagSize)
	}
	headerJSON, err := appendDecode(f.protected, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: protected: %w", ErrMalformed, err)
	}
	var h wireHeader
	if err := parseHeader(headerJSON, &h); err != nil {
		return nil, fmt.Errorf("%w: protected header: %w", ErrMalformed, err)
	}
	e := &Envelope{
		// Copied: f may alias packed, whose buffer the caller may reuse.
		aad:   bytes.Clone(f.protected),
		nonce: nonce,
	}
	if err := e.setHeader(&h); err != nil {
		return nil, err
	}
	// Decoded last: it is the big one, not worth decoding for a bad header.
	// The spare capacity takes the tag without a copy.
	sealed, err := appendDecode(f.ciphertext, tagSize)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext: %w", ErrMalformed, err)
	}
	e.sealed = append(sealed, tag...)
	return e, nil
}

// setHeader validates the decoded protected header and stores its recipients.
func (e *Envelope) setHeader(h *wireHeader) error {
	switch {
	case strings.EqualFold(h.Alg, algAuthcrypt):
	case strings.EqualFold(h.Alg, algAnoncrypt):
		e.anon = true
	default:
		return fmt.Errorf("%w: unsupported alg %.40q", ErrMalformed, h.Alg)
	}
	if h.Enc != encLabel && h.Enc != encLabelIETF {
		return fmt.Errorf("%w: unsupported enc %.40q", ErrMalformed, h.Enc)
	}
	// typ is not checked: it carries no security meaning and agents have
	// been seen to vary it.
	switch n := len(h.Recipients); {
	case n == 0:
		return fmt.Errorf("%w: no recipients", ErrMalformed)
	case n > MaxRecipients:
		return fmt.Errorf("%w: %d recipients, limit is %d", ErrMalformed, n, MaxRecipients)
	}
	e.recipients = make([]recipient, len(h.Recipients))
	for i := range h.Recipients {
		if err := e.recipients[i].set(&h.Recipients[i], e.anon); err != nil {
			return fmt.Errorf("%w: recipient %d: %w", ErrMalformed, i, err)
		}
	}
	return nil
}

// set validates one wire recipient. Authcrypt recipients must carry both
// sender and iv and anoncrypt ones neither, so that alg alone says whether
// the message is authenticated; every known packer does exactly that.
func (r *recipient) set(w *wireRecipient, anon bool) error {
	kid := w.Header.Kid
	if err := decodeVerkey(r.pub[:], kid); err != nil {
		return fmt.Errorf("kid: %w", err)
	}
	r.kid = kid

	var err error
	if r.encKey, err = decodeString(w.EncryptedKey); err != nil {
		return fmt.Errorf("encrypted_key: %w", err)
	}
	want := authKeySize
	if anon {
		want = anonKeySize
	}
	if len(r.encKey) != want {
		return fmt.Errorf("encrypted_key is %d bytes, want %d", len(r.encKey), want)
	}

	if anon {
		if w.Header.Sender != "" || w.Header.IV != "" {
			return errors.New("anoncrypt recipient has sender or iv")
		}
		return nil
	}
	if w.Header.Sender == "" {
		return errors.New("authcrypt recipient without sender")
	}
	if w.Header.IV == "" {
		return errors.New("authcrypt recipient without iv")
	}
	if r.sender, err = decodeString(w.Header.Sender); err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	if n := len(r.sender); n < minSenderBoxSize || n > maxSenderBoxSize {
		return fmt.Errorf("sender is %d bytes, want %d to %d", n, minSenderBoxSize, maxSenderBoxSize)
	}
	iv, err := decodeString(w.Header.IV)
	if err != nil {
		return fmt.Errorf("iv: %w", err)
	}
	if len(iv) != boxNonceSize {
		return fmt.Errorf("iv is %d bytes, want %d", len(iv), boxNonceSize)
	}
	copy(r.iv[:], iv)
	return nil
}

// decodeVerkey decodes a base58 Ed25519 verkey into dst (32 bytes). Only the
// length is checked here; curve membership is checked when the key is used.
func decodeVerkey(dst []byte, s string) error {
	// Bound the length first: base58 decoding is quadratic.
	if len(s) < minB58KeyLen || len(s) > maxB58KeyLen {
		return fmt.Errorf("base58 key has %d characters, want %d to %d", len(s), minB58KeyLen, maxB58KeyLen)
	}
	b, err := base58.Decode(s)
	if err != nil {
		return fmt.Errorf("base58: %w", err)
	}
	if len(b) != keySize {
		return fmt.Errorf("base58 key is %d bytes, want %d", len(b), keySize)
	}
	copy(dst, b)
	return nil
}

// Kids returns the recipients' base58 verkeys in header order.
func (e *Envelope) Kids() []string {
	kids := make([]string, len(e.recipients))
	for i := range e.recipients {
		kids[i] = e.recipients[i].kid
	}
	return kids
}

// Anoncrypt reports whether the envelope is anonymous, i.e. carries no sender.
func (e *Envelope) Anoncrypt() bool { return e.anon }

// Open decrypts the envelope as the recipient kid, whose Ed25519 private key
// is priv. It returns a wrapped ErrNoRecipient if kid is not a recipient,
// ErrDecrypt if priv is not kid's key or authentication fails, and
// ErrMalformed if the decrypted sender is not an Ed25519 verkey. To open
// many envelopes with one key, make it a Key once and use OpenWith.
func (e *Envelope) Open(kid string, priv ed25519.PrivateKey) (Unpacked, error) {
	r, err := e.recipient(kid)
	if err != nil {
		return Unpacked{}, err
	}
	if len(priv) != ed25519.PrivateKeySize {
		return Unpacked{}, fmt.Errorf("%w: private key is %d bytes, want %d", ErrDecrypt, len(priv), ed25519.PrivateKeySize)
	}
	// An Ed25519 private key carries its public key in the second half.
	// Checking it is cheaper than a failed unwrap and gives a clearer error.
	if !bytes.Equal(priv[32:], r.pub[:]) {
		return Unpacked{}, fmt.Errorf("%w: private key does not belong to kid %s", ErrDecrypt, r.kid)
	}
	k, err := NewKey(priv)
	if err != nil {
		return Unpacked{}, fmt.Errorf("%w: recipient key %s: %w", ErrDecrypt, r.kid, err)
	}
	return e.open(r, k)
}

// OpenWith decrypts the envelope as the recipient k.Verkey(); its errors
// are those of Open.
func (e *Envelope) OpenWith(k *Key) (Unpacked, error) {
	r, err := e.recipient(k.verkey)
	if err != nil {
		return Unpacked{}, err
	}
	return e.open(r, k)
}

func (e *Envelope) recipient(kid string) (*recipient, error) {
	for i := range e.recipients {
		if e.recipients[i].kid == kid {
			return &e.recipients[i], nil
		}
	}
	return nil, fmt.Errorf("%w: kid %.50q is not a recipient", ErrNoRecipient, kid)
}

func (e *Envelope) open(r *recipient, k *Key) (Unpacked, error) {
	ourPriv, us := &k.x, &k.u
	var cekBuf [keySize]byte
	defer clear(cekBuf[:])
	var senderKey string
	if e.anon {
		if _, ok := openAnonymous(cekBuf[:0], r.encKey, us, ourPriv); !ok {
			return Unpacked{}, fmt.Errorf("%w: content key (anoncrypt) for %s", ErrDecrypt, r.kid)
		}
	} else {
		var b58 [maxB58KeyLen]byte
		s, ok := openAnonymous(b58[:0], r.sender, us, ourPriv)
		if !ok {
			return Unpacked{}, fmt.Errorf("%w: sender for %s", ErrDecrypt, r.kid)
		}
		var senderEd [32]byte
		if err := decodeVerkey(senderEd[:], string(s)); err != nil {
			return Unpacked{}, fmt.Errorf("%w: sender key: %w", ErrMalformed, err)
		}
		shared, err := k.shared(senderEd[:])
		if err != nil {
			return Unpacked{}, fmt.Errorf("%w: sender key: %w", ErrMalformed, err)
		}
		// crypto_box_open_easy with the key k shares with the sender.
		if _, ok := secretbox.Open(cekBuf[:0], r.encKey, &r.iv, &shared.box); !ok {
			return Unpacked{}, fmt.Errorf("%w: content key (authcrypt) for %s", ErrDecrypt, r.kid)
		}
		senderKey = string(s)
	}

	aead, err := newAEAD(cekBuf[:], len(e.nonce))
	if err != nil {
		return Unpacked{}, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	plaintext, err := aead.Open(nil, e.nonce, e.sealed, e.aad)
	if err != nil {
		return Unpacked{}, fmt.Errorf("%w: content: %w", ErrDecrypt, err)
	}
	return Unpacked{Plaintext: plaintext, RecipientKey: r.kid, SenderKey: senderKey}, nil
}

// Unpack parses packed, opens it with the key of the first recipient that
// lookup knows, and returns the result. lookup is asked about recipients in
// header order; it returns a wrapped ErrNoRecipient if none is known.
func Unpack(packed []byte, lookup func(verkey string) (ed25519.PrivateKey, bool)) (Unpacked, error) {
	e, err := Parse(packed)
	if err != nil {
		return Unpacked{}, err
	}
	if lookup != nil {
		for i := range e.recipients {
			if priv, ok := lookup(e.recipients[i].kid); ok {
				return e.Open(e.recipients[i].kid, priv)
			}
		}
	}
	return Unpacked{}, fmt.Errorf("%w: %d recipient(s), none known", ErrNoRecipient, len(e.recipients))
}
