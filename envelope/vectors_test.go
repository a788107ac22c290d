package envelope

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// vectorFile is testdata/vectors.json, written by testdata/genvectors.js
// (libsodium) so that these tests check against an independent packer.
type vectorFile struct {
	Keys map[string]struct {
		Seed          string `json:"seed"`
		Verkey        string `json:"verkey"`
		X25519Public  string `json:"x25519_public"`
		X25519Private string `json:"x25519_private"`
	} `json:"keys"`
	Vectors []vector `json:"vectors"`
}

type vector struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Sender      string   `json:"sender"` // key name, "" for anoncrypt
	Recipients  []string `json:"recipients"`
	Plaintext   string   `json:"plaintext"`
	Packed      string   `json:"packed"`
}

func loadVectors(t testing.TB) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	return &vf
}

func TestLibsodiumVectors(t *testing.T) {
	vf := loadVectors(t)
	keys := make(map[string]ed25519.PrivateKey)
	for name, k := range vf.Keys {
		seed, err := hex.DecodeString(k.Seed)
		if err != nil {
			t.Fatal(err)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		if !bytes.Equal(priv, testKey(name)) || verkey(priv) != k.Verkey {
			t.Fatalf("key %s does not match testKey", name)
		}
		xPub, err := PublicKeyToX25519(pubOf(priv))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(xPub); got != k.X25519Public {
			t.Errorf("%s: PublicKeyToX25519 = %s, libsodium %s", name, got, k.X25519Public)
		}
		if got := hex.EncodeToString(PrivateKeyToX25519(priv)); got != k.X25519Private {
			t.Errorf("%s: PrivateKeyToX25519 = %s, libsodium %s", name, got, k.X25519Private)
		}
		keys[name] = priv
	}
	if len(vf.Vectors) < 10 {
		t.Fatalf("only %d vectors", len(vf.Vectors))
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			e, err := Parse([]byte(v.Packed))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if e.Anoncrypt() != (v.Sender == "") {
				t.Errorf("Anoncrypt() = %v", e.Anoncrypt())
			}
			var wantKids []string
			for _, r := range v.Recipients {
				wantKids = append(wantKids, verkey(keys[r]))
			}
			if !slices.Equal(e.Kids(), wantKids) {
				t.Errorf("Kids() = %v, want %v", e.Kids(), wantKids)
			}
			wantSender := ""
			if v.Sender != "" {
				wantSender = verkey(keys[v.Sender])
			}
			for _, r := range v.Recipients {
				u, err := Unpack([]byte(v.Packed), lookupOf(keys[r]))
				if err != nil {
					t.Fatalf("Unpack as %s: %v", r, err)
				}
				if string(u.Plaintext) != v.Plaintext || u.SenderKey != wantSender || u.RecipientKey != verkey(keys[r]) {
					t.Errorf("Unpack as %s = (%q, %q, %q)", r, u.Plaintext, u.SenderKey, u.RecipientKey)
				}
			}
			if v.Name == "anoncrypt-chacha-url" {
				// A forward: the inner message is authcrypted to carol.
				var fwd struct{ Msg json.RawMessage }
				if err := json.Unmarshal([]byte(v.Plaintext), &fwd); err != nil {
					t.Fatal(err)
				}
				u, err := Unpack(fwd.Msg, lookupOf(keys["carol"]))
				if err != nil || u.SenderKey != verkey(keys["alice"]) {
					t.Errorf("inner Unpack = %+v, %v", u, err)
				}
			}
		})
	}
}

type credoExample struct {
	Source string          `json:"source"`
	Packed json.RawMessage `json:"packed"`
}

// loadCredoExamples reads the envelopes captured from real Credo agents.
func loadCredoExamples(tb testing.TB) []credoExample {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "credo-real.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var examples []credoExample
	if err := json.Unmarshal(data, &examples); err != nil {
		tb.Fatal(err)
	}
	return examples
}

