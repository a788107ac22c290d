package diddoc

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/mr-tron/base58"
)

// Resolved is what the mediator needs from a peer's DID.
type Resolved struct {
	DID string
	// RecipientKeys are the base58 Ed25519 verkeys of the first DIDComm
	// service (lowest priority value), in document order; if that service
	// lists none (or there is no DIDComm service) the document's
	// authentication keys.
	RecipientKeys []string
	// RoutingKeys are the base58 routing keys of that service.
	RoutingKeys []string
	// Endpoint is that service's endpoint, e.g. "didcomm:transport/queue"
	// or an http(s)/ws(s) URL. Empty if the document has no DIDComm service.
	Endpoint string
	// Endpoints lists the endpoints of all DIDComm services of the same
	// generation (v1: did-communication/IndyAgent; v2: DIDCommMessaging) in
	// priority order, Endpoint first. Useful to pick a WebSocket endpoint.
	Endpoints []string
	// Doc is the DID document JSON as resolved (for did:peer:2/4 the
	// document Credo would build from the DID, with ids and controllers
	// filled in; for did:peer:1 and legacy docs the received document).
	Doc json.RawMessage
}

const (
	// maxDIDLength bounds DIDs we parse (a Credo did:peer:4 long form with
	// two services is about 1.3 KB; base58 decoding is quadratic).
	maxDIDLength = 16 << 10
	// maxDocLength bounds DID documents we parse.
	maxDocLength = 256 << 10
)

// ResolveDID resolves any DID the mediator may meet in a DID Exchange or
// Connections request: did:peer (see ResolvePeerDID), did:key, and
// unqualified or did:sov DIDs with a document (see ResolveLegacy; the
// document may be a legacy DIDDoc or a modern DID document, as ACA-Py sends
// in did_doc~attach with an unqualified DID).
func ResolveDID(did string, doc []byte) (Resolved, error) {
	switch {
	case strings.HasPrefix(did, "did:peer:"):
		return ResolvePeerDID(did, doc)
	case strings.HasPrefix(did, didKeyPrefix):
		return resolveDIDKey(did)
	case !strings.HasPrefix(did, "did:") || strings.HasPrefix(did, "did:sov:"):
		return ResolveLegacy(did, doc)
	}
	return Resolved{}, fmt.Errorf("%w: method of %q", ErrUnsupportedDID, truncate(did))
}

// ResolveLegacy parses a Connections 1.0 DID and DIDDoc (publicKey entries of
// type Ed25519VerificationKey2018, authentication entries, services of type
// IndyAgent or did-communication whose recipientKeys/routingKeys are base58
// keys, did:keys or references to publicKey entries). did must be
// unqualified or did:sov; if the document has an id it must name the same
// DID (a "did:sov:" prefix on either side is ignored).
func ResolveLegacy(did string, doc []byte) (Resolved, error) {
	if did == "" || len(did) > 256 || strings.ContainsAny(did, " \t\r\n#?/") {
		return Resolved{}, fmt.Errorf("%w: legacy DID %q", ErrInvalidDID, truncate(did))
	}
	if strings.HasPrefix(did, "did:") && !strings.HasPrefix(did, "did:sov:") {
		return Resolved{}, fmt.Errorf("%w: %q is not an unqualified or did:sov DID", ErrUnsupportedDID, truncate(did))
	}
	root, err := parseDocJSON(doc)
	if err != nil {
		return Resolved{}, err
	}
	if idn := root.get("id"); idn != nil {
		if idn.kind != jsString {
			return Resolved{}, fmt.Errorf("%w: id is not a string", ErrInvalidDoc)
		}
		if idn.str != "" && strings.TrimPrefix(idn.str, "did:sov:") != strings.TrimPrefix(did, "did:sov:") {
			return Resolved{}, fmt.Errorf("%w: document id %q does not match DID %q", ErrInvalidDID, truncate(idn.str), truncate(did))
		}
	}
	return extract(did, root)
}

func resolveDIDKey(did string) (Resolved, error) {
	pub, err := pubFromDIDKey(did)
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %v", ErrInvalidDID, err)
	}
	base := did
	if i := strings.IndexAny(base, "#?/"); i >= 0 {
		base = base[:i]
	}
	return keyOnlyResolved(base, pub)
}

