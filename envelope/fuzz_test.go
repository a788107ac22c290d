package envelope

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
)

// addSeeds adds valid envelopes of every flavour (libsodium vectors, real
// Credo captures, our own output) and assorted junk to the corpus; plain
// `go test` runs them all.
func addSeeds(f *testing.F) {
	vf := loadVectors(f)
	for _, v := range vf.Vectors {
		f.Add([]byte(v.Packed))
	}
	for _, ex := range loadCredoExamples(f) {
		f.Add([]byte(ex.Packed))
	}
	alice, bob, carol := testKey("alice"), testKey("bob"), testKey("carol")
	for _, pack := range []func() ([]byte, error){
		func() ([]byte, error) { return PackAuthcrypt([]byte(`{"@type":"x"}`), alice, pubOf(bob)) },
		func() ([]byte, error) { return PackAnoncrypt([]byte(`{"@type":"x"}`), pubOf(bob), pubOf(carol)) },
		func() ([]byte, error) { return PackAuthcrypt(nil, alice, pubOf(carol), pubOf(bob)) },
	} {
		packed, err := pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(packed)
	}
	for _, junk := range []string{
		"", "{}", "null", "[]", `"x"`, "{", `{"protected":null}`,
		`{"protected":"","iv":"","ciphertext":"","tag":""}`,
		`{"protected":"e30","iv":"AAAAAAAAAAAAAAAA","ciphertext":"","tag":"AAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"protected":"eyJyZWNpcGllbnRzIjpbXX0=","iv":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ciphertext":"QQ==","tag":"AAAAAAAAAAAAAAAAAAAAAA=="}`,
		"\x00\xff\xfe", `{"protected":"\u0065\u0033\u0030"}`,
	} {
		f.Add([]byte(junk))
	}
}

func FuzzParse(f *testing.F) {
	addSeeds(f)
	bob := testKey("bob")
	f.Fuzz(func(t *testing.T, packed []byte) {
		e, err := Parse(packed)
		if err != nil {
			if e != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, %v", e, err)
			}
			return
		}
		kids := e.Kids()
		if len(kids) == 0 || len(kids) > MaxRecipients {
			t.Fatalf("%d kids", len(kids))
		}
		for _, kid := range kids {
			if _, err := e.Open(kid, bob); err != nil && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Open: %v", err)
			}
		}
	})
}

func FuzzUnpack(f *testing.F) {
	addSeeds(f)
	lookup := lookupOf(testKey("alice"), testKey("bob"), testKey("carol"))
	f.Fuzz(func(t *testing.T, packed []byte) {
		orig := bytes.Clone(packed)
		u, err := Unpack(packed, lookup)
		if !bytes.Equal(orig, packed) {
			t.Fatal("Unpack modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrNoRecipient) {
				t.Fatalf("Unpack error without sentinel: %v", err)
			}
			return
		}
		if _, ok := lookup(u.RecipientKey); !ok {
			t.Fatalf("opened as unknown key %s", u.RecipientKey)
		}
		if u.SenderKey != "" {
			if _, err := PublicKeyToX25519(mustBase58(t, u.SenderKey)); err != nil {
				t.Fatalf("sender %s: %v", u.SenderKey, err)
			}
		}
	})
}

func mustBase58(t *testing.T, s string) ed25519.PublicKey {
	t.Helper()
	var b [32]byte
	if err := decodeVerkey(b[:], s); err != nil {
		t.Fatalf("sender %q: %v", s, err)
	}
	return b[:]
}

// FuzzSplitOuter checks the fast path of splitOuter against encoding/json:
// whatever scanOuter accepts, encoding/json decodes to the same fields, or
// the input is one that Parse rejects anyway.
func FuzzSplitOuter(f *testing.F) {
	addSeeds(f)
	for _, s := range []string{
		`{"protected":"a","protected":"b","iv":"","ciphertext":"","tag":""}`,
		` { "iv" : "x" , "tag":"y","ciphertext":"z","protected":"w" } `,
		"{\"iv\":\"a\x01b\",\"tag\":\"\",\"ciphertext\":\"\",\"protected\":\"\"}",
		"{\"iv\":\"a\xffb\",\"tag\":\"\",\"ciphertext\":\"\",\"protected\":\"\"}",
		`{"iv":"a\"b","tag":"","ciphertext":"","protected":""}`,
		`{"IV":"a","tag":"","ciphertext":"","protected":""}`,
		`{"iv":"a",}`, `{"iv":"a"}x`, `{"iv":"a"`, `{"iv" "a"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := scanOuter(data)
		if !ok {
			return
		}
		var w struct {
			Protected  *string `json:"protected"`
			IV         *string `json:"iv"`
			Ciphertext *string `json:"ciphertext"`
			Tag        *string `json:"tag"`
		}
		if err := json.Unmarshal(data, &w); err != nil {
			if _, perr := Parse(data); perr == nil {
				t.Fatalf("fast path accepted invalid JSON (%v) and Parse succeeded", err)
			}
			return
		}
		for _, c := range []struct {
			fast []byte
			slow *string
		}{{fast.protected, w.Protected}, {fast.iv, w.IV}, {fast.ciphertext, w.Ciphertext}, {fast.tag, w.Tag}} {
			if (c.fast == nil) != (c.slow == nil) {
				t.Fatalf("fast %q, encoding/json %v", c.fast, c.slow)
			}
			// encoding/json replaces invalid UTF-8; such values are not
			// base64 either way, so Parse must fail.
			if c.slow != nil && string(c.fast) != *c.slow {
				if _, err := Parse(data); err == nil {
					t.Fatalf("fast %q, encoding/json %q, and Parse succeeded", c.fast, *c.slow)
				}
			}
		}
	})
}
