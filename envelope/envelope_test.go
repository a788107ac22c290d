package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mr-tron/base58"
	"golang.org/x/crypto/curve25519"
)

// testKey derives a fixed key the same way testdata/rfc0019.js does:
// seed = SHA-256("envelope test key " + name).
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("envelope test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func verkey(k ed25519.PrivateKey) string { return base58.Encode(pubOf(k)) }

// lookupOf returns an Unpack lookup that knows exactly keys.
func lookupOf(keys ...ed25519.PrivateKey) func(string) (ed25519.PrivateKey, bool) {
	m := make(map[string]ed25519.PrivateKey, len(keys))
	for _, k := range keys {
		m[verkey(k)] = k
	}
	return func(vk string) (ed25519.PrivateKey, bool) {
		k, ok := m[vk]
		return k, ok
	}
}

var unpaddedURL = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

func TestRoundTrip(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	many := make([]ed25519.PrivateKey, MaxRecipients)
	for i := range many {
		many[i] = testKey(fmt.Sprint("many-", i))
	}
	big := bytes.Repeat([]byte(`{"a":"0123456789abcdef"}`), 1<<16)
	tests := []struct {
		name       string
		sender     ed25519.PrivateKey // nil: anoncrypt
		recipients []ed25519.PrivateKey
		plaintext  []byte
	}{
		{"authcrypt", alice, []ed25519.PrivateKey{bob}, []byte(`{"@type":"https://didcomm.org/trust_ping/1.0/ping"}`)},
		{"anoncrypt", nil, []ed25519.PrivateKey{bob}, []byte(`{"@type":"https://didcomm.org/routing/1.0/forward"}`)},
		{"authcrypt multi", alice, []ed25519.PrivateKey{bob, carol, alice}, []byte("héllo 👋")},
		{"anoncrypt multi", nil, []ed25519.PrivateKey{carol, bob}, []byte("x")},
		{"authcrypt empty", alice, []ed25519.PrivateKey{bob}, nil},
		{"anoncrypt empty", nil, []ed25519.PrivateKey{bob}, []byte{}},
		{"authcrypt 1.5 MiB", alice, []ed25519.PrivateKey{bob}, big},
		{"authcrypt to self", alice, []ed25519.PrivateKey{alice}, []byte("note to self")},
		{"authcrypt max recipients", alice, many, []byte("broadcast")},
		{"anoncrypt max recipients", nil, many, []byte("broadcast")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pubs := make([]ed25519.PublicKey, len(tt.recipients))
			for i, r := range tt.recipients {
				pubs[i] = pubOf(r)
			}
			var packed []byte
			var err error
			if tt.sender == nil {
				packed, err = PackAnoncrypt(tt.plaintext, pubs...)
			} else {
				packed, err = PackAuthcrypt(tt.plaintext, tt.sender, pubs...)
			}
			if err != nil {
				t.Fatalf("pack: %v", err)
			}
			checkAskarShape(t, packed, tt.sender == nil)

			e, err := Parse(packed)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if e.Anoncrypt() != (tt.sender == nil) {
				t.Errorf("Anoncrypt() = %v", e.Anoncrypt())
			}
			wantKids := make([]string, len(tt.recipients))
			for i, r := range tt.recipients {
				wantKids[i] = verkey(r)
			}
			if got := e.Kids(); !slices.Equal(got, wantKids) {
				t.Errorf("Kids() = %v, want %v", got, wantKids)
			}
			wantSender := ""
			if tt.sender != nil {
				wantSender = verkey(tt.sender)
			}
			for i, r := range tt.recipients {
				if i > 3 && i < len(tt.recipients)-1 {
					continue // the first few and the last are enough
				}
				u, err := Unpack(packed, lookupOf(r))
				if err != nil {
					t.Fatalf("Unpack as recipient %d: %v", i, err)
				}
				if !bytes.Equal(u.Plaintext, tt.plaintext) {
					t.Errorf("recipient %d: plaintext differs (%d bytes, want %d)", i, len(u.Plaintext), len(tt.plaintext))
				}
				if u.RecipientKey != verkey(r) || u.SenderKey != wantSender {
					t.Errorf("recipient %d: got (%s, %q), want (%s, %q)", i, u.RecipientKey, u.SenderKey, verkey(r), wantSender)
				}
			}
		})
	}
}

