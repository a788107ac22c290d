package envelope

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// x25519 against crypto/ecdh (through x/crypto/curve25519) on random
// scalars and u, including u with the top bit set and u >= p.
func TestX25519MatchesStdlib(t *testing.T) {
	for i := range 500 {
		scalar := randomBytes(t, 32)
		u := randomBytes(t, 32)
		switch i % 4 {
		case 1:
			u[31] |= 0x80
		case 2: // p..2^255-1: non-canonical encodings
			copy(u, bytes.Repeat([]byte{0xff}, 32))
			u[0] = 0xed + byte(i%18)
			u[31] = 0x7f
		}
		var got [32]byte
		ok := x25519(&got, (*[32]byte)(scalar), (*[32]byte)(u))
		want, err := curve25519.X25519(scalar, u)
		if err != nil {
			if ok {
				t.Fatalf("case %d: u %x: stdlib refuses (%v), x25519 gave %x", i, u, err, got)
			}
			continue
		}
		if !ok || !bytes.Equal(got[:], want) {
			t.Fatalf("case %d: x25519 = %x (%v), stdlib %x", i, got, ok, want)
		}
	}
}

// RFC 7748, section 5.2, the two test vectors, and the 1,000-iteration one.
func TestX25519RFC7748Vectors(t *testing.T) {
	for _, v := range []struct{ scalar, u, out string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		s, _ := hex.DecodeString(v.scalar)
		u, _ := hex.DecodeString(v.u)
		var got [32]byte
		if !x25519(&got, (*[32]byte)(s), (*[32]byte)(u)) || hex.EncodeToString(got[:]) != v.out {
			t.Errorf("X25519(%s…) = %x, want %s", v.scalar[:8], got, v.out)
		}
	}
	k, u := [32]byte{9}, [32]byte{9}
	for range 1000 {
		var next [32]byte
		x25519(&next, &k, &u)
		u, k = k, next
	}
	if got := hex.EncodeToString(k[:]); got != "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51" {
		t.Errorf("after 1,000 iterations: %s", got)
	}
}

// Small-order u give zero, which x25519 reports.
func TestX25519SmallOrder(t *testing.T) {
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	} {
		u, _ := hex.DecodeString(h)
		var got [32]byte
		if x25519(&got, (*[32]byte)(randomBytes(t, 32)), (*[32]byte)(u)) {
			t.Errorf("u %s…: accepted, result %x", h[:8], got)
		}
	}
}

func BenchmarkX25519(b *testing.B) {
	scalar, u := (*[32]byte)(randomBytes(b, 32)), (*[32]byte)(randomBytes(b, 32))
	var out [32]byte
	for b.Loop() {
		x25519(&out, scalar, u)
	}
}

func BenchmarkX25519Stdlib(b *testing.B) {
	k, err := ecdh.X25519().NewPrivateKey(randomBytes(b, 32))
	if err != nil {
		b.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(randomBytes(b, 32))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := k.ECDH(pub); err != nil {
			b.Fatal(err)
		}
	}
}
