package envelope

import (
	"crypto/rand"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/salsa20/salsa"
)

// crypto_box and crypto_box_seal (libsodium), on our own X25519 (x25519.go).
//
// Why not golang.org/x/crypto/nacl/box: its X25519 goes through crypto/ecdh,
// whose NewPrivateKey computes a public key that box never uses, so every box
// operation costs two Montgomery ladders, and the ephemeral key of a sealed
// box another two. Here a box key is one ladder (x25519), and a sealed box's
// ephemeral public key comes from edwards25519's precomputed fixed-base
// tables: a box key costs about half of box.Precompute, a sealed box about
// 40% of box.SealAnonymous (BenchmarkBoxKey, BenchmarkSealAnonymous and their
// Nacl counterparts), and these are nearly all of the cost of Pack and Open.
// The primitives (the field arithmetic of edwards25519, HSalsa20,
// XSalsa20-Poly1305, BLAKE2b) are the vetted ones; the composition is tested
// against nacl/box, crypto/ecdh and libsodium (nacl_test.go, x25519_test.go,
// vectors_test.go).
//
// The only behavioural difference from libsodium is on inputs no honest
// party produces: Ed25519 public keys of small order are refused when they
// are decoded (peer.set), as libsodium's key conversion does.

var errNotOnCurve = errors.New("public key is not on the curve")

// peer is a public key's X25519 form (its Montgomery u-coordinate), which
// box keys are computed with and sealed-box nonces hash.
type peer struct {
	u [32]byte
}

// set decodes an Ed25519 public key into k. It refuses encodings off the
// curve and points of small order, whose shared secrets are predictable.
func (k *peer) set(pub []byte) error {
	if len(pub) != keySize {
		return fmt.Errorf("public key is %d bytes, want %d", len(pub), keySize)
	}
	var p edwards25519.Point
	if _, err := p.SetBytes(pub); err != nil {
		return errNotOnCurve
	}
	var p8 edwards25519.Point
	if p8.MultByCofactor(&p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return errSmallOrder
	}
	copy(k.u[:], p.BytesMontgomery())
	return nil
}

// boxKey computes the crypto_box shared key of an X25519 private key (any 32
// bytes; clamped as X25519 does) and a peer's u-coordinate:
// HSalsa20(X25519(priv, u), 0). It reports false for a small-order u (the
// shared secret would be zero), as libsodium does.
func boxKey(key, priv, peerU *[32]byte) bool {
	if !x25519(key, priv, peerU) {
		clear(key[:])
		return false
	}
	var zeros [16]byte
	salsa.HSalsa20(key, &zeros, key, &salsa.Sigma)
	return true
}

// boxSeal is crypto_box_easy: XSalsa20-Poly1305 under boxKey(priv, peerU).
func boxSeal(out, message []byte, nonce *[24]byte, peerU, priv *[32]byte) ([]byte, error) {
	var key [32]byte
	defer clear(key[:])
	if !boxKey(&key, priv, peerU) {
		return nil, errSmallOrder
	}
	return secretbox.Seal(out, message, nonce, &key), nil
}

// boxOpen is crypto_box_open_easy.
func boxOpen(out, sealed []byte, nonce *[24]byte, peerU, priv *[32]byte) ([]byte, bool) {
	var key [32]byte
	defer clear(key[:])
	if !boxKey(&key, priv, peerU) {
		return nil, false
	}
	return secretbox.Open(out, sealed, nonce, &key)
}

// sealNonce is the sealed-box nonce: BLAKE2b-192(ephemeral pk || recipient pk).
func sealNonce(nonce *[24]byte, ephemeral, recipient []byte) error {
	h, err := blake2b.New(24, nil)
	if err != nil {
		return err
	}
	h.Write(ephemeral)
	h.Write(recipient)
	h.Sum(nonce[:0])
	return nil
}

// sealAnonymous is crypto_box_seal: an ephemeral public key followed by
// crypto_box(message) from it to the recipient, with sealNonce.
func sealAnonymous(out, message []byte, to *peer) ([]byte, error) {
	var esk [32]byte
	defer clear(esk[:])
	if _, err := rand.Read(esk[:]); err != nil {
		return nil, err
	}
	// The ephemeral public key is [k]B; B has order ℓ, so reducing the
	// clamped k mod ℓ (SetBytesWithClamping) does not change it.
	var s edwards25519.Scalar
	if _, err := s.SetBytesWithClamping(esk[:]); err != nil {
		return nil, err
	}
	var epk edwards25519.Point
	epkU := epk.ScalarBaseMult(&s).BytesMontgomery()
	s = edwards25519.Scalar{}

	var nonce [24]byte
	if err := sealNonce(&nonce, epkU, to.u[:]); err != nil {
		return nil, err
	}
	out = append(out, epkU...)
	return boxSeal(out, message, &nonce, &to.u, &esk)
}

// openAnonymous is crypto_box_seal_open with our key pair (ourU, ourPriv).
func openAnonymous(out, sealed []byte, ourU, ourPriv *[32]byte) ([]byte, bool) {
	if len(sealed) < box.AnonymousOverhead {
		return nil, false
	}
	epkU := (*[32]byte)(sealed[:32])
	var nonce [24]byte
	if sealNonce(&nonce, epkU[:], ourU[:]) != nil {
		return nil, false
	}
	return boxOpen(out, sealed[32:], &nonce, epkU, ourPriv)
}