// checkAskarShape asserts the output is what Askar emits: field order,
// unpadded base64url everywhere, a 12-byte nonce and the usual labels.
func checkAskarShape(t *testing.T, packed []byte, anon bool) {
	t.Helper()
	if !bytes.HasPrefix(packed, []byte(`{"protected":"`)) {
		t.Errorf("packed does not start with protected: %.40s", packed)
	}
	var m struct{ Protected, IV, Ciphertext, Tag string }
	if err := json.Unmarshal(packed, &m); err != nil {
		t.Fatalf("packed is not JSON: %v", err)
	}
	for _, s := range []string{m.Protected, m.IV, m.Ciphertext, m.Tag} {
		if !unpaddedURL.MatchString(s) {
			t.Errorf("not unpadded base64url: %.40q", s)
		}
	}
	if iv, _ := base64.RawURLEncoding.DecodeString(m.IV); len(iv) != 12 {
		t.Errorf("iv is %d bytes, want 12", len(iv))
	}
	if tag, _ := base64.RawURLEncoding.DecodeString(m.Tag); len(tag) != 16 {
		t.Errorf("tag is %d bytes, want 16", len(tag))
	}
	hdr, err := base64.RawURLEncoding.DecodeString(m.Protected)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Enc, Typ, Alg string
		Recipients    []struct {
			EncryptedKey string `json:"encrypted_key"`
			Header       map[string]string
		}
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		t.Fatalf("protected header is not JSON: %v\n%s", err, hdr)
	}
	wantAlg := "Authcrypt"
	if anon {
		wantAlg = "Anoncrypt"
	}
	if h.Enc != "xchacha20poly1305_ietf" || h.Typ != "JWM/1.0" || h.Alg != wantAlg {
		t.Errorf("header labels = %q %q %q", h.Enc, h.Typ, h.Alg)
	}
	for _, r := range h.Recipients {
		wantFields := 3
		if anon {
			wantFields = 1
		}
		if len(r.Header) != wantFields {
			t.Errorf("recipient header has %d fields, want %d: %v", len(r.Header), wantFields, r.Header)
		}
		for _, s := range []string{r.EncryptedKey, r.Header["sender"], r.Header["iv"]} {
			if !unpaddedURL.MatchString(s) {
				t.Errorf("not unpadded base64url: %q", s)
			}
		}
	}
}

func TestPackErrors(t *testing.T) {
	alice, bob := testKey("alice"), testKey("bob")
	tooMany := make([]ed25519.PublicKey, MaxRecipients+1)
	for i := range tooMany {
		tooMany[i] = pubOf(bob)
	}
	identity := make(ed25519.PublicKey, 32)
	identity[0] = 1
	tests := []struct {
		name       string
		sender     ed25519.PrivateKey
		recipients []ed25519.PublicKey
	}{
		{"no recipients", alice, nil},
		{"too many recipients", alice, tooMany},
		{"short recipient key", alice, []ed25519.PublicKey{pubOf(bob)[:31]}},
		{"nil recipient key", alice, []ed25519.PublicKey{nil}},
		{"small-order recipient key", alice, []ed25519.PublicKey{identity}},
		{"off-curve recipient key", alice, []ed25519.PublicKey{offCurve(t)}},
		{"bad second recipient", alice, []ed25519.PublicKey{pubOf(bob), identity}},
		{"short sender key", alice[:32], []ed25519.PublicKey{pubOf(bob)}},
		{"empty sender key", ed25519.PrivateKey{}, []ed25519.PublicKey{pubOf(bob)}},
		{"small-order sender key", append(alice.Seed(), identity...), []ed25519.PublicKey{pubOf(bob)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PackAuthcrypt([]byte("x"), tt.sender, tt.recipients...); err == nil {
				t.Error("PackAuthcrypt: no error")
			}
			if !strings.Contains(tt.name, "sender") {
				if _, err := PackAnoncrypt([]byte("x"), tt.recipients...); err == nil {
					t.Error("PackAnoncrypt: no error")
				}
			}
		})
	}
}

