package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mr-tron/base58"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/box"
)

var b64u = base64.RawURLEncoding

// outer decodes packed into a generic map for mutation.
func outer(t *testing.T, packed []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(packed, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// header decodes the protected header of m.
func header(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	raw, err := b64u.DecodeString(m["protected"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutateOuter returns packed with f applied to its outer object.
func mutateOuter(t *testing.T, packed []byte, f func(m map[string]any)) []byte {
	m := outer(t, packed)
	f(m)
	return marshal(t, m)
}

// mutateHeader returns packed with f applied to its decoded protected header
// (which invalidates the AAD, irrelevant for structural checks).
func mutateHeader(t *testing.T, packed []byte, f func(h map[string]any)) []byte {
	m := outer(t, packed)
	h := header(t, m)
	f(h)
	m["protected"] = b64u.EncodeToString(marshal(t, h))
	return marshal(t, m)
}

// mutateRecipient applies f to the first recipient's object and its header.
func mutateRecipient(t *testing.T, packed []byte, f func(r, rh map[string]any)) []byte {
	return mutateHeader(t, packed, func(h map[string]any) {
		r := h["recipients"].([]any)[0].(map[string]any)
		f(r, r["header"].(map[string]any))
	})
}

func bytesOf(n int) string { return b64u.EncodeToString(make([]byte, n)) }

func TestParseMalformed(t *testing.T) {
	alice, bob := testKey("alice"), testKey("bob")
	auth, err := PackAuthcrypt([]byte("hello"), alice, pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := PackAnoncrypt([]byte("hello"), pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	set := func(field string, v any) func(map[string]any) {
		return func(m map[string]any) { m[field] = v }
	}
	del := func(field string) func(map[string]any) {
		return func(m map[string]any) { delete(m, field) }
	}
	setR := func(field string, v any) func(r, rh map[string]any) {
		return func(r, rh map[string]any) {
			if field == "encrypted_key" {
				r[field] = v
			} else {
				rh[field] = v
			}
		}
	}
	delR := func(field string) func(r, rh map[string]any) {
		return func(r, rh map[string]any) { delete(r, field); delete(rh, field) }
	}
	manyRecipients := func(n int) func(map[string]any) {
		return func(h map[string]any) {
			r := h["recipients"].([]any)[0]
			rs := make([]any, n)
			for i := range rs {
				rs[i] = r
			}
			h["recipients"] = rs
		}
	}
	tests := []struct {
		name   string
		packed []byte
	}{
		{"empty", nil},
		{"not JSON", []byte("hello")},
		{"null", []byte("null")},
		{"array", []byte(`[1,2]`)},
		{"string", []byte(`"protected"`)},
		{"empty object", []byte(`{}`)},
		{"trailing garbage", append(append([]byte{}, auth...), "x"...)},
		{"truncated JSON", auth[:len(auth)/2]},
		{"deeply nested", []byte(strings.Repeat("[", 100000))},
		{"not UTF-8 JSON", []byte("{\"protected\":\"\xff\"}")},

		{"missing protected", mutateOuter(t, auth, del("protected"))},
		{"missing iv", mutateOuter(t, auth, del("iv"))},
		{"missing ciphertext", mutateOuter(t, auth, del("ciphertext"))},
		{"missing tag", mutateOuter(t, auth, del("tag"))},
		{"null protected", mutateOuter(t, auth, set("protected", nil))},
		{"null ciphertext", mutateOuter(t, auth, set("ciphertext", nil))},
		{"null iv", mutateOuter(t, auth, set("iv", nil))},
		{"numeric protected", mutateOuter(t, auth, set("protected", 1))},
		{"object ciphertext", mutateOuter(t, auth, set("ciphertext", map[string]any{}))},
		{"numeric tag", mutateOuter(t, auth, set("tag", 16))},

		{"protected not base64", mutateOuter(t, auth, set("protected", "!!!!"))},
		{"protected mixed alphabets", mutateOuter(t, auth, set("protected", "ab-+"))},
		{"protected impossible length", mutateOuter(t, auth, set("protected", "abcde"))},
		{"protected empty", mutateOuter(t, auth, set("protected", ""))},
		{"protected not JSON", mutateOuter(t, auth, set("protected", b64u.EncodeToString([]byte("not json"))))},
		{"protected JSON array", mutateOuter(t, auth, set("protected", b64u.EncodeToString([]byte("[]"))))},
		{"ciphertext not base64", mutateOuter(t, auth, set("ciphertext", "****"))},
		{"iv not base64", mutateOuter(t, auth, set("iv", "@@@@"))},
		{"tag not base64", mutateOuter(t, auth, set("tag", "a"))},

		{"iv empty", mutateOuter(t, auth, set("iv", ""))},
		{"iv 8 bytes", mutateOuter(t, auth, set("iv", bytesOf(8)))},
		{"iv 16 bytes", mutateOuter(t, auth, set("iv", bytesOf(16)))},
		{"iv 23 bytes", mutateOuter(t, auth, set("iv", bytesOf(23)))},
		{"iv 25 bytes", mutateOuter(t, auth, set("iv", bytesOf(25)))},
		{"tag empty", mutateOuter(t, auth, set("tag", ""))},
		{"tag truncated", mutateOuter(t, auth, set("tag", bytesOf(15)))},
		{"tag too long", mutateOuter(t, auth, set("tag", bytesOf(17)))},

		{"unknown alg", mutateHeader(t, auth, set("alg", "ECDH-1PU+A256KW"))},
		{"missing alg", mutateHeader(t, auth, del("alg"))},
		{"numeric alg", mutateHeader(t, auth, set("alg", 1))},
		{"unknown enc", mutateHeader(t, auth, set("enc", "A256GCM"))},
		{"missing enc", mutateHeader(t, auth, del("enc"))},
		{"missing recipients", mutateHeader(t, auth, del("recipients"))},
		{"null recipients", mutateHeader(t, auth, set("recipients", nil))},
		{"empty recipients", mutateHeader(t, auth, set("recipients", []any{}))},
		{"recipients object", mutateHeader(t, auth, set("recipients", map[string]any{}))},
		{"recipient string", mutateHeader(t, auth, set("recipients", []any{"x"}))},
		{"too many recipients", mutateHeader(t, auth, manyRecipients(MaxRecipients+1))},
		{"huge recipient list", mutateHeader(t, anon, manyRecipients(20000))},

		{"missing kid", mutateRecipient(t, auth, delR("kid"))},
		{"numeric kid", mutateRecipient(t, auth, setR("kid", 42))},
		{"kid not base58", mutateRecipient(t, auth, setR("kid", strings.Repeat("0", 44)))},
		{"kid too short", mutateRecipient(t, auth, setR("kid", verkey(bob)[:31]))},
		{"kid too long", mutateRecipient(t, auth, setR("kid", verkey(bob)+"1"))},
		{"kid 33 bytes", mutateRecipient(t, auth, setR("kid", strings.Repeat("z", 44)))},
		{"kid 31 bytes", mutateRecipient(t, auth, setR("kid", base58.Encode(pubOf(bob)[:31])))},
		{"kid did:key", mutateRecipient(t, auth, setR("kid", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"))},
		{"missing encrypted_key", mutateRecipient(t, auth, delR("encrypted_key"))},
		{"encrypted_key not base64", mutateRecipient(t, auth, setR("encrypted_key", "$$$$"))},
		{"encrypted_key 47 bytes", mutateRecipient(t, auth, setR("encrypted_key", bytesOf(47)))},
		{"encrypted_key 49 bytes", mutateRecipient(t, auth, setR("encrypted_key", bytesOf(49)))},
		{"encrypted_key anoncrypt-sized", mutateRecipient(t, auth, setR("encrypted_key", bytesOf(80)))},
		{"authcrypt without sender", mutateRecipient(t, auth, delR("sender"))},
		{"authcrypt without iv", mutateRecipient(t, auth, delR("iv"))},
		{"authcrypt box iv 12 bytes", mutateRecipient(t, auth, setR("iv", bytesOf(12)))},
		{"authcrypt box iv 25 bytes", mutateRecipient(t, auth, setR("iv", bytesOf(25)))},
		{"authcrypt box iv not base64", mutateRecipient(t, auth, setR("iv", "%%%%"))},
		{"sender too short", mutateRecipient(t, auth, setR("sender", bytesOf(79)))},
		{"sender too long", mutateRecipient(t, auth, setR("sender", bytesOf(93)))},
		{"sender not base64", mutateRecipient(t, auth, setR("sender", "^^^^"))},
		{"numeric sender", mutateRecipient(t, auth, setR("sender", 7))},
		{"header not object", mutateRecipient(t, auth, func(r, _ map[string]any) { r["header"] = "kid" })},
		{"anoncrypt with sender", mutateRecipient(t, anon, setR("sender", bytesOf(92)))},
		{"anoncrypt with iv", mutateRecipient(t, anon, setR("iv", bytesOf(24)))},
		{"anoncrypt encrypted_key 48 bytes", mutateRecipient(t, anon, setR("encrypted_key", bytesOf(48)))},
		{"anoncrypt encrypted_key 81 bytes", mutateRecipient(t, anon, setR("encrypted_key", bytesOf(81)))},
		{"anoncrypt labelled authcrypt", mutateHeader(t, anon, set("alg", "Authcrypt"))},
		{"authcrypt labelled anoncrypt", mutateHeader(t, auth, set("alg", "Anoncrypt"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Parse(tt.packed)
			if !errors.Is(err, ErrMalformed) || e != nil {
				t.Fatalf("Parse = %v, %v; want nil, ErrMalformed", e, err)
			}
			if errors.Is(err, ErrDecrypt) || errors.Is(err, ErrNoRecipient) {
				t.Errorf("error matches more than one sentinel: %v", err)
			}
			_, err = Unpack(tt.packed, lookupOf(alice, bob))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Unpack = %v; want ErrMalformed", err)
			}
		})
	}
}

// TestParseLenient covers inputs that differ from Askar's output but that
// real agents send and that must therefore open.
func TestParseLenient(t *testing.T) {
	alice, bob := testKey("alice"), testKey("bob")
	auth, err := PackAuthcrypt([]byte("hello"), alice, pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	pad := func(s string) string { return s + strings.Repeat("=", (4-len(s)%4)%4) }
	tests := []struct {
		name   string
		packed []byte
	}{
		{"reordered fields and whitespace", func() []byte {
			m := outer(t, auth)
			return []byte(`{ "tag" : "` + m["tag"].(string) + `", "ciphertext":"` + m["ciphertext"].(string) +
				`",` + "\n\t" + `"iv":"` + m["iv"].(string) + `","protected":"` + m["protected"].(string) + `","extra":{"x":[1]}}`)
		}()},
		{"padded iv, ciphertext and tag", mutateOuter(t, auth, func(m map[string]any) {
			for _, f := range []string{"iv", "ciphertext", "tag"} {
				m[f] = pad(m[f].(string))
			}
		})},
		{"JSON escapes in ciphertext", func() []byte {
			m := outer(t, auth)
			ct := m["ciphertext"].(string)
			esc := `\u00` + jsonHex(ct[0]) + ct[1:]
			return []byte(`{"protected":"` + m["protected"].(string) + `","iv":"` + m["iv"].(string) +
				`","ciphertext":"` + esc + `","tag":"` + m["tag"].(string) + `"}`)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Unpack(tt.packed, lookupOf(bob))
			if err != nil || string(u.Plaintext) != "hello" {
				t.Fatalf("Unpack = %q, %v", u.Plaintext, err)
			}
		})
	}
}

func jsonHex(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// craftEnvelope packs plaintext under cek with a caller-built recipient list,
// so that key-unwrap failures can be provoked with valid content encryption.
func craftEnvelope(t *testing.T, alg string, cek []byte, recipients []map[string]any, nonceSize int) []byte {
	t.Helper()
	hdr := marshal(t, map[string]any{"enc": "xchacha20poly1305_ietf", "typ": "JWM/1.0", "alg": alg, "recipients": recipients})
	protected := b64u.EncodeToString(hdr)
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	aead, err := newAEAD(cek, nonceSize)
	if err != nil {
		t.Fatal(err)
	}
	sealed := aead.Seal(nil, nonce, []byte("crafted"), []byte(protected))
	n := len(sealed) - chacha20poly1305.Overhead
	return marshal(t, map[string]string{
		"protected": protected, "iv": b64u.EncodeToString(nonce),
		"ciphertext": b64u.EncodeToString(sealed[:n]), "tag": b64u.EncodeToString(sealed[n:]),
	})
}

func x25519Pub(t *testing.T, k ed25519.PrivateKey) *[32]byte {
	t.Helper()
	x, err := PublicKeyToX25519(pubOf(k))
	if err != nil {
		t.Fatal(err)
	}
	return (*[32]byte)(x)
}

func x25519Priv(k ed25519.PrivateKey) *[32]byte { return (*[32]byte)(PrivateKeyToX25519(k)) }

// authRecipient builds an authcrypt recipient entry: the content key boxed
// from boxFrom to to, and senderText sealed to sealTo.
func authRecipient(t *testing.T, cek []byte, boxFrom, to ed25519.PrivateKey, senderText string, sealTo ed25519.PrivateKey) map[string]any {
	t.Helper()
	var iv [24]byte
	rand.Read(iv[:])
	encKey := box.Seal(nil, cek, &iv, x25519Pub(t, to), x25519Priv(boxFrom))
	sender, err := box.SealAnonymous(nil, []byte(senderText), x25519Pub(t, sealTo), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"encrypted_key": b64u.EncodeToString(encKey),
		"header":        map[string]any{"kid": verkey(to), "sender": b64u.EncodeToString(sender), "iv": b64u.EncodeToString(iv[:])},
	}
}

func TestOpenFailures(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	cek := make([]byte, 32)
	rand.Read(cek)

	auth, err := PackAuthcrypt([]byte("hello"), alice, pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := PackAnoncrypt([]byte("hello"), pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(field string, i int) func(map[string]any) {
		return func(m map[string]any) {
			b, err := b64u.DecodeString(m[field].(string))
			if err != nil {
				t.Fatal(err)
			}
			b[i%len(b)] ^= 1
			m[field] = b64u.EncodeToString(b)
		}
	}
	flipR := func(field string) func(r, rh map[string]any) {
		return func(r, rh map[string]any) {
			m := rh
			if field == "encrypted_key" {
				m = r
			}
			b, _ := b64u.DecodeString(m[field].(string))
			b[len(b)-1] ^= 1
			m[field] = b64u.EncodeToString(b)
		}
	}
	identity := make([]byte, 32)
	identity[0] = 1
	anonSealedTo := func(k ed25519.PrivateKey) map[string]any {
		encKey, err := box.SealAnonymous(nil, cek, x25519Pub(t, k), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"encrypted_key": b64u.EncodeToString(encKey), "header": map[string]any{"kid": verkey(bob)}}
	}
	anonRandom := map[string]any{"encrypted_key": bytesOf(80), "header": map[string]any{"kid": verkey(bob)}}

	tests := []struct {
		name   string
		packed []byte
		key    ed25519.PrivateKey
		want   error
	}{
		{"authcrypt wrong key", auth, carol, ErrNoRecipient},
		{"anoncrypt wrong key", anon, alice, ErrNoRecipient},
		{"tampered ciphertext", mutateOuter(t, auth, flip("ciphertext", 0)), bob, ErrDecrypt},
		{"tampered tag", mutateOuter(t, anon, flip("tag", 15)), bob, ErrDecrypt},
		{"tampered nonce", mutateOuter(t, anon, flip("iv", 3)), bob, ErrDecrypt},
		{"24-byte nonce on 12-byte content", mutateOuter(t, auth, func(m map[string]any) { m["iv"] = bytesOf(24) }), bob, ErrDecrypt},
		// The AAD is the text as received: an equivalent encoding of the
		// same header must not authenticate.
		{"padded protected changes AAD", mutateOuter(t, anon, func(m map[string]any) {
			m["protected"] = m["protected"].(string) + "="
		}), bob, ErrDecrypt},
		{"re-encoded protected header", mutateHeader(t, auth, func(map[string]any) {}), bob, ErrDecrypt},
		{"tampered encrypted_key (authcrypt)", mutateRecipient(t, auth, flipR("encrypted_key")), bob, ErrDecrypt},
		{"tampered encrypted_key (anoncrypt)", mutateRecipient(t, anon, flipR("encrypted_key")), bob, ErrDecrypt},
		{"tampered box iv", mutateRecipient(t, auth, flipR("iv")), bob, ErrDecrypt},
		{"tampered sender", mutateRecipient(t, auth, flipR("sender")), bob, ErrDecrypt},
		{"anoncrypt key sealed to someone else", craftEnvelope(t, "Anoncrypt", cek, []map[string]any{anonSealedTo(carol)}, 12), bob, ErrDecrypt},
		{"anoncrypt random encrypted_key", craftEnvelope(t, "Anoncrypt", cek, []map[string]any{anonRandom}, 12), bob, ErrDecrypt},
		{"sender sealed to someone else", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, verkey(alice), carol)}, 12), bob, ErrDecrypt},
		{"forged sender", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, verkey(carol), bob)}, 24), bob, ErrDecrypt},
		{"sender not base58", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, strings.Repeat("0OIl", 11), bob)}, 12), bob, ErrMalformed},
		{"sender not ASCII", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, strings.Repeat("é", 20), bob)}, 12), bob, ErrMalformed},
		{"sender 31 bytes", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, base58.Encode(pubOf(alice)[:31]), bob)}, 12), bob, ErrMalformed},
		{"sender 33 bytes", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, strings.Repeat("z", 44), bob)}, 12), bob, ErrMalformed},
		{"sender small order", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, base58.Encode(identity), bob)}, 12), bob, ErrMalformed},
		{"sender off curve", craftEnvelope(t, "Authcrypt", cek, []map[string]any{
			authRecipient(t, cek, alice, bob, base58.Encode(offCurve(t)), bob)}, 12), bob, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Parse(tt.packed)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			_, err = Unpack(tt.packed, lookupOf(tt.key))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unpack = %v; want %v", err, tt.want)
			}
			if tt.want != ErrNoRecipient {
				if _, err := e.Open(verkey(tt.key), tt.key); !errors.Is(err, tt.want) {
					t.Errorf("Open = %v; want %v", err, tt.want)
				}
			}
		})
	}

	// Sanity: the crafting helpers produce envelopes that do open.
	good := craftEnvelope(t, "Authcrypt", cek, []map[string]any{authRecipient(t, cek, alice, bob, verkey(alice), bob)}, 24)
	if u, err := Unpack(good, lookupOf(bob)); err != nil || u.SenderKey != verkey(alice) || string(u.Plaintext) != "crafted" {
		t.Fatalf("crafted envelope: %+v, %v", u, err)
	}
	good = craftEnvelope(t, "Anoncrypt", cek, []map[string]any{anonSealedTo(bob)}, 12)
	if _, err := Unpack(good, lookupOf(bob)); err != nil {
		t.Fatalf("crafted anoncrypt envelope: %v", err)
	}
}