// keyOnlyResolved builds the result for DIDs that are just a key (did:key,
// did:peer:0): no service, the key is the recipient key.
func keyOnlyResolved(did string, pub ed25519.PublicKey) (Resolved, error) {
	vk := base58.Encode(pub)
	vm := map[string]string{
		"id":              did + "#" + fingerprintFromPub(pub),
		"type":            "Ed25519VerificationKey2018",
		"controller":      did,
		"publicKeyBase58": vk,
	}
	doc, err := jsStringifyValue(struct {
		Context        []string            `json:"@context"`
		ID             string              `json:"id"`
		Authentication []map[string]string `json:"authentication"`
	}{[]string{"https://w3id.org/did/v1"}, did, []map[string]string{vm}})
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %v", ErrInvalidDoc, err)
	}
	return Resolved{DID: did, RecipientKeys: []string{vk}, Doc: doc}, nil
}

func parseDocJSON(doc []byte) (*jsNode, error) {
	if len(doc) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalidDoc)
	}
	if len(doc) > maxDocLength {
		return nil, fmt.Errorf("%w: document too large (%d bytes)", ErrInvalidDoc, len(doc))
	}
	root, err := parseOrdered(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDoc, err)
	}
	if root.kind != jsObject {
		return nil, fmt.Errorf("%w: document is not a JSON object", ErrInvalidDoc)
	}
	return root, nil
}

// ---------------------------------------------------------------------------
// Extraction of keys and the DIDComm service from a (modern or legacy) doc.

type vmEntry struct {
	id  string
	key ed25519.PublicKey // nil if not an Ed25519 key
}

type docKeys struct {
	vms  []vmEntry           // every verification method / publicKey seen, embedded ones included
	auth []ed25519.PublicKey // authentication keys (Ed25519), in order
}

var vmSections = []string{"verificationMethod", "publicKey", "authentication", "keyAgreement",
	"assertionMethod", "capabilityInvocation", "capabilityDelegation"}

func collectKeys(root *jsNode) (*docKeys, error) {
	dk := &docKeys{}
	// First pass: embedded verification methods everywhere.
	for _, sec := range vmSections {
		for _, item := range listOf(root.get(sec)) {
			if item.kind != jsObject {
				continue
			}
			id := strOf(item.get("id"))
			if id == "" {
				continue // legacy authentication {type, publicKey: ref} or junk
			}
			key, err := vmKey(item)
			if err != nil {
				return nil, fmt.Errorf("%w: verification method %q: %v", ErrInvalidDoc, truncate(id), err)
			}
			dk.vms = append(dk.vms, vmEntry{id: id, key: key})
		}
	}
	// Second pass: authentication, dereferencing strings and legacy entries.
	for _, item := range listOf(root.get("authentication")) {
		var key ed25519.PublicKey
		switch item.kind {
		case jsString:
			k, ok := dk.deref(item.str)
			if !ok {
				return nil, fmt.Errorf("%w: authentication reference %q not found", ErrInvalidDoc, truncate(item.str))
			}
			key = k
		case jsObject:
			if id := strOf(item.get("id")); id != "" {
				key, _ = dk.deref(id)
			} else if ref := strOf(item.get("publicKey")); ref != "" {
				k, ok := dk.deref(ref)
				if !ok {
					return nil, fmt.Errorf("%w: authentication publicKey %q not found", ErrInvalidDoc, truncate(ref))
				}
				key = k
			}
		}
		if key != nil {
			dk.auth = appendKey(dk.auth, key)
		}
	}
	return dk, nil
}

