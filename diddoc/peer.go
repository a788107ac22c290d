package diddoc

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/mr-tron/base58"
)

const (
	contextDIDv1Legacy = "https://w3id.org/did/v1"      // Credo 0.5 DidDocumentBuilder
	contextDIDv1       = "https://www.w3.org/ns/did/v1" // Credo 0.6 DidDocumentBuilder
	typeEd25519VK2018  = "Ed25519VerificationKey2018"
	typeX25519KA2019   = "X25519KeyAgreementKey2019"
	typeDIDComm        = "did-communication"

	// did:peer:4 encodes the document as multicodec "json" (0x0200).
	jsonCodecVarint0, jsonCodecVarint1 = 0x80, 0x04
	// multihash sha2-256 header
	mhSHA256, mhSHA256Len = 0x12, 0x20
)

// ResolvePeerDID resolves a peer DID received in a DID Exchange request or
// response.
//
//   - did:peer:1 needs the document from did_doc~attach (the decoded
//     payload; verify the attachment's signature separately, or use
//     ResolveSignedDoc). The DID must equal the hash Credo computes: sha2-256
//     over JSON.stringify of the document with its top-level "id" removed.
//     The document's own id, if present, must equal the DID.
//   - did:peer:2 is expanded as Credo does (keys #key-1, #key-2… in order,
//     services with abbreviations expanded).
//   - did:peer:4 must be the long form; its hash is checked. The short form
//     cannot be resolved from the DID alone (store the long form and map
//     the short form to it with PeerDID4ShortForm).
//   - did:peer:0 is accepted as a plain key.
//
// attachedDoc is ignored for numalgos other than 1. Other methods are
// rejected with ErrUnsupportedDID.
func ResolvePeerDID(did string, attachedDoc []byte) (Resolved, error) {
	if len(did) > maxDIDLength {
		return Resolved{}, fmt.Errorf("%w: DID too long (%d bytes)", ErrInvalidDID, len(did))
	}
	if !strings.HasPrefix(did, "did:peer:") || len(did) < len("did:peer:")+2 {
		return Resolved{}, fmt.Errorf("%w: %q is not a did:peer", ErrUnsupportedDID, truncate(did))
	}
	switch did[len("did:peer:")] {
	case '0':
		pub, err := pubFromFingerprint(did[len("did:peer:0"):])
		if err != nil {
			return Resolved{}, fmt.Errorf("%w: %v", ErrInvalidDID, err)
		}
		return keyOnlyResolved(did, pub)
	case '1':
		return resolvePeer1(did, attachedDoc)
	case '2':
		return resolvePeer2(did)
	case '4':
		return resolvePeer4(did)
	}
	return Resolved{}, fmt.Errorf("%w: did:peer numalgo %q", ErrUnsupportedDID, did[len("did:peer:")])
}

// ---------------------------------------------------------------------------
// numalgo 1

func resolvePeer1(did string, attachedDoc []byte) (Resolved, error) {
	want, err := decodeZMultihash(did[len("did:peer:1"):])
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %q: %v", ErrInvalidDID, truncate(did), err)
	}
	if len(attachedDoc) == 0 {
		return Resolved{}, fmt.Errorf("%w: did:peer:1 needs the did_doc~attach document", ErrInvalidDoc)
	}
	root, err := parseDocJSON(attachedDoc)
	if err != nil {
		return Resolved{}, err
	}
	if idn := root.get("id"); idn != nil {
		if idn.kind != jsString || (idn.str != "" && idn.str != did) {
			return Resolved{}, fmt.Errorf("%w: document id does not match %q", ErrInvalidDID, truncate(did))
		}
	}
	got, err := peer1Hash(root)
	if err != nil {
		return Resolved{}, err
	}
	if !bytes.Equal(got, want) {
		return Resolved{}, fmt.Errorf("%w: %q does not match the hash of its document", ErrInvalidDID, truncate(did))
	}
	if root.get("id") == nil || strOf(root.get("id")) == "" {
		root = cloneWithID(root, did)
	}
	return extract(did, root)
}

// peer1Hash is Credo's didDocumentJsonToNumAlgo1Did: sha256 over
// JSON.stringify({...doc, id: undefined}).
func peer1Hash(root *jsNode) ([]byte, error) {
	b, err := root.without("id").stringify()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDoc, err)
	}
	h := sha256.Sum256(b)
	return h[:], nil
}

