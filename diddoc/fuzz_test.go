package diddoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fuzz targets: `go test` runs the seed corpus; run e.g.
//   go test ./diddoc/ -run '^$' -fuzz FuzzResolvePeerDID -fuzztime 30s
// to explore. Every function must return (never panic) and every error must
// wrap one of the package's sentinel errors.

var sentinels = []error{ErrInvalidKey, ErrInvalidDID, ErrUnsupportedDID, ErrInvalidDoc, ErrInvalidSignature, ErrUntrustedSigner, ErrInvalidInput}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error does not wrap a sentinel: %v", err)
}

// wireSeeds returns DIDs, documents and attachments from the fixtures.
func wireSeeds(t testing.TB) (dids []string, docs [][]byte, atts []AttachmentData) {
	files, _ := filepath.Glob("testdata/wire0*.json")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m wireMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		dids = append(dids, m.DID)
		for _, a := range []*struct {
			Data AttachmentData `json:"data"`
		}{m.DocAtt, m.RotateAtt} {
			if a != nil {
				atts = append(atts, a.Data)
				if p, err := decodeBase64Any(a.Data.Base64); err == nil {
					docs = append(docs, p)
				}
			}
		}
	}
	v := buildVectors(t)
	dids = append(dids, v.Peer1DID, v.Peer2DID, v.Peer4DID, v.LegacyDID, v.OurDIDKey)
	docs = append(docs, v.Peer1Doc, v.LegacyDoc)
	return dids, docs, atts
}

func FuzzResolvePeerDID(f *testing.F) {
	dids, docs, _ := wireSeeds(f)
	for i, d := range dids {
		f.Add(d, docs[i%len(docs)])
	}
	f.Add("did:peer:2.Vz6Mk.S", []byte("{}"))
	f.Add("did:peer:4zQm:z", []byte(nil))
	f.Fuzz(func(t *testing.T, did string, doc []byte) {
		r, err := ResolvePeerDID(did, doc)
		checkErr(t, err)
		if err == nil && (len(r.RecipientKeys) == 0 || !json.Valid(r.Doc)) {
			t.Fatalf("success without keys or with invalid doc: %+v", r)
		}
		_, err = ResolveDID(did, doc)
		checkErr(t, err)
		_, err = PeerDID4ShortForm(did)
		checkErr(t, err)
	})
}

func FuzzResolveLegacy(f *testing.F) {
	_, docs, _ := wireSeeds(f)
	v := buildVectors(f)
	for _, d := range docs {
		f.Add(v.LegacyDID, d)
	}
	f.Add("did:sov:abc", []byte(`{"service":[{"type":"IndyAgent","recipientKeys":["#1"],"serviceEndpoint":{"uri":1}}]}`))
	f.Fuzz(func(t *testing.T, did string, doc []byte) {
		_, err := ResolveLegacy(did, doc)
		checkErr(t, err)
		_, err = ParseLegacyConnection(doc)
		checkErr(t, err)
	})
}

func FuzzVerifyAttachment(f *testing.F) {
	dids, _, atts := wireSeeds(f)
	for _, a := range atts {
		f.Add(a.Base64, []byte(a.JWS))
	}
	f.Add("", []byte(`{"signatures":[{}]}`))
	f.Add("e30", []byte(`{"protected":"e30","signature":"","header":{"kid":"did:key:z"}}`))
	f.Fuzz(func(t *testing.T, b64 string, jws []byte) {
		d := AttachmentData{Base64: b64, JWS: jws}
		_, signers, err := VerifyAttachment(d)
		checkErr(t, err)
		if err == nil && len(signers) == 0 {
			t.Fatal("verified without signers")
		}
		_, err = ResolveSignedDoc(dids[0], d, nil)
		checkErr(t, err)
		_, err = VerifyDIDRotate(dids[0], d, []string{"6TnL5DaegXgdknhLsg9BqYvgvzSHA6nBjsRoD36XBTV5"})
		checkErr(t, err)
	})
}

func FuzzVerifyConnection(f *testing.F) {
	v := buildVectors(f)
	var m struct {
		Sig json.RawMessage `json:"connection~sig"`
	}
	if err := json.Unmarshal(v.ConnectionResponse, &m); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(m.Sig))
	f.Add([]byte(`{"@type":"x/signature/1.0/ed25519Sha512_single","signer":"","sig_data":"","signature":""}`))
	f.Fuzz(func(t *testing.T, sig []byte) {
		_, _, err := VerifyConnection(sig)
		checkErr(t, err)
		_, err = ConnectionSigTime(sig)
		checkErr(t, err)
	})
}

