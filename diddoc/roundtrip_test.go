package diddoc

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestOwnPeerDIDsRoundTrip(t *testing.T) {
	pub := pubOf(ourPriv)
	vk := vkOf(ourPriv)
	for _, eps := range [][]string{
		testEndpoints,
		{"http://localhost:8080"},
		{"https://m.example/a?x=1&y=<2>", "wss://m.example/ws", "ws://m.example/ws2"},
	} {
		did1, doc1, err := NewPeerDID1(pub, eps)
		if err != nil {
			t.Fatal(err)
		}
		did2, err := NewPeerDID2(pub, eps)
		if err != nil {
			t.Fatal(err)
		}
		did4, err := NewPeerDID4(pub, eps)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			did string
			doc []byte
		}{{did1, doc1}, {did2, nil}, {did4, nil}} {
			r, err := ResolvePeerDID(c.did, c.doc)
			if err != nil {
				t.Fatalf("%s: %v", c.did, err)
			}
			if r.DID != c.did || !reflect.DeepEqual(r.RecipientKeys, []string{vk}) || r.Endpoint != eps[0] ||
				!reflect.DeepEqual(r.Endpoints, eps) || len(r.RoutingKeys) != 0 {
				t.Fatalf("%s: %+v", c.did, r)
			}
			if !json.Valid(r.Doc) {
				t.Fatalf("%s: doc not JSON", c.did)
			}
		}
		// did:peer:1 with the document as signed attachment.
		att, err := SignAttachment(doc1, ourPriv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ResolveSignedDoc(did1, att, nil); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(doc1), `\u0026`) {
			t.Fatalf("HTML-escaped doc: %s", doc1)
		}
	}
}

// Credo's isValidPeerDid (core/build/modules/dids/methods/peer/didPeer.js),
// which PeerDidResolver applies before resolving.
var credoPeerDIDRegex = regexp.MustCompile(`^did:peer:(([01](z)([1-9a-km-zA-HJ-NP-Z]{5,200}))|(2((.[AEVID](z)([1-9a-km-zA-HJ-NP-Z]{5,200}))+(.(S)[0-9a-zA-Z=]*)*))|([4](z[1-9a-km-zA-HJ-NP-Z]{46})(:z[1-9a-km-zA-HJ-NP-Z]{6,}){0,1}))$`)

func TestOwnDIDsPassCredoRegex(t *testing.T) {
	pub := pubOf(ourPriv)
	for _, eps := range [][]string{
		testEndpoints,
		{"https://dev.mediator.ai/didcomm?z=????", "wss://x.y/ws>>>"},
		{"https://m.example/~user/?a=b&c=d~e>f", "https://bücher.example/ü?x=😀"},
		{"http://[::1]:8080/a\"b", "ws://x/\u007f\x7f"},
	} {
		did2, err := NewPeerDID2(pub, eps)
		if err != nil {
			t.Fatal(err)
		}
		did1, doc1, _ := NewPeerDID1(pub, eps)
		did4, _ := NewPeerDID4(pub, eps)
		for _, d := range []string{did1, did2, did4} {
			if !credoPeerDIDRegex.MatchString(d) {
				t.Errorf("Credo would refuse %s (endpoints %q)", d, eps)
			}
		}
		for _, c := range []struct {
			did string
			doc []byte
		}{{did1, doc1}, {did2, nil}, {did4, nil}} {
			r, err := ResolvePeerDID(c.did, c.doc)
			if err != nil || !reflect.DeepEqual(r.Endpoints, eps) {
				t.Fatalf("%v %q", err, r.Endpoints)
			}
		}
	}
}