// cloneWithID returns the object with "id" set right after "@context" (or
// first), as Credo's documents have it.
func cloneWithID(root *jsNode, id string) *jsNode {
	c := &jsNode{kind: jsObject}
	placed := false
	if root.get("@context") == nil {
		c.keys, c.vals = append(c.keys, "id"), append(c.vals, jsStr(id))
		placed = true
	}
	for i, k := range root.keys {
		if k == "id" {
			continue
		}
		c.keys, c.vals = append(c.keys, k), append(c.vals, root.vals[i])
		if k == "@context" && !placed {
			c.keys, c.vals = append(c.keys, "id"), append(c.vals, jsStr(id))
			placed = true
		}
	}
	return c
}

func decodeZMultihash(s string) ([]byte, error) {
	if len(s) < 2 || s[0] != 'z' || len(s) > 100 {
		return nil, fmt.Errorf("identifier is not a z-base58 multihash")
	}
	raw, err := base58.Decode(s[1:])
	if err != nil {
		return nil, fmt.Errorf("identifier is not base58: %v", err)
	}
	if len(raw) != 34 || raw[0] != mhSHA256 || raw[1] != mhSHA256Len {
		return nil, fmt.Errorf("identifier is not a sha2-256 multihash")
	}
	return raw[2:], nil
}

func zMultihash(data []byte) string {
	h := sha256.Sum256(data)
	return "z" + base58.Encode(append([]byte{mhSHA256, mhSHA256Len}, h[:]...))
}

// ---------------------------------------------------------------------------
// numalgo 2

var peer2Expansions = map[string]string{
	"t":  "type",
	"dm": "DIDCommMessaging",
	"s":  "serviceEndpoint",
	"r":  "routingKeys",
	"a":  "accept",
}

var peer2Purposes = map[byte]string{
	'A': "assertionMethod",
	'E': "keyAgreement",
	'V': "authentication",
	'I': "capabilityInvocation",
	'D': "capabilityDelegation",
}

func resolvePeer2(did string) (Resolved, error) {
	rest, ok := strings.CutPrefix(did, "did:peer:2.")
	if !ok || rest == "" {
		return Resolved{}, fmt.Errorf("%w: %q is not a did:peer:2", ErrInvalidDID, truncate(did))
	}
	if strings.ContainsAny(did, "#?/ ") {
		return Resolved{}, fmt.Errorf("%w: did:peer:2 contains a URL part", ErrInvalidDID)
	}
	root := &jsNode{kind: jsObject}
	root.set("@context", &jsNode{kind: jsArray, arr: []*jsNode{jsStr(contextDIDv1Legacy)}})
	root.set("id", jsStr(did))
	sections := map[string]*jsNode{}
	var order []string
	addTo := func(sec string, n *jsNode) {
		a, ok := sections[sec]
		if !ok {
			a = &jsNode{kind: jsArray}
			sections[sec] = a
			order = append(order, sec)
		}
		a.arr = append(a.arr, n)
	}
	keyIndex, serviceIndex := 1, 0
	for _, entry := range strings.Split(rest, ".") {
		if entry == "" {
			return Resolved{}, fmt.Errorf("%w: empty element in did:peer:2", ErrInvalidDID)
		}
		purpose, content := entry[0], entry[1:]
		if purpose == 'S' {
			raw, err := decodeBase64Any(content)
			if err != nil {
				return Resolved{}, fmt.Errorf("%w: did:peer:2 service is not base64: %v", ErrInvalidDID, err)
			}
			sv, err := parseOrdered(raw)
			if err != nil {
				return Resolved{}, fmt.Errorf("%w: did:peer:2 service is not JSON: %v", ErrInvalidDID, err)
			}
			list := []*jsNode{sv}
			if sv.kind == jsArray {
				list = sv.arr
			}
			for _, s := range list {
				if s.kind != jsObject {
					return Resolved{}, fmt.Errorf("%w: did:peer:2 service is not an object", ErrInvalidDID)
				}
				wasDM := strOf(s.get("t")) == "dm"
				full := expandPeer2(s)
				if wasDM && full.get("serviceEndpoint") != nil && full.get("serviceEndpoint").kind == jsString {
					full.set("type", jsStr("DIDComm")) // Credo: legacy DIDComm v2 service
				}
				typ := strOf(full.get("type"))
				if typ == "" {
					return Resolved{}, fmt.Errorf("%w: did:peer:2 service has no type", ErrInvalidDID)
				}
				full.set("id", jsStr(did+"#"+strings.ToLower(typ)+"-"+strconv.Itoa(serviceIndex)))
				serviceIndex++
				addTo("service", full)
			}
			continue
		}
		sec, ok := peer2Purposes[purpose]
		if !ok {
			return Resolved{}, fmt.Errorf("%w: unsupported did:peer:2 purpose %q", ErrInvalidDID, string(purpose))
		}
		if len(content) < 2 || content[0] != 'z' || len(content) > maxKeyStringLen {
			return Resolved{}, fmt.Errorf("%w: did:peer:2 key %q is not a z-multibase key", ErrInvalidDID, truncate(content))
		}
		raw, err := base58.Decode(content[1:])
		if err != nil || len(raw) < 3 {
			return Resolved{}, fmt.Errorf("%w: did:peer:2 key %q is not base58", ErrInvalidDID, truncate(content))
		}
		vm := &jsNode{kind: jsObject}
		vm.set("id", jsStr(did+"#key-"+strconv.Itoa(keyIndex)))
		keyIndex++
		key := raw[2:]
		switch {
		case raw[0] == ed25519Codec0 && raw[1] == ed25519Codec1:
			if _, err := checkEd25519(key); err != nil {
				return Resolved{}, fmt.Errorf("%w: did:peer:2 key: %v", ErrInvalidDID, err)
			}
			vm.set("type", jsStr(typeEd25519VK2018))
		case raw[0] == x25519Codec0 && raw[1] == x25519Codec1 && len(key) == 32:
			vm.set("type", jsStr(typeX25519KA2019))
		default:
			// Not usable for DIDComm v1; keep it (numbering included) as a Multikey.
			vm.set("type", jsStr("Multikey"))
			vm.set("controller", jsStr(did))
			vm.set("publicKeyMultibase", jsStr(content))
			addTo(sec, vm)
			continue
		}
		vm.set("controller", jsStr(did))
		vm.set("publicKeyBase58", jsStr(base58.Encode(key)))
		addTo(sec, vm)
	}
	for _, sec := range order {
		root.set(sec, sections[sec])
	}
	return extract(did, root)
}