func FuzzNormalizeVerkey(f *testing.F) {
	for _, s := range []string{"6TnL5DaegXgdknhLsg9BqYvgvzSHA6nBjsRoD36XBTV5", "did:key:z6Mkjv3NfTq625B6sHY3ZF72geUgkZi8Zz2YRtLj3K4Y6gGT#x", "z6Mk", "1111", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vk, err := NormalizeVerkey(s)
		checkErr(t, err)
		if err != nil {
			return
		}
		dk, err := DIDKeyFromVerkey(vk)
		if err != nil {
			t.Fatalf("normalised key %q not convertible: %v", vk, err)
		}
		back, err := VerkeyFromDIDKey(dk)
		if err != nil || back != vk {
			t.Fatalf("round trip %q -> %q -> %q (%v)", vk, dk, back, err)
		}
		_, err = VerkeyFromDIDKey(s)
		checkErr(t, err)
	})
}

func FuzzJSStringify(f *testing.F) {
	_, docs, _ := wireSeeds(f)
	for _, d := range docs {
		f.Add(d)
	}
	f.Add([]byte(`[1e400]`))
	f.Add([]byte(`{"a":"\ud800"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseOrdered(data)
		if err != nil {
			return
		}
		out, err := n.stringify()
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid output %q", out)
		}
		n2, err := parseOrdered(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		out2, err := n2.stringify()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("not idempotent: %q vs %q", out, out2)
		}
	})
}

// A fixed list of junk for every entry point (runs in normal `go test`).
func TestJunkInputsNeverPanic(t *testing.T) {
	junkStrings := []string{"", " ", "did:", "did:peer:", "did:peer:1", "did:peer:1z", "did:peer:2.", "did:peer:4",
		"did:peer:4z", "did:peer:4zQm:zz", "did:key:", "did:key:z", "did:sov:", "\x00\xff", strings.Repeat("z", 70000),
		"did:peer:2." + strings.Repeat("V", 1000), "did:peer:1" + strings.Repeat("1", 200), "#", "did:peer:9x"}
	junkJSON := []string{"", "null", "{}", "[]", "1", `"x"`, "{", `{"service":null}`, `{"service":[null,1,"x",{}]}`,
		`{"service":{"type":"did-communication","serviceEndpoint":"x","recipientKeys":[1]}}`,
		`{"service":[{"type":["did-communication"],"serviceEndpoint":["a"],"recipientKeys":["#k"]}],"authentication":["#k"]}`,
		`{"authentication":[{"id":"#k","type":"Ed25519VerificationKey2018"}]}`,
		`{"authentication":[{"id":"#k","type":"Ed25519VerificationKey2018","publicKeyBase58":"` + strings.Repeat("z", 1000) + `"}]}`,
		`{"verificationMethod":[{"id":"#k","type":"JsonWebKey2020","publicKeyJwk":{"kty":"OKP","crv":"Ed25519","x":1}}]}`,
		`{"verificationMethod":[{"id":"#k","type":"Multikey","publicKeyMultibase":"z"}]}`,
		`{"signatures":null}`, `{"signatures":[null]}`, `{"signatures":[{"protected":1}]}`,
		`{"protected":"eyJhbGciOiJFZERTQSIsImp3ayI6bnVsbH0","signature":"` + strings.Repeat("A", 86) + `"}`,
		strings.Repeat("[", 10000), `{"@type":1}`}
	for _, s := range junkStrings {
		for _, j := range junkJSON {
			for _, fn := range []func() error{
				func() error { _, err := ResolvePeerDID(s, []byte(j)); return err },
				func() error { _, err := ResolveLegacy(s, []byte(j)); return err },
				func() error { _, err := ResolveDID(s, []byte(j)); return err },
				func() error { _, err := ParseLegacyConnection([]byte(j)); return err },
				func() error {
					_, _, err := VerifyAttachment(AttachmentData{Base64: s, JWS: json.RawMessage(j)})
					return err
				},
				func() error {
					_, err := ResolveSignedDoc(s, AttachmentData{Base64: "e30", JWS: json.RawMessage(j)}, []string{s})
					return err
				},
				func() error {
					_, err := VerifyDIDRotate(s, AttachmentData{Base64: s, JWS: json.RawMessage(j)}, []string{s, vkOf(ourPriv)})
					return err
				},
				func() error { _, _, err := VerifyConnection(json.RawMessage(j)); return err },
				func() error { _, err := ConnectionSigTime(json.RawMessage(j)); return err },
			} {
				checkErr(t, fn())
			}
		}
		for _, fn := range []func() error{
			func() error { _, err := NormalizeVerkey(s); return err },
			func() error { _, err := DIDKeyFromVerkey(s); return err },
			func() error { _, err := VerkeyFromDIDKey(s); return err },
			func() error { _, err := Fingerprint(s); return err },
			func() error { _, err := PeerDID4ShortForm(s); return err },
			func() error { _, err := NewPeerDID2(pubOf(ourPriv), []string{s}); return err },
			func() error { _, err := SignConnection([]byte(s), ourPriv, time.Unix(-5, 0)); return err },
		} {
			checkErr(t, fn())
		}
	}
}