func TestPeerDID1Tamper(t *testing.T) {
	did, doc, err := NewPeerDID1(pubOf(ourPriv), testEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	// Without id the hash still matches (id is excluded), and id is filled in.
	var m map[string]any
	_ = json.Unmarshal(doc, &m)
	noID := strings.Replace(string(doc), `"id":"`+did+`",`, "", 1)
	r, err := ResolvePeerDID(did, []byte(noID))
	if err != nil || !strings.Contains(string(r.Doc), `"id":"`+did+`"`) {
		t.Fatalf("doc without id: %v %s", err, r.Doc)
	}
	// Pretty-printed: same members, same order → accepted (we re-serialise).
	pretty, _ := json.MarshalIndent(json.RawMessage(doc), "", "  ")
	if _, err := ResolvePeerDID(did, pretty); err != nil {
		t.Fatalf("pretty-printed doc: %v", err)
	}
	for name, bad := range map[string]string{
		"endpoint changed": strings.Replace(string(doc), "mediator.example.org", "evil.example.org", 1),
		"key changed":      strings.Replace(string(doc), vkOf(ourPriv), vkOf(invitationPriv), 1),
		"member reordered": strings.Replace(string(doc), `"type":"did-communication","priority":0`, `"priority":0,"type":"did-communication"`, 1),
	} {
		if _, err := ResolvePeerDID(did, []byte(bad)); !errors.Is(err, ErrInvalidDID) {
			t.Errorf("%s: %v", name, err)
		}
	}
	wrongID := strings.Replace(string(doc), `"id":"`+did, `"id":"did:peer:1zQmRA4FSBKykysmPw35DCFSbBTU5ziPJUVPY3r7GtxYbCGh`, 1)
	if _, err := ResolvePeerDID(did, []byte(wrongID)); !errors.Is(err, ErrInvalidDID) {
		t.Errorf("wrong id: %v", err)
	}
	if _, err := ResolvePeerDID(did, nil); !errors.Is(err, ErrInvalidDoc) {
		t.Errorf("no doc: %v", err)
	}
}

func TestResolveOtherForms(t *testing.T) {
	vk := vkOf(ourPriv)
	dk, _ := DIDKeyFromVerkey(vk)
	r, err := ResolveDID(dk, nil)
	if err != nil || !reflect.DeepEqual(r.RecipientKeys, []string{vk}) || r.Endpoint != "" {
		t.Fatalf("did:key: %v %+v", err, r)
	}
	r, err = ResolvePeerDID("did:peer:0"+dk[len("did:key:"):], nil)
	if err != nil || !reflect.DeepEqual(r.RecipientKeys, []string{vk}) {
		t.Fatalf("did:peer:0: %v %+v", err, r)
	}
	for _, d := range []string{"did:peer:3zQmS19jtYDvGtKVrJhQnRFpBQAx3pJ9omx2HpNrcXFuRCz9", "did:peer:", "did:web:example.com", "did:key:" + vk, "", "peer:1"} {
		if _, err := ResolvePeerDID(d, nil); err == nil {
			t.Errorf("ResolvePeerDID(%q) accepted", d)
		}
	}
	if _, err := ResolveDID("did:web:example.com", nil); !errors.Is(err, ErrUnsupportedDID) {
		t.Errorf("did:web: %v", err)
	}
}

// did:peer:2 as other agents (ACA-Py's did-peer-2, DIDComm v2 style) write them.
func TestPeerDID2Variants(t *testing.T) {
	pub := pubOf(ourPriv)
	fp := fingerprintFromPub(pub)
	x, _ := x25519FromEd25519(pub)
	routing, _ := DIDKeyFromVerkey(vkOf(invitationPriv))
	svc := func(j string) string { return ".S" + base64.RawURLEncoding.EncodeToString([]byte(j)) }
	cases := []struct {
		name, did, endpoint string
		routing             []string
	}{
		{"ACA-Py did-communication with id and accept",
			"did:peer:2.E" + x25519FingerprintFromPub(x) + ".V" + fp +
				svc(`{"t":"did-communication","s":"http://acapy:8020","recipientKeys":["#key-2"],"r":[],"a":["didcomm/aip2;env=rfc19"],"id":"#didcomm-0","priority":0}`),
			"http://acapy:8020", nil},
		{"DIDComm v2 dm with endpoint object, no recipientKeys",
			"did:peer:2.V" + fp + ".E" + x25519FingerprintFromPub(x) +
				svc(`{"t":"dm","s":{"uri":"https://v2.example/didcomm","a":["didcomm/v2"],"r":["`+routing+`#`+routing[8:]+`"]}}`),
			"https://v2.example/didcomm", []string{vkOf(invitationPriv)}},
		{"padded std base64 service",
			"did:peer:2.V" + fp + ".S" + base64.StdEncoding.EncodeToString([]byte(`{"t":"did-communication","s":"ws://x:1/?a=b","recipientKeys":["#key-1"]}`)),
			"ws://x:1/?a=b", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ResolvePeerDID(c.did, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.RecipientKeys, []string{vkOf(ourPriv)}) || r.Endpoint != c.endpoint || !reflect.DeepEqual(r.RoutingKeys, c.routing) {
				t.Fatalf("%+v", r)
			}
		})
	}
	for _, bad := range []string{
		"did:peer:2", "did:peer:2.", "did:peer:2..V" + fp, "did:peer:2.X" + fp, "did:peer:2.V" + fp + ".S!!!",
		"did:peer:2.V" + fp + svc(`[1,2]`), "did:peer:2.V" + fp + svc(`{"s":"http://x"}`),
		"did:peer:2.Vz6Mk", "did:peer:2.S" + base64.RawURLEncoding.EncodeToString([]byte(`{"t":"did-communication","s":"http://x"}`)),
		"did:peer:2.V" + fp + svc(`{"t":"did-communication","s":"http://x","recipientKeys":["#key-9"]}`),
	} {
		if _, err := ResolvePeerDID(bad, nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLegacyRoundTripAndVariants(t *testing.T) {
	pub := pubOf(ourPriv)
	vk := vkOf(ourPriv)
	did, doc, err := NewLegacyDoc(pub, testEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	if want := "RZtxfwSdnKwiWjzzuAYzqJ"; did != want { // base58(first 16 bytes), checked by Credo in credo_check.js
		t.Fatalf("legacy DID %s", did)
	}
	r, err := ResolveLegacy(did, doc)
	if err != nil || r.DID != did || !reflect.DeepEqual(r.RecipientKeys, []string{vk}) || r.Endpoint != testEndpoints[0] ||
		!reflect.DeepEqual(r.Endpoints, testEndpoints) {
		t.Fatalf("%v %+v", err, r)
	}
	if _, err := ResolveLegacy("did:sov:"+did, doc); err != nil {
		t.Fatalf("did:sov prefix: %v", err)
	}
	if _, err := ResolveLegacy("Xw"+did[2:], doc); !errors.Is(err, ErrInvalidDID) {
		t.Fatalf("mismatching DID: %v", err)
	}
	if _, err := ResolveLegacy("did:peer:2.x", doc); !errors.Is(err, ErrUnsupportedDID) {
		t.Fatalf("qualified DID: %v", err)
	}

	// ACA-Py style: did:sov ids, key references, a routing key as did:key,
	// higher-priority service second.
	rk, _ := DIDKeyFromVerkey(vkOf(invitationPriv))
	acapy := `{"@context":"https://w3id.org/did/v1","id":"did:sov:` + did + `",
	 "publicKey":[{"id":"did:sov:` + did + `#1","type":"Ed25519VerificationKey2018","controller":"did:sov:` + did + `","publicKeyBase58":"` + vk + `"}],
	 "authentication":[{"type":"Ed25519SignatureAuthentication2018","publicKey":"did:sov:` + did + `#1"}],
	 "service":[
	  {"id":"did:sov:` + did + `;indy2","type":"IndyAgent","priority":1,"recipientKeys":["` + vk + `"],"routingKeys":[],"serviceEndpoint":"http://second"},
	  {"id":"did:sov:` + did + `;indy","type":"IndyAgent","priority":0,"recipientKeys":["did:sov:` + did + `#1"],"routingKeys":["` + rk + `"],"serviceEndpoint":"http://acapy:8020"}]}`
	r, err = ResolveLegacy(did, []byte(acapy))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.RecipientKeys, []string{vk}) || r.Endpoint != "http://acapy:8020" ||
		!reflect.DeepEqual(r.RoutingKeys, []string{vkOf(invitationPriv)}) || !reflect.DeepEqual(r.Endpoints, []string{"http://acapy:8020", "http://second"}) {
		t.Fatalf("%+v", r)
	}
	// No service at all: authentication keys.
	noSvc := `{"id":"` + did + `","publicKey":[{"id":"#1","type":"Ed25519VerificationKey2018","publicKeyBase58":"` + vk + `"}],"authentication":[{"type":"Ed25519SignatureAuthentication2018","publicKey":"#1"}]}`
	r, err = ResolveLegacy(did, []byte(noSvc))
	if err != nil || !reflect.DeepEqual(r.RecipientKeys, []string{vk}) || r.Endpoint != "" {
		t.Fatalf("no service: %v %+v", err, r)
	}
	for name, bad := range map[string]string{
		"unknown reference": strings.Replace(acapy, `"recipientKeys":["did:sov:`+did+`#1"]`, `"recipientKeys":["did:sov:`+did+`#9"]`, 1),
		"no keys":           `{"id":"` + did + `"}`,
		"not object":        `[]`,
		"bad key":           strings.Replace(noSvc, vk, "abc", 1),
		"no endpoint":       `{"publicKey":[{"id":"#1","type":"Ed25519VerificationKey2018","publicKeyBase58":"` + vk + `"}],"service":[{"type":"IndyAgent","recipientKeys":["` + vk + `"]}]}`,
		"duplicate member":  `{"id":"a","id":"b"}`,
		"trailing data":     noSvc + "{}",
	} {
		if _, err := ResolveLegacy(did, []byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	_, conn, err := NewLegacyConnection(pub, testEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	r, err = ParseLegacyConnection(conn)
	if err != nil || r.DID != did || r.RecipientKeys[0] != vk {
		t.Fatalf("ParseLegacyConnection: %v %+v", err, r)
	}
}

func TestAttachmentRoundTrip(t *testing.T) {
	payload := []byte(`{"hello":"wörld","n":1}`)
	att, err := SignAttachment(payload, ourPriv)
	if err != nil {
		t.Fatal(err)
	}
	got, signers, err := VerifyAttachment(att)
	if err != nil || string(got) != string(payload) || !reflect.DeepEqual(signers, []string{vkOf(ourPriv)}) {
		t.Fatalf("%v %q %v", err, got, signers)
	}
	// JSON shape Credo expects.
	var j struct {
		Header struct {
			Kid string `json:"kid"`
		} `json:"header"`
		Protected string `json:"protected"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(att.JWS, &j); err != nil {
		t.Fatal(err)
	}
	dk, _ := DIDKeyFromVerkey(vkOf(ourPriv))
	prot, _ := base64.RawURLEncoding.DecodeString(j.Protected)
	if j.Header.Kid != dk || string(prot) != `{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"`+b64url(pubOf(ourPriv))+`"}}` {
		t.Fatalf("jws %s / protected %s", att.JWS, prot)
	}

	// Payload encodings Credo and others use are all accepted.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		a := att
		a.Base64 = enc.EncodeToString(payload)
		if _, _, err := VerifyAttachment(a); err != nil {
			t.Errorf("payload encoding %v: %v", enc, err)
		}
	}

	// Multi-signature form.
	multi, err := SignAttachmentMulti(payload, ourPriv, invitationPriv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(multi.JWS), `{"signatures":[`) {
		t.Fatalf("multi jws %s", multi.JWS)
	}
	_, signers, err = VerifyAttachment(multi)
	if err != nil || !reflect.DeepEqual(signers, []string{vkOf(ourPriv), vkOf(invitationPriv)}) {
		t.Fatalf("multi: %v %v", err, signers)
	}

	// kid-only (Credo 0.6 reads only the kid) and jwk-only (0.5 reads only the jwk).
	var sig map[string]json.RawMessage
	_ = json.Unmarshal(att.JWS, &sig)
	kidOnly := map[string]json.RawMessage{"header": sig["header"], "signature": sig["signature"]}
	protNoJWK := b64url([]byte(`{"alg":"EdDSA"}`))
	kidOnly["protected"], _ = json.Marshal(protNoJWK)
	kidOnly["signature"], _ = json.Marshal(b64url(ed25519.Sign(ourPriv, []byte(protNoJWK+"."+b64url(payload)))))
	a := att
	a.JWS, _ = json.Marshal(kidOnly)
	if _, s, err := VerifyAttachment(a); err != nil || s[0] != vkOf(ourPriv) {
		t.Errorf("kid only: %v", err)
	}
	jwkOnly := map[string]json.RawMessage{"protected": sig["protected"], "signature": sig["signature"]}
	a.JWS, _ = json.Marshal(jwkOnly)
	if _, _, err := VerifyAttachment(a); err != nil {
		t.Errorf("jwk only: %v", err)
	}
	a.JWS, _ = json.Marshal(map[string]json.RawMessage{"signature": sig["signature"], "protected": kidOnly["protected"]})
	if _, _, err := VerifyAttachment(a); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("no key at all: %v", err)
	}

	// Tampering.
	tampered := map[string]func(AttachmentData) AttachmentData{
		"payload": func(d AttachmentData) AttachmentData {
			d.Base64 = base64.StdEncoding.EncodeToString([]byte(`{"hello":"world","n":2}`))
			return d
		},
		"signature": func(d AttachmentData) AttachmentData {
			var m map[string]any
			_ = json.Unmarshal(d.JWS, &m)
			s := []byte(m["signature"].(string))
			s[3] ^= 1
			m["signature"] = string(s)
			d.JWS, _ = json.Marshal(m)
			return d
		},
		"alg": func(d AttachmentData) AttachmentData {
			var m map[string]any
			_ = json.Unmarshal(d.JWS, &m)
			m["protected"] = b64url([]byte(`{"alg":"ES256","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + b64url(pubOf(ourPriv)) + `"}}`))
			d.JWS, _ = json.Marshal(m)
			return d
		},
		"other key in jwk": func(d AttachmentData) AttachmentData {
			var m map[string]any
			_ = json.Unmarshal(d.JWS, &m)
			m["protected"] = b64url([]byte(`{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + b64url(pubOf(invitationPriv)) + `"}}`))
			delete(m, "header")
			d.JWS, _ = json.Marshal(m)
			return d
		},
		"one of two signatures bad": func(AttachmentData) AttachmentData {
			var m struct {
				Signatures []map[string]any `json:"signatures"`
			}
			_ = json.Unmarshal(multi.JWS, &m)
			m.Signatures[1]["signature"] = m.Signatures[0]["signature"]
			d := multi
			d.JWS, _ = json.Marshal(m)
			return d
		},
		"empty signatures": func(d AttachmentData) AttachmentData {
			d.JWS = json.RawMessage(`{"signatures":[]}`)
			return d
		},
		"null jws": func(d AttachmentData) AttachmentData {
			d.JWS = json.RawMessage(`null`)
			return d
		},
		"no base64": func(d AttachmentData) AttachmentData {
			d.Base64 = ""
			return d
		},
	}
	for name, f := range tampered {
		if _, _, err := VerifyAttachment(f(att)); !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := SignAttachment(payload, ed25519.PrivateKey{1, 2}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("short private key: %v", err)
	}
	if _, err := SignAttachment(nil, ourPriv); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("empty payload: %v", err)
	}
}

func TestDIDRotateRoundTrip(t *testing.T) {
	did, err := NewPeerDID2(pubOf(ourPriv), testEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	att, err := SignAttachment([]byte(did), invitationPriv)
	if err != nil {
		t.Fatal(err)
	}
	invDK, _ := DIDKeyFromVerkey(vkOf(invitationPriv))
	for _, keys := range [][]string{{vkOf(invitationPriv)}, {invDK}, {"junk", invDK}} {
		if s, err := VerifyDIDRotate(did, att, keys); err != nil || s[0] != vkOf(invitationPriv) {
			t.Fatalf("keys %v: %v", keys, err)
		}
	}
	if _, err := VerifyDIDRotate(did, att, []string{vkOf(ourPriv)}); !errors.Is(err, ErrUntrustedSigner) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := VerifyDIDRotate(did, att, nil); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("no keys: %v", err)
	}
	if _, err := VerifyDIDRotate(did+".", att, []string{vkOf(invitationPriv)}); !errors.Is(err, ErrInvalidDID) {
		t.Fatalf("other did: %v", err)
	}
}

func TestConnectionSigRoundTrip(t *testing.T) {
	_, conn, err := NewLegacyConnection(pubOf(ourPriv), testEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1764777130, 0)
	sig, err := SignConnection(conn, invitationPriv, now)
	if err != nil {
		t.Fatal(err)
	}
	var cs map[string]string
	if err := json.Unmarshal(sig, &cs); err != nil {
		t.Fatal(err)
	}
	if cs["@type"] != ConnectionSigType || cs["signer"] != vkOf(invitationPriv) {
		t.Fatalf("%s", sig)
	}
	data, _ := base64.RawURLEncoding.DecodeString(cs["sig_data"])
	if string(data[8:]) != string(conn) || data[7] != byte(now.Unix()) || data[0] != 0 {
		t.Fatalf("sig_data %x", data[:8])
	}
	got, signer, err := VerifyConnection(sig)
	if err != nil || string(got) != string(conn) || signer != vkOf(invitationPriv) {
		t.Fatalf("%v %s %s", err, got, signer)
	}
	if ts, err := ConnectionSigTime(sig); err != nil || !ts.Equal(now) {
		t.Fatalf("ConnectionSigTime %v %v", ts, err)
	}
	// Accepted variants: legacy type prefix, did:key signer, padded std base64.
	v := map[string]string{}
	for k, val := range cs {
		v[k] = val
	}
	v["@type"] = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/signature/1.0/ed25519Sha512_single"
	v["signer"], _ = DIDKeyFromVerkey(cs["signer"])
	v["sig_data"] = base64.StdEncoding.EncodeToString(data)
	vj, _ := json.Marshal(v)
	if _, s, err := VerifyConnection(vj); err != nil || s != vkOf(invitationPriv) {
		t.Fatalf("variants: %v", err)
	}
	// Tampering.
	for name, mod := range map[string]func(map[string]string){
		"data":   func(m map[string]string) { d := append([]byte{}, data...); d[20] ^= 1; m["sig_data"] = b64url(d) },
		"time":   func(m map[string]string) { d := append([]byte{}, data...); d[7] ^= 1; m["sig_data"] = b64url(d) },
		"signer": func(m map[string]string) { m["signer"] = vkOf(ourPriv) },
		"type":   func(m map[string]string) { m["@type"] = "https://didcomm.org/signature/1.0/other" },
		"short":  func(m map[string]string) { m["sig_data"] = b64url(data[:8]) },
		"sig":    func(m map[string]string) { m["signature"] = "abc" },
	} {
		m := map[string]string{}
		for k, val := range cs {
			m[k] = val
		}
		mod(m)
		mj, _ := json.Marshal(m)
		if _, _, err := VerifyConnection(mj); !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "[]", "not json", `{"signature":1}`} {
		if _, _, err := VerifyConnection(json.RawMessage(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := SignConnection([]byte(`[1]`), ourPriv, now); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("array: %v", err)
	}
	if _, err := SignConnection([]byte(`{`), ourPriv, now); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bad json: %v", err)
	}
}

func TestBadOwnInputs(t *testing.T) {
	pub := pubOf(ourPriv)
	for _, eps := range [][]string{nil, {}, {""}, {"http://a b"}} {
		if _, _, err := NewPeerDID1(pub, eps); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewPeerDID1(%q): %v", eps, err)
		}
		if _, err := NewPeerDID2(pub, eps); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewPeerDID2(%q): %v", eps, err)
		}
		if _, err := NewPeerDID4(pub, eps); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewPeerDID4(%q): %v", eps, err)
		}
		if _, _, err := NewLegacyDoc(pub, eps); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewLegacyDoc(%q): %v", eps, err)
		}
	}
	for _, p := range []ed25519.PublicKey{nil, pub[:31], ed25519.PublicKey(invalidPointKey(t))} {
		if _, _, err := NewPeerDID1(p, testEndpoints); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewPeerDID1(bad key): %v", err)
		}
		if _, err := NewPeerDID2(p, testEndpoints); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewPeerDID2(bad key): %v", err)
		}
		if _, err := NewPeerDID4(p, testEndpoints); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewPeerDID4(bad key): %v", err)
		}
		if _, _, err := NewLegacyDoc(p, testEndpoints); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewLegacyDoc(bad key): %v", err)
		}
	}
}

func TestJSNumberAndStringFormatting(t *testing.T) {
	// Expected values are what JSON.stringify produces in Node.
	nums := map[string]string{
		"0": "0", "-0": "0", "1": "1", "1.0": "1", "1.50": "1.5", "100": "100", "1e2": "100",
		"1e21": "1e+21", "1e20": "100000000000000000000", "123456789012345678901234": "1.2345678901234569e+23",
		"0.000001": "0.000001", "0.0000001": "1e-7", "1.5e-7": "1.5e-7", "-2.5": "-2.5", "0.1": "0.1",
		"12345.678": "12345.678", "5e-324": "5e-324",
	}
	for in, want := range nums {
		got, err := jsNumberString(in)
		if err != nil || got != want {
			t.Errorf("jsNumberString(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := jsNumberString("1e400"); err == nil {
		t.Error("1e400 accepted")
	}
	n, err := parseOrdered([]byte(`{"b":"<&>\u2028é\u0001\t\"\\/","a":[true,null,1.0]}`))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := n.stringify()
	if want := "{\"b\":\"<&>\u2028é\\u0001\\t\\\"\\\\/\",\"a\":[true,null,1]}"; string(out) != want {
		t.Errorf("stringify = %s\nwant        %s", out, want)
	}
}
