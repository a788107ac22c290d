package diddoc

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mr-tron/base58"
)

// AttachmentData is the "data" member of a signed attachment
// (did_doc~attach, did_rotate~attach). Base64 holds the payload; JWS is a
// detached JWS, either a single signature {header, protected, signature} or
// the general form {signatures: [...]}.
type AttachmentData struct {
	Base64 string          `json:"base64"`
	JWS    json.RawMessage `json:"jws,omitempty"`
}

// maxSignatures bounds the signatures we verify in one JWS.
const maxSignatures = 32

type jwsHeader struct {
	Kid string `json:"kid"`
}

type jwsSignature struct {
	Header    *jwsHeader `json:"header,omitempty"`
	Protected string     `json:"protected"`
	Signature string     `json:"signature"`
}

type protectedHeader struct {
	Alg string `json:"alg"`
	JWK jwkOKP `json:"jwk"`
}

type jwkOKP struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
}

// SignAttachment signs payload with one key, producing what Credo's
// DidExchangeProtocol.createSignedAttachment produces: data.base64 is the
// payload in standard padded base64 (Credo uses this for documents, and its
// verifier converts it to base64url textually), jws is
// {header:{kid:did:key}, protected:b64url({"alg":"EdDSA","jwk":{…}}), signature}
// over protected + "." + base64url(payload).
func SignAttachment(payload []byte, priv ed25519.PrivateKey) (AttachmentData, error) {
	return SignAttachmentMulti(payload, priv)
}

// SignAttachmentMulti signs payload with several keys (e.g. our new DID's
// key and the invitation key). One key gives the single-signature form,
// more give {"signatures":[…]} as Credo's Attachment.addJws does.
func SignAttachmentMulti(payload []byte, privs ...ed25519.PrivateKey) (AttachmentData, error) {
	if len(privs) == 0 {
		return AttachmentData{}, fmt.Errorf("%w: no signing key", ErrInvalidInput)
	}
	if len(payload) == 0 {
		return AttachmentData{}, fmt.Errorf("%w: empty payload", ErrInvalidInput)
	}
	payloadB64 := base64.StdEncoding.EncodeToString(payload)
	signingPayload := b64url(payload)
	var sigs []jwsSignature
	for _, priv := range privs {
		pub, err := checkOwnPrivateKey(priv)
		if err != nil {
			return AttachmentData{}, err
		}
		prot, err := jsStringifyValue(protectedHeader{
			Alg: "EdDSA",
			JWK: jwkOKP{Kty: "OKP", Crv: "Ed25519", X: b64url(pub)},
		})
		if err != nil {
			return AttachmentData{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
		}
		protected := b64url(prot)
		sig := ed25519.Sign(priv, []byte(protected+"."+signingPayload))
		sigs = append(sigs, jwsSignature{
			Header:    &jwsHeader{Kid: didKeyFromPub(pub)},
			Protected: protected,
			Signature: b64url(sig),
		})
	}
	var v any = sigs[0]
	if len(sigs) > 1 {
		v = struct {
			Signatures []jwsSignature `json:"signatures"`
		}{sigs}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return AttachmentData{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return AttachmentData{Base64: payloadB64, JWS: raw}, nil
}

// VerifyAttachment verifies a signed attachment the way Credo's JwsService
// does and returns the decoded payload and the signers' base58 verkeys
// (deduplicated, in order). Accepted: the single-signature and the
// "signatures" form; every signature must verify; the key comes from the
// protected jwk (Credo 0.5) and/or the header kid did:key (Credo 0.6) — if
// both are present they must be the same key; alg must be EdDSA (or
// Ed25519); data.base64 may use either alphabet, padded or not. Whether the
// signers are the right ones is up to the caller (see ResolveSignedDoc and
// VerifyDIDRotate).
func VerifyAttachment(d AttachmentData) (payload []byte, signerVerkeys []string, err error) {
	if d.Base64 == "" {
		return nil, nil, fmt.Errorf("%w: attachment has no base64 data", ErrInvalidSignature)
	}
	payload, err = decodeBase64Any(d.Base64)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: attachment base64: %v", ErrInvalidSignature, err)
	}
	if len(bytes.TrimSpace(d.JWS)) == 0 || bytes.Equal(bytes.TrimSpace(d.JWS), []byte("null")) {
		return nil, nil, fmt.Errorf("%w: attachment is not signed (no jws)", ErrInvalidSignature)
	}
	sigs, err := parseJWS(d.JWS)
	if err != nil {
		return nil, nil, err
	}
	// Credo's signing input: data.base64 converted textually to base64url.
	inputs := []string{toBase64URLText(d.Base64)}
	if canon := b64url(payload); canon != inputs[0] {
		inputs = append(inputs, canon)
	}
	var signers []ed25519.PublicKey
	for i, s := range sigs {
		pub, err := verifyOne(s, inputs)
		if err != nil {
			return nil, nil, fmt.Errorf("signature %d: %w", i, err)
		}
		signers = appendKey(signers, pub)
	}
	return payload, encodeKeys(signers), nil
}

func parseJWS(raw json.RawMessage) ([]map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, fmt.Errorf("%w: jws is not a JSON object", ErrInvalidSignature)
	}
	sigsRaw, general := top["signatures"]
	if !general {
		return []map[string]json.RawMessage{top}, nil
	}
	var sigs []map[string]json.RawMessage
	if err := json.Unmarshal(sigsRaw, &sigs); err != nil {
		return nil, fmt.Errorf("%w: jws signatures is not an array of objects", ErrInvalidSignature)
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("%w: jws has no signatures", ErrInvalidSignature)
	}
	if len(sigs) > maxSignatures {
		return nil, fmt.Errorf("%w: jws has %d signatures (max %d)", ErrInvalidSignature, len(sigs), maxSignatures)
	}
	for _, s := range sigs {
		if s == nil {
			return nil, fmt.Errorf("%w: jws signature is not an object", ErrInvalidSignature)
		}
	}
	return sigs, nil
}

func rawString(m map[string]json.RawMessage, k string) (string, bool, error) {
	v, ok := m[k]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", true, fmt.Errorf("%w: %s is not a string", ErrInvalidSignature, k)
	}
	return s, true, nil
}