// expandPeer2 expands abbreviated member names and string values the way
// Credo's expandServiceAbbreviations does.
func expandPeer2(n *jsNode) *jsNode {
	expand := func(s string) string {
		if e, ok := peer2Expansions[s]; ok {
			return e
		}
		return s
	}
	switch n.kind {
	case jsString:
		return jsStr(expand(n.str))
	case jsArray:
		c := &jsNode{kind: jsArray}
		for _, e := range n.arr {
			c.arr = append(c.arr, expandPeer2(e))
		}
		return c
	case jsObject:
		c := &jsNode{kind: jsObject}
		for i, k := range n.keys {
			c.set(expand(k), expandPeer2(n.vals[i]))
		}
		return c
	}
	return n
}

// ---------------------------------------------------------------------------
// numalgo 4

// PeerDID4ShortForm returns the short form ("did:peer:4z…") of a did:peer:4
// (long or short form), after checking the long form's hash.
func PeerDID4ShortForm(did string) (string, error) {
	hash, enc, err := splitPeer4(did)
	if err != nil {
		return "", err
	}
	if enc != "" && zMultihash([]byte(enc)) != hash {
		return "", fmt.Errorf("%w: did:peer:4 hash does not match its document", ErrInvalidDID)
	}
	return "did:peer:4" + hash, nil
}

func splitPeer4(did string) (hash, enc string, err error) {
	if len(did) > maxDIDLength {
		return "", "", fmt.Errorf("%w: DID too long", ErrInvalidDID)
	}
	rest, ok := strings.CutPrefix(did, "did:peer:4")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not a did:peer:4", ErrInvalidDID, truncate(did))
	}
	hash, enc, _ = strings.Cut(rest, ":")
	if len(hash) != 47 || !isBase58(hash[1:]) || hash[0] != 'z' {
		return "", "", fmt.Errorf("%w: did:peer:4 hash part is malformed", ErrInvalidDID)
	}
	if strings.Contains(rest, ":") && (len(enc) < 7 || enc[0] != 'z' || !isBase58(enc[1:])) {
		return "", "", fmt.Errorf("%w: did:peer:4 document part is malformed", ErrInvalidDID)
	}
	return hash, enc, nil
}

