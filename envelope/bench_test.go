package envelope

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// payload1K is a 1 KiB plaintext, about the size of a typical DIDComm message.
var payload1K = bytes.Repeat([]byte("0123456789abcdef"), 64)

// benchUnpack parses and opens packed as the mediator does: with a Key
// prepared once (the keyring keeps them).
func benchUnpack(b *testing.B, packed []byte, priv ed25519.PrivateKey) {
	k, err := NewKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		e, err := Parse(packed)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.OpenWith(k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpackAnoncrypt(b *testing.B) {
	bob := testKey("bob")
	packed, err := PackAnoncrypt(payload1K, pubOf(bob))
	if err != nil {
		b.Fatal(err)
	}
	benchUnpack(b, packed, bob)
}

func BenchmarkUnpackAuthcrypt(b *testing.B) {
	alice, bob := testKey("alice"), testKey("bob")
	packed, err := PackAuthcrypt(payload1K, alice, pubOf(bob))
	if err != nil {
		b.Fatal(err)
	}
	benchUnpack(b, packed, bob)
}

func BenchmarkParse(b *testing.B) {
	alice, bob := testKey("alice"), testKey("bob")
	packed, err := PackAuthcrypt(payload1K, alice, pubOf(bob))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		if _, err := Parse(packed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackAuthcrypt(b *testing.B) {
	alice, bob := testKey("alice"), testKey("bob")
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		if _, err := PackAuthcrypt(payload1K, alice, pubOf(bob)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPackAuthcryptWith packs as the mediator does: with its Key made
// once, to the one wallet that key talks to.
func BenchmarkPackAuthcryptWith(b *testing.B) {
	alice, bob := testKey("alice"), testKey("bob")
	k, err := NewKey(alice)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		if _, err := PackAuthcryptWith(payload1K, k, pubOf(bob)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackAnoncrypt(b *testing.B) {
	bob := testKey("bob")
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		if _, err := PackAnoncrypt(payload1K, pubOf(bob)); err != nil {
			b.Fatal(err)
		}
	}
}