func verifyOne(s map[string]json.RawMessage, inputs []string) (ed25519.PublicKey, error) {
	protected, _, err := rawString(s, "protected")
	if err != nil {
		return nil, err
	}
	if protected == "" {
		return nil, fmt.Errorf("%w: no protected header", ErrInvalidSignature)
	}
	sigB64, _, err := rawString(s, "signature")
	if err != nil {
		return nil, err
	}
	sig, err := decodeBase64Any(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is not a base64 Ed25519 signature", ErrInvalidSignature)
	}
	protJSON, err := decodeBase64Any(protected)
	if err != nil {
		return nil, fmt.Errorf("%w: protected header is not base64url: %v", ErrInvalidSignature, err)
	}
	var prot map[string]json.RawMessage
	if err := json.Unmarshal(protJSON, &prot); err != nil || prot == nil {
		return nil, fmt.Errorf("%w: protected header is not a JSON object", ErrInvalidSignature)
	}
	alg, _, err := rawString(prot, "alg")
	if err != nil {
		return nil, err
	}
	if alg != "EdDSA" && alg != "Ed25519" {
		return nil, fmt.Errorf("%w: alg %q is not EdDSA", ErrInvalidSignature, truncate(alg))
	}

	// Candidate keys: protected jwk, unprotected header kid, protected kid.
	var candidates []ed25519.PublicKey
	if jwkRaw, ok := prot["jwk"]; ok && !bytes.Equal(bytes.TrimSpace(jwkRaw), []byte("null")) {
		var jwk jwkOKP
		if err := json.Unmarshal(jwkRaw, &jwk); err != nil {
			return nil, fmt.Errorf("%w: protected jwk is malformed", ErrInvalidSignature)
		}
		if jwk.Kty != "OKP" || jwk.Crv != "Ed25519" {
			return nil, fmt.Errorf("%w: protected jwk is %s/%s, not OKP/Ed25519", ErrInvalidSignature, truncate(jwk.Kty), truncate(jwk.Crv))
		}
		x, err := decodeBase64Any(jwk.X)
		if err != nil {
			return nil, fmt.Errorf("%w: protected jwk x: %v", ErrInvalidSignature, err)
		}
		pub, err := checkEd25519(x)
		if err != nil {
			return nil, fmt.Errorf("%w: protected jwk: %v", ErrInvalidSignature, err)
		}
		candidates = append(candidates, pub)
	}
	kids := []string{}
	if hRaw, ok := s["header"]; ok && !bytes.Equal(bytes.TrimSpace(hRaw), []byte("null")) {
		var h map[string]json.RawMessage
		if err := json.Unmarshal(hRaw, &h); err != nil {
			return nil, fmt.Errorf("%w: header is not a JSON object", ErrInvalidSignature)
		}
		if kid, ok, err := rawString(h, "kid"); err != nil {
			return nil, err
		} else if ok {
			kids = append(kids, kid)
		}
	}
	if kid, ok, err := rawString(prot, "kid"); err == nil && ok {
		kids = append(kids, kid)
	}
	for _, kid := range kids {
		// Other kids (e.g. "#key-1", a UUID) carry no key; Credo 0.6 would
		// reject them, Credo 0.5 uses the jwk.
		if strings.HasPrefix(kid, didKeyPrefix) {
			pub, err := pubFromDIDKey(kid)
			if err != nil {
				return nil, fmt.Errorf("%w: kid: %v", ErrInvalidSignature, err)
			}
			candidates = append(candidates, pub)
		}
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: no verification key (neither a jwk nor a did:key kid)", ErrInvalidSignature)
	}
	pub := candidates[0]
	for _, c := range candidates[1:] {
		if !c.Equal(pub) {
			return nil, fmt.Errorf("%w: jwk and kid name different keys", ErrInvalidSignature)
		}
	}
	for _, in := range inputs {
		if ed25519.Verify(pub, []byte(protected+"."+in), sig) {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("%w: signature by %s does not verify", ErrInvalidSignature, base58.Encode(pub))
}

// ResolveSignedDoc handles a did_doc~attach (did:peer:1, or an unqualified
// DID with a legacy or modern document as ACA-Py sends): it verifies the
// JWS, resolves did with the payload as document, and requires every signer
// to be a key listed in that document or one of trustedSigners (base58 or
// did:key; pass the invitation's recipient keys when processing a
// response). Credo accepts authentication keys plus invitation keys; we
// accept any Ed25519 key the document lists.
func ResolveSignedDoc(did string, d AttachmentData, trustedSigners []string) (Resolved, error) {
	payload, signers, err := VerifyAttachment(d)
	if err != nil {
		return Resolved{}, err
	}
	res, err := ResolveDID(did, payload)
	if err != nil {
		return Resolved{}, err
	}
	root, err := parseOrdered(res.Doc)
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %v", ErrInvalidDoc, err)
	}
	allowed := docSignerKeys(root)
	for _, t := range trustedSigners {
		if vk, err := NormalizeVerkey(t); err == nil {
			allowed = append(allowed, vk)
		}
	}
	for _, s := range signers {
		if !contains(allowed, s) {
			return Resolved{}, fmt.Errorf("%w: %s signed the document but is neither in it nor trusted", ErrUntrustedSigner, s)
		}
	}
	return res, nil
}

// VerifyDIDRotate checks a DID Exchange 1.1 did_rotate~attach: the payload
// must be exactly did and every signature must be by one of invitationKeys
// (base58 or did:key). It returns the signers.
func VerifyDIDRotate(did string, d AttachmentData, invitationKeys []string) ([]string, error) {
	var allowed []string
	for _, k := range invitationKeys {
		if vk, err := NormalizeVerkey(k); err == nil {
			allowed = append(allowed, vk)
		}
	}
	if len(allowed) == 0 {
		return nil, fmt.Errorf("%w: no valid invitation key to check did_rotate against", ErrInvalidInput)
	}
	payload, signers, err := VerifyAttachment(d)
	if err != nil {
		return nil, err
	}
	if string(payload) != did {
		return nil, fmt.Errorf("%w: did_rotate names %q, message DID is %q", ErrInvalidDID, truncate(string(payload)), truncate(did))
	}
	for _, s := range signers {
		if !contains(allowed, s) {
			return nil, fmt.Errorf("%w: did_rotate signed by %s, not an invitation key", ErrUntrustedSigner, s)
		}
	}
	return signers, nil
}