func resolvePeer4(did string) (Resolved, error) {
	hash, enc, err := splitPeer4(did)
	if err != nil {
		return Resolved{}, err
	}
	if enc == "" {
		return Resolved{}, fmt.Errorf("%w: short-form did:peer:4 can only be resolved from its long form", ErrUnsupportedDID)
	}
	if zMultihash([]byte(enc)) != hash {
		return Resolved{}, fmt.Errorf("%w: did:peer:4 hash does not match its document", ErrInvalidDID)
	}
	raw, err := base58.Decode(enc[1:])
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: did:peer:4 document: %v", ErrInvalidDID, err)
	}
	if len(raw) < 2 || raw[0] != jsonCodecVarint0 || raw[1] != jsonCodecVarint1 {
		return Resolved{}, fmt.Errorf("%w: did:peer:4 document is not JSON multicodec", ErrInvalidDID)
	}
	root, err := parseDocJSON(raw[2:])
	if err != nil {
		return Resolved{}, err
	}
	// As Credo's didToNumAlgo4DidDocument: set id and alsoKnownAs, and give
	// every verification method without a controller the DID as controller.
	root.set("id", jsStr(did))
	root.set("alsoKnownAs", &jsNode{kind: jsArray, arr: []*jsNode{jsStr("did:peer:4" + hash)}})
	for _, sec := range []string{"verificationMethod", "authentication", "assertionMethod", "keyAgreement",
		"capabilityDelegation", "capabilityInvocation"} {
		for _, item := range listOf(root.get(sec)) {
			if item.kind == jsObject && item.get("controller") == nil {
				item.set("controller", jsStr(did))
			}
		}
	}
	return extract(did, root)
}

// writeBase64SafeJSONString writes s as a JSON string whose bytes never
// produce "-" or "_" in base64url: besides the usual escapes, '>', '?', '~',
// DEL and every non-ASCII character are written as \u escapes.
func writeBase64SafeJSONString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	esc := func(r rune) {
		buf.WriteString(`\u`)
		buf.WriteByte(hex[(r>>12)&0xf])
		buf.WriteByte(hex[(r>>8)&0xf])
		buf.WriteByte(hex[(r>>4)&0xf])
		buf.WriteByte(hex[r&0xf])
	}
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			buf.WriteByte('\\')
			buf.WriteRune(r)
		case r < 0x20 || r == '>' || r == '?' || r == '~' || r == 0x7f || (r >= 0x80 && r <= 0xffff):
			esc(r)
		case r > 0xffff:
			r -= 0x10000
			esc(0xd800 + (r >> 10))
			esc(0xdc00 + (r & 0x3ff))
		default:
			buf.WriteRune(r)
		}
	}
	buf.WriteByte('"')
}