func TestOpenKeyErrors(t *testing.T) {
	alice, bob := testKey("alice"), testKey("bob")
	packed, err := PackAuthcrypt([]byte("hello"), alice, pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(packed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Open("unknown", bob); !errors.Is(err, ErrNoRecipient) {
		t.Errorf("Open(unknown kid) = %v; want ErrNoRecipient", err)
	}
	// A seed whose public half was tampered with to match kid still fails.
	forged := append(append(ed25519.PrivateKey{}, alice.Seed()...), pubOf(bob)...)
	for name, k := range map[string]ed25519.PrivateKey{
		"nil": nil, "seed only": bob.Seed(), "too long": append(append(ed25519.PrivateKey{}, bob...), 0),
		"other key": alice, "mismatched halves": forged,
	} {
		if _, err := e.Open(verkey(bob), k); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open with %s key = %v; want ErrDecrypt", name, err)
		}
	}

	// A kid that is not a usable point cannot be opened even by a key that
	// claims it.
	identity := make([]byte, 32)
	identity[0] = 1
	bad := mutateRecipient(t, packed, func(_, rh map[string]any) { rh["kid"] = base58.Encode(identity) })
	e, err = Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	claim := append(append(ed25519.PrivateKey{}, bob.Seed()...), identity...)
	if _, err := e.Open(base58.Encode(identity), claim); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with small-order kid = %v; want ErrDecrypt", err)
	}
}