// vmKey returns the Ed25519 key of a verification method, nil for other key
// types (X25519 etc.), or an error if it claims Ed25519 but is malformed.
func vmKey(vm *jsNode) (ed25519.PublicKey, error) {
	typ := strOf(vm.get("type"))
	isEd := strings.Contains(typ, "Ed25519")
	if typ == "" && strOf(vm.get("publicKeyBase58")) != "" {
		isEd = true // some legacy docs omit the type
	}
	if s := strOf(vm.get("publicKeyBase58")); s != "" {
		if !isEd {
			return nil, nil
		}
		if len(s) > maxKeyStringLen {
			return nil, fmt.Errorf("publicKeyBase58 too long")
		}
		raw, err := base58.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("publicKeyBase58: %v", err)
		}
		return checkEd25519(raw)
	}
	if s := strOf(vm.get("publicKeyMultibase")); s != "" {
		codec, key, err := decodeMultikey(s)
		if err == nil {
			if codec == [2]byte{ed25519Codec0, ed25519Codec1} {
				return checkEd25519(key)
			}
			return nil, nil
		}
		if isEd && strings.HasPrefix(s, "z") && len(s) <= maxKeyStringLen {
			// Ed25519VerificationKey2020 drafts used the raw key.
			if raw, rerr := base58.Decode(s[1:]); rerr == nil && len(raw) == ed25519.PublicKeySize {
				return checkEd25519(raw)
			}
		}
		if isEd {
			return nil, err
		}
		return nil, nil
	}
	if jwk := vm.get("publicKeyJwk"); jwk != nil && jwk.kind == jsObject {
		if strOf(jwk.get("kty")) != "OKP" || strOf(jwk.get("crv")) != "Ed25519" {
			return nil, nil
		}
		raw, err := decodeBase64Any(strOf(jwk.get("x")))
		if err != nil {
			return nil, fmt.Errorf("publicKeyJwk.x: %v", err)
		}
		return checkEd25519(raw)
	}
	if isEd {
		return nil, fmt.Errorf("Ed25519 method without key material")
	}
	return nil, nil
}

// deref finds the key for a reference the way Credo does (exact id, then an
// id ending with the reference or its fragment), then tries the reference
// as a key itself (base58, did:key).
func (dk *docKeys) deref(ref string) (ed25519.PublicKey, bool) {
	for _, vm := range dk.vms {
		if vm.id == ref {
			return vm.key, vm.key != nil
		}
	}
	frag := ""
	if i := strings.IndexByte(ref, '#'); i >= 0 {
		frag = ref[i:]
	}
	if frag != "" && len(frag) > 1 {
		for _, vm := range dk.vms {
			if vm.id == frag || strings.HasSuffix(vm.id, frag) {
				return vm.key, vm.key != nil
			}
		}
	}
	if strings.HasPrefix(ref, didKeyPrefix) {
		if pub, err := pubFromDIDKey(ref); err == nil {
			return pub, true
		}
	}
	return nil, false
}

// resolveKeyString turns a recipientKeys/routingKeys entry into a key.
func (dk *docKeys) resolveKeyString(s string) (ed25519.PublicKey, error) {
	if strings.HasPrefix(s, didKeyPrefix) {
		return pubFromDIDKey(s)
	}
	if !strings.ContainsAny(s, "#:;") {
		if pub, err := parseVerkey(s); err == nil {
			return pub, nil
		}
	}
	if pub, ok := dk.deref(s); ok {
		return pub, nil
	}
	return nil, fmt.Errorf("%w: key %q is neither a key nor a reference to an Ed25519 key in the document", ErrInvalidDoc, truncate(s))
}

type svcInfo struct {
	v1        bool
	priority  float64
	index     int
	node      *jsNode
	endpoint  string
	routing   *jsNode // routingKeys array, may be nil
	recipient *jsNode // recipientKeys array, may be nil
}

func serviceTypes(n *jsNode) []string {
	t := n.get("type")
	if t == nil {
		return nil
	}
	if t.kind == jsString {
		return []string{t.str}
	}
	var out []string
	for _, c := range listOf(t) {
		if c.kind == jsString {
			out = append(out, c.str)
		}
	}
	return out
}

// endpointOf returns the URI and (DIDComm v2) routing keys of a service
// endpoint that is a string, an object {uri, routingKeys} or an array of those.
func endpointOf(ep *jsNode) (string, *jsNode) {
	if ep == nil {
		return "", nil
	}
	switch ep.kind {
	case jsString:
		return ep.str, nil
	case jsObject:
		return strOf(ep.get("uri")), ep.get("routingKeys")
	case jsArray:
		for _, c := range ep.arr {
			if u, r := endpointOf(c); u != "" {
				return u, r
			}
		}
	}
	return "", nil
}