func isBase58(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := (c >= '1' && c <= '9') || (c >= 'A' && c <= 'H') || (c >= 'J' && c <= 'N') ||
			(c >= 'P' && c <= 'Z') || (c >= 'a' && c <= 'k') || (c >= 'm' && c <= 'z')
		if !ok {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Our own DIDs

type vmJSON struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	Controller      string `json:"controller,omitempty"`
	PublicKeyBase58 string `json:"publicKeyBase58"`
}

type serviceJSON struct {
	ID              string   `json:"id"`
	ServiceEndpoint string   `json:"serviceEndpoint"`
	Type            string   `json:"type"`
	Priority        int      `json:"priority"`
	RecipientKeys   []string `json:"recipientKeys"`
	RoutingKeys     []string `json:"routingKeys"`
}

type peerDocJSON struct {
	Context        []string      `json:"@context"`
	ID             string        `json:"id,omitempty"`
	Service        []serviceJSON `json:"service"`
	Authentication []vmJSON      `json:"authentication"`
	KeyAgreement   []vmJSON      `json:"keyAgreement"`
}

// credoStyleDoc builds the document Credo's createPeerDidDocumentFromServices
// builds for one recipient key, one service per endpoint ("#inline-N",
// priority N) and no routing keys.
func credoStyleDoc(pub ed25519.PublicKey, endpoints []string, context, controller string) (peerDocJSON, error) {
	if err := checkOwnKey(pub); err != nil {
		return peerDocJSON{}, err
	}
	if err := checkEndpoints(endpoints); err != nil {
		return peerDocJSON{}, err
	}
	x, err := x25519FromEd25519(pub)
	if err != nil {
		return peerDocJSON{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	doc := peerDocJSON{
		Context:        []string{context},
		Authentication: []vmJSON{{ID: "#key-1", Type: typeEd25519VK2018, Controller: controller, PublicKeyBase58: base58.Encode(pub)}},
		KeyAgreement:   []vmJSON{{ID: "#key-2", Type: typeX25519KA2019, Controller: controller, PublicKeyBase58: base58.Encode(x)}},
	}
	for i, ep := range endpoints {
		doc.Service = append(doc.Service, serviceJSON{
			ID: "#inline-" + strconv.Itoa(i), ServiceEndpoint: ep, Type: typeDIDComm, Priority: i,
			RecipientKeys: []string{"#key-1"}, RoutingKeys: []string{},
		})
	}
	return doc, nil
}

func checkEndpoints(endpoints []string) error {
	if len(endpoints) == 0 {
		return fmt.Errorf("%w: at least one endpoint is required", ErrInvalidInput)
	}
	for _, ep := range endpoints {
		if ep == "" || len(ep) > 2048 || strings.ContainsAny(ep, " \t\r\n") {
			return fmt.Errorf("%w: endpoint %q", ErrInvalidInput, truncate(ep))
		}
	}
	return nil
}

// NewPeerDID1 creates a did:peer:1 and its genesis document exactly as
// Credo 0.5 does for DID Exchange (one did-communication service per
// endpoint, recipient key #key-1, X25519 key-agreement key #key-2, no
// routing keys). doc is what goes, base64-encoded and signed, into
// did_doc~attach.
//
// The @context is "https://w3id.org/did/v1" as Credo 0.5 writes it (Credo
// 0.6 writes "https://www.w3.org/ns/did/v1"; the DID differs accordingly,
// both are accepted by both versions).
func NewPeerDID1(pub ed25519.PublicKey, endpoints []string) (did string, doc []byte, err error) {
	return newPeerDID1(pub, endpoints, contextDIDv1Legacy)
}

func newPeerDID1(pub ed25519.PublicKey, endpoints []string, context string) (did string, doc []byte, err error) {
	d, err := credoStyleDoc(pub, endpoints, context, "#id")
	if err != nil {
		return "", nil, err
	}
	noID, err := jsStringifyValue(d)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	did = "did:peer:1" + zMultihash(noID)
	d.ID = did
	doc, err = jsStringifyValue(d)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return did, doc, nil
}

// NewPeerDID2 creates a did:peer:2 the way Credo does:
// did:peer:2.V<ed25519>.E<x25519>.S<service>… with one service per endpoint,
// each {"s":…,"t":"did-communication","priority":N,"recipientKeys":["#key-1"],"r":[]}
// in unpadded base64url.
//
// Credo's isValidPeerDid (checked before resolving) only allows
// [0-9a-zA-Z=] in service segments, so a base64url "-" or "_" makes Credo
// refuse the DID. Those appear only for the bytes '>', '?', '~', DEL and
// non-ASCII; we write such characters of an endpoint as JSON \u escapes,
// which decode to the same string. For ordinary endpoints the DID is
// byte-identical to Credo's.
func NewPeerDID2(pub ed25519.PublicKey, endpoints []string) (string, error) {
	if err := checkOwnKey(pub); err != nil {
		return "", err
	}
	if err := checkEndpoints(endpoints); err != nil {
		return "", err
	}
	x, err := x25519FromEd25519(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	var sb strings.Builder
	sb.WriteString("did:peer:2.V")
	sb.WriteString(fingerprintFromPub(pub))
	sb.WriteString(".E")
	sb.WriteString(x25519FingerprintFromPub(x))
	for i, ep := range endpoints {
		// {"s":…,"t":"did-communication","priority":N,"recipientKeys":["#key-1"],"r":[]}
		var svc bytes.Buffer
		svc.WriteString(`{"s":`)
		writeBase64SafeJSONString(&svc, ep)
		svc.WriteString(`,"t":"did-communication","priority":`)
		svc.WriteString(strconv.Itoa(i))
		svc.WriteString(`,"recipientKeys":["#key-1"],"r":[]}`)
		sb.WriteString(".S")
		sb.WriteString(base64.RawURLEncoding.EncodeToString(svc.Bytes()))
	}
	return sb.String(), nil
}

// NewPeerDID4 creates a long-form did:peer:4 the way Credo 0.6 does (same
// document as NewPeerDID1 without id and controllers, JSON multicodec,
// base58btc).
//
// The @context is "https://www.w3.org/ns/did/v1" as Credo 0.6 writes it.
func NewPeerDID4(pub ed25519.PublicKey, endpoints []string) (longForm string, err error) {
	return newPeerDID4(pub, endpoints, contextDIDv1)
}

func newPeerDID4(pub ed25519.PublicKey, endpoints []string, context string) (longForm string, err error) {
	d, err := credoStyleDoc(pub, endpoints, context, "")
	if err != nil {
		return "", err
	}
	j, err := jsStringifyValue(d)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	enc := "z" + base58.Encode(append([]byte{jsonCodecVarint0, jsonCodecVarint1}, j...))
	return "did:peer:4" + zMultihash([]byte(enc)) + ":" + enc, nil
}