// offCurve returns 32 bytes that are not an Ed25519 point encoding.
func offCurve(t testing.TB) ed25519.PublicKey {
	t.Helper()
	for i := 2; i < 256; i++ {
		b := make(ed25519.PublicKey, 32)
		b[0] = byte(i)
		if _, err := PublicKeyToX25519(b); err != nil && !errors.Is(err, errSmallOrder) {
			return b
		}
	}
	t.Fatal("no off-curve encoding found")
	return nil
}

func TestKeyConversion(t *testing.T) {
	// Consistency: the converted private key's public key is the converted
	// public key (vectors_test.go checks both against libsodium).
	for i := range 50 {
		priv := testKey(fmt.Sprint("conv-", i))
		xPub, err := PublicKeyToX25519(pubOf(priv))
		if err != nil {
			t.Fatal(err)
		}
		xPriv := PrivateKeyToX25519(priv)
		want, err := curve25519.X25519(xPriv, curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(xPub, want) {
			t.Fatalf("key %d: PublicKeyToX25519 = %x, want %x", i, xPub, want)
		}
	}
	for _, n := range []int{0, 31, 32, 63, 65} {
		if got := PrivateKeyToX25519(make(ed25519.PrivateKey, n)); got != nil {
			t.Errorf("PrivateKeyToX25519(%d bytes) = %x, want nil", n, got)
		}
	}
	lowOrder := []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
	}
	for _, h := range lowOrder {
		var b [32]byte
		fmt.Sscanf(h, "%x", &b)
		if _, err := PublicKeyToX25519(b[:]); !errors.Is(err, errSmallOrder) {
			t.Errorf("PublicKeyToX25519(%s) error = %v, want small order", h[:8], err)
		}
	}
	for _, b := range [][]byte{nil, make([]byte, 31), make([]byte, 33), offCurve(t)} {
		if _, err := PublicKeyToX25519(b); err == nil {
			t.Errorf("PublicKeyToX25519(%x): no error", b)
		}
	}
}

func TestParseAccessors(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	packed, err := PackAuthcrypt([]byte("hi"), alice, pubOf(carol), pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(packed)
	if err != nil {
		t.Fatal(err)
	}
	kids := e.Kids()
	kids[0] = "mutated"
	if e.Kids()[0] != verkey(carol) {
		t.Error("Kids() exposes internal state")
	}
	// Open works for either kid, repeatedly and after a failure.
	if _, err := e.Open(verkey(bob), carol); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with the wrong key: %v, want ErrDecrypt", err)
	}
	for _, k := range []ed25519.PrivateKey{bob, carol, bob} {
		u, err := e.Open(verkey(k), k)
		if err != nil || string(u.Plaintext) != "hi" || u.SenderKey != verkey(alice) {
			t.Fatalf("Open(%s) = %+v, %v", verkey(k), u, err)
		}
	}
}