func collectServices(root *jsNode) []svcInfo {
	var v1, v2 []svcInfo
	for i, s := range listOf(root.get("service")) {
		if s.kind != jsObject {
			continue
		}
		si := svcInfo{index: i, node: s}
		isV1, isV2 := false, false
		for _, t := range serviceTypes(s) {
			switch t {
			case "did-communication", "IndyAgent":
				isV1 = true
			case "DIDCommMessaging", "DIDComm":
				isV2 = true
			}
		}
		if !isV1 && !isV2 {
			continue
		}
		si.v1 = isV1
		if p := s.get("priority"); p != nil && p.kind == jsNumber {
			if f, err := strconv.ParseFloat(p.num, 64); err == nil {
				si.priority = f
			}
		}
		si.endpoint, si.routing = endpointOf(s.get("serviceEndpoint"))
		if r := s.get("routingKeys"); r != nil {
			si.routing = r
		}
		si.recipient = s.get("recipientKeys")
		if isV1 {
			v1 = append(v1, si)
		} else {
			v2 = append(v2, si)
		}
	}
	sort.SliceStable(v1, func(a, b int) bool { return v1[a].priority < v1[b].priority })
	if len(v1) > 0 {
		return v1
	}
	return v2
}

// extract builds the Resolved for a parsed document.
func extract(did string, root *jsNode) (Resolved, error) {
	dk, err := collectKeys(root)
	if err != nil {
		return Resolved{}, err
	}
	res := Resolved{DID: did}
	services := collectServices(root)
	if len(services) > 0 {
		svc := services[0]
		if svc.endpoint == "" {
			return Resolved{}, fmt.Errorf("%w: DIDComm service has no serviceEndpoint", ErrInvalidDoc)
		}
		res.Endpoint = svc.endpoint
		for _, s := range services {
			if s.endpoint != "" && !contains(res.Endpoints, s.endpoint) {
				res.Endpoints = append(res.Endpoints, s.endpoint)
			}
		}
		var rk []ed25519.PublicKey
		for _, k := range listOf(svc.recipient) {
			if k.kind != jsString {
				return Resolved{}, fmt.Errorf("%w: recipientKeys entry is not a string", ErrInvalidDoc)
			}
			pub, err := dk.resolveKeyString(k.str)
			if err != nil {
				return Resolved{}, fmt.Errorf("recipientKeys: %w", err)
			}
			rk = appendKey(rk, pub)
		}
		if len(rk) == 0 {
			rk = dk.auth
		}
		res.RecipientKeys = encodeKeys(rk)
		var routing []ed25519.PublicKey
		for _, k := range listOf(svc.routing) {
			if k.kind != jsString {
				return Resolved{}, fmt.Errorf("%w: routingKeys entry is not a string", ErrInvalidDoc)
			}
			pub, err := dk.resolveKeyString(k.str)
			if err != nil {
				return Resolved{}, fmt.Errorf("routingKeys: %w", err)
			}
			routing = append(routing, pub)
		}
		res.RoutingKeys = encodeKeys(routing)
	} else {
		res.RecipientKeys = encodeKeys(dk.auth)
	}
	if len(res.RecipientKeys) == 0 {
		return Resolved{}, fmt.Errorf("%w: no Ed25519 recipient or authentication key", ErrInvalidDoc)
	}
	doc, err := root.stringify()
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %v", ErrInvalidDoc, err)
	}
	res.Doc = doc
	return res, nil
}

// docSignerKeys lists every Ed25519 key of the document (any section and
// the DIDComm services' recipient keys), base58. Used to accept signatures
// on an attached document made by a key that document itself lists.
func docSignerKeys(root *jsNode) []string {
	dk, err := collectKeys(root)
	if err != nil {
		return nil
	}
	var keys []ed25519.PublicKey
	for _, vm := range dk.vms {
		if vm.key != nil {
			keys = appendKey(keys, vm.key)
		}
	}
	for _, s := range collectServices(root) {
		for _, k := range listOf(s.recipient) {
			if k.kind == jsString {
				if pub, err := dk.resolveKeyString(k.str); err == nil {
					keys = appendKey(keys, pub)
				}
			}
		}
	}
	return encodeKeys(keys)
}

func listOf(n *jsNode) []*jsNode {
	if n == nil {
		return nil
	}
	if n.kind == jsArray {
		return n.arr
	}
	if n.kind == jsObject {
		return []*jsNode{n}
	}
	return nil
}

func strOf(n *jsNode) string {
	if n == nil || n.kind != jsString {
		return ""
	}
	return n.str
}

func appendKey(keys []ed25519.PublicKey, k ed25519.PublicKey) []ed25519.PublicKey {
	for _, e := range keys {
		if e.Equal(k) {
			return keys
		}
	}
	return append(keys, k)
}

func encodeKeys(keys []ed25519.PublicKey) []string {
	if len(keys) == 0 {
		return nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = base58.Encode(k)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
