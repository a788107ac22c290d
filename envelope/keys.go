package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/mr-tron/base58"
)

// PublicKeyToX25519 converts an Ed25519 public key to the X25519 public key
// of the same secret, as libsodium's crypto_sign_ed25519_pk_to_curve25519
// does: the Montgomery u-coordinate of the point. It rejects encodings that
// are not on the curve and points of small order, whose Diffie-Hellman
// results are predictable.
//
// Unlike libsodium it does not reject points with a small-order component
// (a full subgroup check would cost a scalar multiplication): X25519 clears
// that component, so such a key shares its secrets with its prime-order part,
// and only the holder of that part's secret can use it.
func PublicKeyToX25519(pub ed25519.PublicKey) ([]byte, error) {
	x, err := edPublicToX25519(pub)
	if err != nil {
		return nil, err
	}
	return x[:], nil
}

var errSmallOrder = errors.New("public key is a small-order point")

func edPublicToX25519(pub []byte) ([32]byte, error) {
	var k peer
	if err := k.set(pub); err != nil {
		return [32]byte{}, err
	}
	return k.u, nil
}

// PrivateKeyToX25519 converts an Ed25519 private key to the X25519 private key
// of the same secret, as libsodium's crypto_sign_ed25519_sk_to_curve25519
// does: the clamped first half of SHA-512(seed), which is also the Ed25519
// signing scalar. It returns nil if priv is not ed25519.PrivateKeySize bytes.
func PrivateKeyToX25519(priv ed25519.PrivateKey) []byte {
	if len(priv) != ed25519.PrivateKeySize {
		return nil
	}
	x := make([]byte, 32)
	var k [32]byte
	edPrivateToX25519(&k, priv)
	copy(x, k[:])
	clear(k[:])
	return x
}

// edPrivateToX25519 writes the X25519 private key of priv, which must be
// ed25519.PrivateKeySize bytes, to dst.
func edPrivateToX25519(dst *[32]byte, priv ed25519.PrivateKey) {
	h := sha512.Sum512(priv[:ed25519.SeedSize])
	copy(dst[:], h[:32])
	clear(h[:])
	dst[0] &= 248
	dst[31] &= 127
	dst[31] |= 64
}

// Key is one of our Ed25519 key pairs with its X25519 form derived once, for
// opening and packing many envelopes with it: the derivation (a SHA-512, and
// a point decoding with a square root and an inversion) costs about a third
// of opening an anoncrypted envelope.
//
// A Key also remembers the crypto_box key it last shared with a peer: each of
// the mediator's keys talks to one wallet, and every authcrypted message
// between the two, either way, uses that same key (X25519 of our private key
// and the peer's public key), so it is computed once instead of once per
// message. A Key is safe for concurrent use.
type Key struct {
	priv   ed25519.PrivateKey
	verkey string   // base58 public key
	x      [32]byte // X25519 private key
	u      [32]byte // X25519 public key

	last atomic.Pointer[sharedKey]
}

// sharedKey is the crypto_box key of a Key and one peer.
type sharedKey struct {
	peer [32]byte // the peer's Ed25519 public key
	u    [32]byte // its X25519 form
	box  [32]byte // HSalsa20(X25519(our private key, u), 0)

	// sender is our verkey sealed to the peer (an authcrypt header's
	// "sender"), made on first use and sent in every later message to it.
	// Sealing costs two scalar multiplications, as much as the rest of a
	// pack. Repeating the sealed box tells an observer only that the
	// messages to this peer key share a sender, which a pairwise key (the
	// mediator authcrypts only to its connections' keys) says already.
	// Recipients open it as they open a fresh one.
	sender atomic.Pointer[[]byte]
}

// sealedSender returns k's verkey sealed to the peer of sk.
func (k *Key) sealedSender(sk *sharedKey) ([]byte, error) {
	if p := sk.sender.Load(); p != nil {
		return *p, nil
	}
	sealed, err := sealAnonymous(make([]byte, 0, maxSenderBoxSize), []byte(k.verkey), &peer{u: sk.u})
	if err != nil {
		return nil, err
	}
	// Two packs racing here both seal; either box is as good. Capped, so
	// that no append to a returned slice can write into the shared array.
	sealed = sealed[:len(sealed):len(sealed)]
	sk.sender.Store(&sealed)
	return sealed, nil
}

// shared returns the crypto_box key of k and the Ed25519 public key pub,
// computing it unless it is the one k shared last.
func (k *Key) shared(pub []byte) (*sharedKey, error) {
	if sk := k.last.Load(); sk != nil && bytes.Equal(sk.peer[:], pub) {
		return sk, nil
	}
	var p peer
	if err := p.set(pub); err != nil {
		return nil, err
	}
	sk := &sharedKey{u: p.u}
	copy(sk.peer[:], pub)
	if !boxKey(&sk.box, &k.x, &sk.u) {
		return nil, errSmallOrder // not reached: set refuses small-order keys
	}
	k.last.Store(sk)
	return sk, nil
}

// NewKey prepares priv (ed25519.PrivateKeySize bytes) for Envelope.OpenWith.
// It refuses a private key whose public half is not a usable key.
func NewKey(priv ed25519.PrivateKey) (*Key, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("envelope: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	var p peer
	if err := p.set(priv[ed25519.SeedSize:]); err != nil {
		return nil, fmt.Errorf("envelope: public key: %w", err)
	}
	k := &Key{priv: priv, verkey: base58.Encode(priv[ed25519.SeedSize:]), u: p.u}
	edPrivateToX25519(&k.x, priv)
	return k, nil
}

// Verkey is the key's base58 public key, as envelopes name it (kid).
func (k *Key) Verkey() string { return k.verkey }

// PrivateKey is the Ed25519 private key the Key was made from.
func (k *Key) PrivateKey() ed25519.PrivateKey { return k.priv }