// TestCredoWireExamples parses envelopes captured from real Credo 0.5 and 0.6
// agents (we do not hold their keys, so they can only be parsed).
func TestCredoWireExamples(t *testing.T) {
	examples := loadCredoExamples(t)
	if len(examples) == 0 {
		t.Fatal("no examples")
	}
	for _, ex := range examples {
		e, err := Parse(ex.Packed)
		if err != nil {
			t.Errorf("%s: %v", ex.Source, err)
			continue
		}
		if e.Anoncrypt() || len(e.Kids()) != 1 || len(e.nonce) != 12 {
			t.Errorf("%s: anoncrypt=%v kids=%v nonce=%d", ex.Source, e.Anoncrypt(), e.Kids(), len(e.nonce))
		}
		if _, err := e.Open(e.Kids()[0], testKey("bob")); err == nil {
			t.Errorf("%s: opened with a foreign key", ex.Source)
		}
	}
}

// goPacked is testdata/go-packed.json: envelopes packed by this package for
// testdata/checkgo.js to open with libsodium.
type goPacked struct {
	Keys  map[string]goPackedKey `json:"keys"`
	Cases []goPackedCase         `json:"cases"`
}

type goPackedKey struct {
	Seed   string `json:"seed"`
	Verkey string `json:"verkey"`
}

type goPackedCase struct {
	Name       string   `json:"name"`
	Alg        string   `json:"alg"`
	Sender     string   `json:"sender,omitempty"`
	Recipients []string `json:"recipients"`
	Plaintext  string   `json:"plaintext"`
	Packed     string   `json:"packed"`
}

// TestWriteGoPacked regenerates testdata/go-packed.json when
// ENVELOPE_WRITE_GO_PACKED is set; then run testdata/checkgo.js.
func TestWriteGoPacked(t *testing.T) {
	if os.Getenv("ENVELOPE_WRITE_GO_PACKED") == "" {
		t.Skip("set ENVELOPE_WRITE_GO_PACKED=1 to regenerate testdata/go-packed.json")
	}
	names := []string{"alice", "bob", "carol"}
	out := goPacked{Keys: make(map[string]goPackedKey)}
	keys := make(map[string]ed25519.PrivateKey)
	for _, n := range names {
		k := testKey(n)
		keys[n] = k
		out.Keys[n] = goPackedKey{Seed: hex.EncodeToString(k.Seed()), Verkey: verkey(k)}
	}
	basic := `{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"6a0b6b1e-2f35-4b8c-9d61-5b0a1f3e7c21","content":"héllo from Go 👋"}`
	kib := `{"@type":"https://didcomm.org/basicmessage/1.0/message","content":"` + strings.Repeat("0123456789abcdef", 60) + `"}`
	specs := []struct {
		name, sender string
		recipients   []string
		plaintext    string
	}{
		{"authcrypt", "alice", []string{"bob"}, basic},
		{"anoncrypt", "", []string{"bob"}, basic},
		{"authcrypt-multi", "alice", []string{"bob", "carol"}, basic},
		{"anoncrypt-multi", "", []string{"carol", "bob"}, kib},
		{"authcrypt-1kib", "bob", []string{"alice"}, kib},
		{"anoncrypt-empty", "", []string{"carol"}, ""},
	}
	for _, s := range specs {
		var pubs []ed25519.PublicKey
		for _, r := range s.recipients {
			pubs = append(pubs, pubOf(keys[r]))
		}
		var packed []byte
		var err error
		alg := "Anoncrypt"
		if s.sender == "" {
			packed, err = PackAnoncrypt([]byte(s.plaintext), pubs...)
		} else {
			alg = "Authcrypt"
			packed, err = PackAuthcrypt([]byte(s.plaintext), keys[s.sender], pubs...)
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Cases = append(out.Cases, goPackedCase{s.name, alg, s.sender, s.recipients, s.plaintext, string(packed)})
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "go-packed.json"), append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGoPacked opens the committed go-packed.json, so that a change to Pack
// that libsodium would no longer accept also shows up as a change here.
func TestGoPacked(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "go-packed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gp goPacked
	if err := json.Unmarshal(data, &gp); err != nil {
		t.Fatal(err)
	}
	for _, c := range gp.Cases {
		for _, r := range c.Recipients {
			u, err := Unpack([]byte(c.Packed), lookupOf(testKey(r)))
			if err != nil {
				t.Fatalf("%s as %s: %v", c.Name, r, err)
			}
			wantSender := ""
			if c.Sender != "" {
				wantSender = verkey(testKey(c.Sender))
			}
			if string(u.Plaintext) != c.Plaintext || u.SenderKey != wantSender {
				t.Errorf("%s as %s: got (%q, %q)", c.Name, r, u.Plaintext, u.SenderKey)
			}
		}
	}
}