// One Key opening many envelopes keeps the crypto_box key of the last
// sender (Key.shared): a cached key must never let a message whose content
// key was boxed by someone else pass as the claimed sender's, whether the
// claimed sender is the cached one or not.
func TestOpenWithSharedKeyCache(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	bobKey, err := NewKey(bob)
	if err != nil {
		t.Fatal(err)
	}
	cek := make([]byte, 32)
	rand.Read(cek)
	envelopeFrom := func(boxFrom ed25519.PrivateKey, claimed string) *Envelope {
		e, err := Parse(craftEnvelope(t, "Authcrypt", cek, []map[string]any{authRecipient(t, cek, boxFrom, bob, claimed, bob)}, 24))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	steps := []struct {
		name       string
		boxFrom    ed25519.PrivateKey
		claimed    string
		wantSender string // "" = ErrDecrypt
	}{
		{"alice", alice, verkey(alice), verkey(alice)},
		{"alice again (cached)", alice, verkey(alice), verkey(alice)},
		{"boxed by carol, claims alice (cached)", carol, verkey(alice), ""},
		{"boxed by alice, claims carol (not cached)", alice, verkey(carol), ""},
		{"carol", carol, verkey(carol), verkey(carol)},
		{"boxed by alice, claims carol (cached)", alice, verkey(carol), ""},
		{"alice after carol", alice, verkey(alice), verkey(alice)},
	}
	for _, s := range steps {
		u, err := envelopeFrom(s.boxFrom, s.claimed).OpenWith(bobKey)
		switch {
		case s.wantSender == "" && !errors.Is(err, ErrDecrypt):
			t.Errorf("%s: OpenWith = %+v, %v; want ErrDecrypt", s.name, u, err)
		case s.wantSender != "" && (err != nil || u.SenderKey != s.wantSender || string(u.Plaintext) != "crafted"):
			t.Errorf("%s: OpenWith = %+v, %v; want sender %s", s.name, u, err, s.wantSender)
		}
	}
}

// PackAuthcryptWith to alternating recipients (the Key's cached box key
// changes every time) and to two at once: each recipient opens its copy
// with its own fresh key and sees the sender.
func TestPackAuthcryptWithAlternatingRecipients(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	aliceKey, err := NewKey(alice)
	if err != nil {
		t.Fatal(err)
	}
	for i, to := range []ed25519.PrivateKey{bob, carol, bob, bob, carol} {
		msg := []byte(fmt.Sprintf(`{"n":%d}`, i))
		packed, err := PackAuthcryptWith(msg, aliceKey, pubOf(to))
		if err != nil {
			t.Fatal(err)
		}
		u, err := Unpack(packed, lookupOf(to))
		if err != nil || u.SenderKey != verkey(alice) || !bytes.Equal(u.Plaintext, msg) {
			t.Fatalf("message %d to %s: %+v, %v", i, verkey(to), u, err)
		}
	}
	packed, err := PackAuthcryptWith([]byte("both"), aliceKey, pubOf(bob), pubOf(carol))
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []ed25519.PrivateKey{bob, carol} {
		if u, err := Unpack(packed, lookupOf(to)); err != nil || u.SenderKey != verkey(alice) || string(u.Plaintext) != "both" {
			t.Errorf("two recipients, %s: %+v, %v", verkey(to), u, err)
		}
	}
}

// A Key seals its verkey once per peer: consecutive packs to one recipient
// carry the same sealed sender, a pack after another peer a fresh one, and
// the recipient opens every one of them to the sender.
func TestPackAuthcryptWithSealsSenderOncePerPeer(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	aliceKey, err := NewKey(alice)
	if err != nil {
		t.Fatal(err)
	}
	var senders []string
	for i, to := range []ed25519.PrivateKey{bob, bob, carol, bob} {
		packed, err := PackAuthcryptWith([]byte("m"), aliceKey, pubOf(to))
		if err != nil {
			t.Fatal(err)
		}
		if u, err := Unpack(packed, lookupOf(to)); err != nil || u.SenderKey != verkey(alice) {
			t.Fatalf("message %d: %+v, %v", i, u, err)
		}
		e, err := Parse(packed)
		if err != nil {
			t.Fatal(err)
		}
		senders = append(senders, string(e.recipients[0].sender))
	}
	if senders[0] != senders[1] {
		t.Errorf("two packs to bob in a row sealed the sender twice")
	}
	if senders[2] == senders[1] || senders[3] == senders[0] {
		t.Errorf("the sealed sender was reused for another peer, or kept after the cache moved on")
	}
}