func TestUnpackLookupOrder(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	packed, err := PackAnoncrypt([]byte("hi"), pubOf(carol), pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	u, err := Unpack(packed, func(vk string) (ed25519.PrivateKey, bool) {
		asked = append(asked, vk)
		return lookupOf(bob, carol)(vk)
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.RecipientKey != verkey(carol) || !slices.Equal(asked, []string{verkey(carol)}) {
		t.Errorf("opened as %s after asking %v; want the first kid, carol", u.RecipientKey, asked)
	}
	if u.SenderKey != "" {
		t.Errorf("anoncrypt SenderKey = %q", u.SenderKey)
	}

	_, err = Unpack(packed, lookupOf(alice))
	if !errors.Is(err, ErrNoRecipient) {
		t.Errorf("Unpack with unknown keys: %v, want ErrNoRecipient", err)
	}
	_, err = Unpack(packed, nil)
	if !errors.Is(err, ErrNoRecipient) {
		t.Errorf("Unpack with nil lookup: %v, want ErrNoRecipient", err)
	}
	// A lookup that answers with the wrong key is a decryption failure,
	// not a reason to try the next kid.
	_, err = Unpack(packed, func(string) (ed25519.PrivateKey, bool) { return alice, true })
	if !errors.Is(err, ErrDecrypt) {
		t.Errorf("Unpack with a lying lookup: %v, want ErrDecrypt", err)
	}
}

func TestErrorsWrapped(t *testing.T) {
	_, err := Parse([]byte(`{"protected":"e30","iv":"AAAAAAAAAAAAAAAA","ciphertext":"","tag":"AAAAAAAAAAAAAAAAAAAAAA"}`))
	if !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), ErrMalformed.Error()+": ") {
		t.Errorf("err = %v", err)
	}
}

// TestOpenConcurrent exercises the documented guarantee that an Envelope may
// be opened from several goroutines (run with -race).
func TestOpenConcurrent(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	packed, err := PackAuthcrypt([]byte("shared"), alice, pubOf(bob), pubOf(carol))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(packed)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			k := bob
			if i%2 == 1 {
				k = carol
			}
			u, err := e.Open(verkey(k), k)
			if err == nil && string(u.Plaintext) != "shared" {
				err = fmt.Errorf("plaintext %q", u.Plaintext)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// OpenWith, with a Key made once, gives what Open gives, for both kinds of
// envelope and for every recipient; a Key that is not a recipient gets
// ErrNoRecipient.
func TestOpenWith(t *testing.T) {
	sender, alice, bob, carol := testKey("ow-sender"), testKey("ow-alice"), testKey("ow-bob"), testKey("ow-carol")
	msg := []byte(`{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"1"}`)
	auth, err := PackAuthcrypt(msg, sender, pubOf(alice), pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := PackAnoncrypt(msg, pubOf(alice), pubOf(bob))
	if err != nil {
		t.Fatal(err)
	}
	for name, packed := range map[string][]byte{"authcrypt": auth, "anoncrypt": anon} {
		e, err := Parse(packed)
		if err != nil {
			t.Fatal(err)
		}
		for _, priv := range []ed25519.PrivateKey{alice, bob} {
			k, err := NewKey(priv)
			if err != nil {
				t.Fatal(err)
			}
			if k.Verkey() != verkey(priv) || !bytes.Equal(k.PrivateKey(), priv) {
				t.Fatalf("Key of %s: verkey %s, private key kept %v", verkey(priv), k.Verkey(), bytes.Equal(k.PrivateKey(), priv))
			}
			got, err := e.OpenWith(k)
			if err != nil {
				t.Fatalf("%s: OpenWith(%s): %v", name, k.Verkey(), err)
			}
			want, err := e.Open(verkey(priv), priv)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Plaintext, msg) || got.RecipientKey != want.RecipientKey || got.SenderKey != want.SenderKey {
				t.Errorf("%s: OpenWith = %+v, Open = %+v", name, got, want)
			}
		}
		k, err := NewKey(carol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.OpenWith(k); !errors.Is(err, ErrNoRecipient) {
			t.Errorf("%s: OpenWith(not a recipient) = %v, want ErrNoRecipient", name, err)
		}
	}
	if _, err := NewKey(alice[:63]); err == nil {
		t.Error("NewKey(63 bytes): no error")
	}
}

// One Key used by many goroutines at once, opening messages from two
// senders and packing to two recipients, so its shared-key cache changes
// hands constantly (run with -race).
func TestKeyConcurrent(t *testing.T) {
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	bobKey, err := NewKey(bob)
	if err != nil {
		t.Fatal(err)
	}
	var envs []*Envelope
	for _, from := range []ed25519.PrivateKey{alice, carol} {
		packed, err := PackAuthcrypt([]byte("from "+verkey(from)), from, pubOf(bob))
		if err != nil {
			t.Fatal(err)
		}
		e, err := Parse(packed)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, e)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				from := []ed25519.PrivateKey{alice, carol}[(g+i)%2]
				u, err := envs[(g+i)%2].OpenWith(bobKey)
				if err != nil || u.SenderKey != verkey(from) || string(u.Plaintext) != "from "+verkey(from) {
					t.Errorf("open: %+v, %v", u, err)
					return
				}
				to := []ed25519.PrivateKey{alice, carol}[(g+i+1)%2]
				packed, err := PackAuthcryptWith([]byte("reply"), bobKey, pubOf(to))
				if err != nil {
					t.Error(err)
					return
				}
				if u, err := Unpack(packed, lookupOf(to)); err != nil || u.SenderKey != verkey(bob) {
					t.Errorf("reply to %s: %+v, %v", verkey(to), u, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
