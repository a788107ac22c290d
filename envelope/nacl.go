package envelope

import (
	"crypto/rand"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/salsa20/salsa"
)

// crypto_box and crypto_box_seal (libsodium), with the X25519 step done on
// the Edwards form of the curve.
//
// Why not golang.org/x/crypto/nacl/box: its X25519 goes through crypto/ecdh,
// whose NewPrivateKey computes a public key that box never uses, so every box
// operation costs two Montgomery ladders, and the ephemeral key of a sealed
// box another two. Here a variable-base multiplication is one Edwards scalar
// multiplication and a fixed-base one uses edwards25519's precomputed tables:
// a box key costs about half of box.Precompute, a sealed box about 40% of
// box.SealAnonymous (BenchmarkBoxKey, BenchmarkSealAnonymous and their Nacl
// counterparts), and these are nearly all of the cost of Pack and Open. The
// primitives (edwards25519, HSalsa20, XSalsa20-Poly1305, BLAKE2b) are the
// vetted ones; the composition is tested against nacl/box and libsodium
// (nacl_test.go, vectors_test.go).
//
// The only behavioural difference from libsodium is on inputs no honest
// party produces: public keys on the quadratic twist or of small order are
// refused instead of yielding garbage or a predictable shared secret.

var errNotOnCurve = errors.New("public key is not on the curve")

// peer is a public key in both forms: the Edwards point for arithmetic and
// the X25519 u-coordinate, which sealed-box nonces hash.
type peer struct {
	p edwards25519.Point
	u [32]byte
}

// set decodes an Ed25519 public key into k. It refuses encodings off the
// curve and points of small order, whose shared secrets are predictable.
func (k *peer) set(pub []byte) error {
	if len(pub) != keySize {
		return fmt.Errorf("public key is %d bytes, want %d", len(pub), keySize)
	}
	if err := setPoint(&k.p, pub); err != nil {
		return err
	}
	copy(k.u[:], k.p.BytesMontgomery())
	return nil
}

func setPoint(p *edwards25519.Point, enc []byte) error {
	if _, err := p.SetBytes(enc); err != nil {
		return errNotOnCurve
	}
	var p8 edwards25519.Point
	if p8.MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return errSmallOrder
	}
	return nil
}

// montgomeryToEdwards finds a point whose Montgomery u-coordinate is u, by
// the birational map y = (u-1)/(u+1); either sign of x gives the same X25519
// results. Like X25519 it ignores u's top bit and accepts u ≥ p. It refuses
// u on the twist and small-order points, as setPoint does.
func montgomeryToEdwards(p *edwards25519.Point, u []byte) error {
	var fu, one, num, den, y field.Element
	if _, err := fu.SetBytes(u); err != nil {
		return err
	}
	one.One()
	num.Subtract(&fu, &one)
	den.Add(&fu, &one)
	y.Multiply(&num, den.Invert(&den)) // u = -1 gives y = 0, a small-order point
	return setPoint(p, y.Bytes())
}

// boxKey computes the crypto_box shared key of an X25519 private key (any 32
// bytes; clamped here as X25519 does) and a peer point that has passed
// setPoint: HSalsa20(X25519(priv, u(peer)), 0).
func boxKey(key *[32]byte, priv *[32]byte, peer *edwards25519.Point) error {
	// X25519 multiplies by the clamped scalar k = 8m, m < 2^252 < ℓ. As
	// [k]P = [m]([8]P) and [8]P has order ℓ, m is used as it is, with no
	// reduction mod ℓ that would lose a small-order component of P.
	var k, m [32]byte
	var wide [64]byte
	defer func() { clear(k[:]); clear(m[:]); clear(wide[:]) }()
	k = *priv
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
	for i := range 31 {
		m[i] = k[i]>>3 | k[i+1]<<5
	}
	m[31] = k[31] >> 3
	copy(wide[:], m[:])
	var s edwards25519.Scalar
	if _, err := s.SetUniformBytes(wide[:]); err != nil {
		return err
	}
	var p8, shared edwards25519.Point
	shared.ScalarMult(&s, p8.MultByCofactor(peer))
	s = edwards25519.Scalar{}
	copy(key[:], shared.BytesMontgomery())
	var zeros [16]byte
	salsa.HSalsa20(key, &zeros, key, &salsa.Sigma)
	return nil
}

// boxSeal is crypto_box_easy: XSalsa20-Poly1305 under boxKey(priv, peer).
func boxSeal(out, message []byte, nonce *[24]byte, peer *edwards25519.Point, priv *[32]byte) ([]byte, error) {
	var key [32]byte
	defer clear(key[:])
	if err := boxKey(&key, priv, peer); err != nil {
		return nil, err
	}
	return secretbox.Seal(out, message, nonce, &key), nil
}

// boxOpen is crypto_box_open_easy.
func boxOpen(out, sealed []byte, nonce *[24]byte, peer *edwards25519.Point, priv *[32]byte) ([]byte, bool) {
	var key [32]byte
	defer clear(key[:])
	if boxKey(&key, priv, peer) != nil {
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
	return boxSeal(out, message, &nonce, &to.p, &esk)
}

// openAnonymous is crypto_box_seal_open with our key pair (ourU, ourPriv).
func openAnonymous(out, sealed []byte, ourU, ourPriv *[32]byte) ([]byte, bool) {
	if len(sealed) < box.AnonymousOverhead {
		return nil, false
	}
	epkU := sealed[:32]
	var epk edwards25519.Point
	if montgomeryToEdwards(&epk, epkU) != nil {
		return nil, false
	}
	var nonce [24]byte
	if sealNonce(&nonce, epkU, ourU[:]) != nil {
		return nil, false
	}
	return boxOpen(out, sealed[32:], &nonce, &epk, ourPriv)
}
