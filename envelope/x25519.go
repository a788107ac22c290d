package envelope

import (
	"crypto/subtle"

	"filippo.io/edwards25519/field"
)

// x25519 sets dst to X25519(scalar, u) (RFC 7748, section 5): the
// Montgomery ladder over the vetted field arithmetic of edwards25519/field.
// Unlike crypto/ecdh it needs no public key of the scalar (one ladder, not
// two) and no decoding of u to a point (no square root). Like RFC 7748 it
// clamps the scalar, ignores u's top bit and accepts non-canonical u. It
// reports false when the result is zero (u of small order), which libsodium
// refuses as well.
func x25519(dst, scalar, u *[32]byte) bool {
	var k [32]byte
	defer clear(k[:])
	k = *scalar
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64

	var x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb field.Element
	if _, err := x1.SetBytes(u[:]); err != nil {
		return false // not reached: u is 32 bytes
	}
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()

	swap := 0
	for t := 254; t >= 0; t-- {
		kt := int(k[t/8]>>(t%8)) & 1
		swap ^= kt
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = kt

		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		e.Subtract(&aa, &bb)
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)

		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&z3, &x1)
		x2.Multiply(&aa, &bb)
		z2.Mult32(&e, 121665)
		z2.Add(&z2, &aa)
		z2.Multiply(&z2, &e)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)

	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(dst[:], x2.Bytes())
	var zero [32]byte
	return subtle.ConstantTimeCompare(dst[:], zero[:]) == 0
}
