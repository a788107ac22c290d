package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
)

// The crypto_box / crypto_box_seal in nacl.go are checked here against
// golang.org/x/crypto/nacl/box (and, through vectors_test.go, libsodium).

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// randomPeer returns a random Ed25519 public key's peer form and the X25519
// private key that goes with it.
func randomPeer(t testing.TB) (*peer, *[32]byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var k peer
	if err := k.set(priv[32:]); err != nil {
		t.Fatal(err)
	}
	return &k, (*[32]byte)(PrivateKeyToX25519(priv))
}

func TestBoxKeyMatchesNacl(t *testing.T) {
	for i := range 200 {
		to, _ := randomPeer(t)
		priv := (*[32]byte)(randomBytes(t, 32)) // unclamped on purpose
		var got, want [32]byte
		if !boxKey(&got, priv, &to.u) {
			t.Fatal("boxKey refused a real key")
		}
		box.Precompute(&want, &to.u, priv)
		if got != want {
			t.Fatalf("case %d: boxKey = %x, nacl %x", i, got, want)
		}
	}
}

// TestBoxKeyMixedOrder checks the cofactor handling: a key with a
// small-order component must give the X25519 result, which ignores it.
func TestBoxKeyMixedOrder(t *testing.T) {
	lowOrder, err := hex.DecodeString("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85")
	if err != nil {
		t.Fatal(err)
	}
	var t8 edwards25519.Point
	if _, err := t8.SetBytes(lowOrder); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var p edwards25519.Point
		if _, err := p.SetBytes(pub); err != nil {
			t.Fatal(err)
		}
		var to, mixed peer
		if err := to.set(pub); err != nil {
			t.Fatal(err)
		}
		if err := mixed.set(new(edwards25519.Point).Add(&p, &t8).Bytes()); err != nil {
			t.Fatal(err)
		}
		if mixed.u == to.u {
			t.Fatal("torsion did not change u")
		}
		priv := (*[32]byte)(randomBytes(t, 32))
		var got, want [32]byte
		if !boxKey(&got, priv, &mixed.u) {
			t.Fatal("boxKey refused a mixed-order key")
		}
		box.Precompute(&want, &mixed.u, priv)
		if got != want {
			t.Fatalf("case %d: boxKey = %x, nacl %x", i, got, want)
		}
	}
}

// A sealed box whose ephemeral key is of small order is refused: its box
// key would be predictable (libsodium refuses it too).
func TestOpenAnonymousSmallOrderEphemeral(t *testing.T) {
	bob, bobPriv := randomPeer(t)
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	} {
		epk, _ := hex.DecodeString(h)
		sealed := append(epk, make([]byte, box.Overhead+32)...)
		if _, ok := openAnonymous(nil, sealed, &bob.u, bobPriv); ok {
			t.Errorf("ephemeral key %s…: opened", h[:8])
		}
	}
}

func TestBoxInterop(t *testing.T) {
	for i := range 50 {
		alice, alicePriv := randomPeer(t)
		bob, bobPriv := randomPeer(t)
		msg := randomBytes(t, i*7)
		nonce := (*[24]byte)(randomBytes(t, 24))

		// ours → nacl
		sealed, err := boxSeal(nil, msg, nonce, &bob.u, alicePriv)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := box.Open(nil, sealed, nonce, &alice.u, bobPriv); !ok || !bytes.Equal(got, msg) {
			t.Fatalf("nacl cannot open boxSeal output")
		}
		// nacl → ours
		sealed = box.Seal(nil, msg, nonce, &bob.u, alicePriv)
		if got, ok := boxOpen(nil, sealed, nonce, &alice.u, bobPriv); !ok || !bytes.Equal(got, msg) {
			t.Fatalf("boxOpen cannot open nacl output")
		}
		sealed[len(sealed)-1] ^= 1
		if _, ok := boxOpen(nil, sealed, nonce, &alice.u, bobPriv); ok {
			t.Fatal("boxOpen accepted a tampered box")
		}

		// Sealed boxes, both ways.
		sealed, err = sealAnonymous(nil, msg, bob)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := box.OpenAnonymous(nil, sealed, &bob.u, bobPriv); !ok || !bytes.Equal(got, msg) {
			t.Fatalf("nacl cannot open sealAnonymous output")
		}
		sealed, err = box.SealAnonymous(nil, msg, &bob.u, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := openAnonymous(nil, sealed, &bob.u, bobPriv); !ok || !bytes.Equal(got, msg) {
			t.Fatalf("openAnonymous cannot open nacl output")
		}
		if _, ok := openAnonymous(nil, sealed, &alice.u, alicePriv); ok {
			t.Fatal("openAnonymous opened a box for someone else")
		}
		if _, ok := openAnonymous(nil, sealed[:47], &bob.u, bobPriv); ok {
			t.Fatal("openAnonymous accepted a short box")
		}
	}
}

// TestSealAnonymousEphemeral checks that the ephemeral public key is the
// X25519 public key of some scalar, i.e. that fixed-base multiplication
// through the Edwards tables matches the ladder.
func TestSealAnonymousEphemeral(t *testing.T) {
	for range 50 {
		k := randomBytes(t, 32)
		var s edwards25519.Scalar
		if _, err := s.SetBytesWithClamping(k); err != nil {
			t.Fatal(err)
		}
		got := new(edwards25519.Point).ScalarBaseMult(&s).BytesMontgomery()
		want, err := curve25519.X25519(k, curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("k %x: edwards %x, ladder %x", k, got, want)
		}
	}
}

// FuzzBoxKey compares boxKey with nacl/box on arbitrary scalars and u.
func FuzzBoxKey(f *testing.F) {
	for i := range 4 {
		to, _ := randomPeer(f)
		f.Add(randomBytes(f, 32), to.u[:])
		f.Add(randomBytes(f, 32), randomBytes(f, 32))
		f.Add(bytes.Repeat([]byte{byte(i)}, 32), bytes.Repeat([]byte{0xff - byte(i)}, 32))
	}
	f.Fuzz(func(t *testing.T, priv, u []byte) {
		if len(priv) != 32 || len(u) != 32 {
			return
		}
		var got, want [32]byte
		ok := boxKey(&got, (*[32]byte)(priv), (*[32]byte)(u))
		if _, err := curve25519.X25519(priv, u); err != nil {
			if ok {
				t.Fatalf("u %x: X25519 refuses (%v), boxKey accepted", u, err)
			}
			return
		}
		box.Precompute(&want, (*[32]byte)(u), (*[32]byte)(priv))
		if !ok || got != want {
			t.Fatalf("boxKey = %x, nacl %x", got, want)
		}
	})
}

// Compare with BenchmarkNaclPrecompute: the reason nacl.go exists.
func BenchmarkBoxKey(b *testing.B) {
	to, priv := randomPeer(b)
	var key [32]byte
	for b.Loop() {
		if !boxKey(&key, priv, &to.u) {
			b.Fatal("refused")
		}
	}
}

func BenchmarkNaclPrecompute(b *testing.B) {
	to, priv := randomPeer(b)
	var key [32]byte
	for b.Loop() {
		box.Precompute(&key, &to.u, priv)
	}
}

func BenchmarkSealAnonymous(b *testing.B) {
	to, _ := randomPeer(b)
	msg := make([]byte, 32)
	for b.Loop() {
		if _, err := sealAnonymous(nil, msg, to); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNaclSealAnonymous(b *testing.B) {
	to, _ := randomPeer(b)
	msg := make([]byte, 32)
	for b.Loop() {
		if _, err := box.SealAnonymous(nil, msg, &to.u, rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}
