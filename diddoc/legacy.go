package diddoc

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/mr-tron/base58"
)

// LegacyDID returns the unqualified Indy-style DID of a key:
// base58 of its first 16 bytes.
func LegacyDID(pub ed25519.PublicKey) (string, error) {
	if err := checkOwnKey(pub); err != nil {
		return "", err
	}
	return base58.Encode(pub[:16]), nil
}

type legacyPublicKey struct {
	ID              string `json:"id"`
	Controller      string `json:"controller"`
	Type            string `json:"type"`
	PublicKeyBase58 string `json:"publicKeyBase58"`
}

type legacyService struct {
	ID              string   `json:"id"`
	ServiceEndpoint string   `json:"serviceEndpoint"`
	Type            string   `json:"type"`
	Priority        int      `json:"priority"`
	RecipientKeys   []string `json:"recipientKeys"`
	RoutingKeys     []string `json:"routingKeys"`
}

type legacyAuth struct {
	PublicKey string `json:"publicKey"`
	Type      string `json:"type"`
}

type legacyDoc struct {
	Context        string            `json:"@context"`
	PublicKey      []legacyPublicKey `json:"publicKey"`
	Service        []legacyService   `json:"service"`
	Authentication []legacyAuth      `json:"authentication"`
	ID             string            `json:"id"`
}

// NewLegacyDoc builds our Connections 1.0 DID and DIDDoc the way Credo's
// ConnectionService.createDidDoc does: unqualified DID = base58(first 16
// bytes of the verkey), publicKey "<did>#1" (Ed25519VerificationKey2018),
// a referenced Ed25519SignatureAuthentication2018, and one IndyAgent
// service per endpoint ("<did>#IndyAgentService-N", priority N-1) with the
// base58 verkey as recipient key and no routing keys. @context is
// "https://w3id.org/did/v1" as in Credo 0.5 (0.6 writes the w3.org one;
// neither Credo nor ACA-Py looks at it).
func NewLegacyDoc(pub ed25519.PublicKey, endpoints []string) (did string, doc []byte, err error) {
	return newLegacyDoc(pub, endpoints, contextDIDv1Legacy)
}

func newLegacyDoc(pub ed25519.PublicKey, endpoints []string, context string) (did string, doc []byte, err error) {
	did, err = LegacyDID(pub)
	if err != nil {
		return "", nil, err
	}
	if err := checkEndpoints(endpoints); err != nil {
		return "", nil, err
	}
	vk := base58.Encode(pub)
	d := legacyDoc{
		Context:        context,
		PublicKey:      []legacyPublicKey{{ID: did + "#1", Controller: did, Type: typeEd25519VK2018, PublicKeyBase58: vk}},
		Authentication: []legacyAuth{{PublicKey: did + "#1", Type: "Ed25519SignatureAuthentication2018"}},
		ID:             did,
	}
	for i, ep := range endpoints {
		d.Service = append(d.Service, legacyService{
			ID: did + "#IndyAgentService-" + strconv.Itoa(i+1), ServiceEndpoint: ep, Type: "IndyAgent",
			Priority: i, RecipientKeys: []string{vk}, RoutingKeys: []string{},
		})
	}
	doc, err = jsStringifyValue(d)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return did, doc, nil
}

// NewLegacyConnection returns the Connections 1.0 "connection" object
// {"DID": did, "DIDDoc": doc} for NewLegacyDoc, ready for SignConnection.
func NewLegacyConnection(pub ed25519.PublicKey, endpoints []string) (did string, connectionJSON []byte, err error) {
	did, doc, err := NewLegacyDoc(pub, endpoints)
	if err != nil {
		return "", nil, err
	}
	connectionJSON, err = LegacyConnectionJSON(did, doc)
	return did, connectionJSON, err
}

// LegacyConnectionJSON wraps a DID and DIDDoc into {"DID":…,"DIDDoc":…}.
func LegacyConnectionJSON(did string, doc []byte) ([]byte, error) {
	if !json.Valid(doc) {
		return nil, fmt.Errorf("%w: DIDDoc is not valid JSON", ErrInvalidInput)
	}
	return jsStringifyValue(struct {
		DID    string          `json:"DID"`
		DIDDoc json.RawMessage `json:"DIDDoc"`
	}{did, doc})
}

// ParseLegacyConnection resolves a Connections 1.0 "connection" object
// {"DID": …, "DIDDoc": {…}} (from a request, or from VerifyConnection).
func ParseLegacyConnection(connectionJSON []byte) (Resolved, error) {
	if len(connectionJSON) > maxDocLength {
		return Resolved{}, fmt.Errorf("%w: connection object too large", ErrInvalidDoc)
	}
	root, err := parseOrdered(connectionJSON)
	if err != nil || root.kind != jsObject {
		return Resolved{}, fmt.Errorf("%w: connection is not a JSON object", ErrInvalidDoc)
	}
	did := strOf(root.get("DID"))
	docNode := root.get("DIDDoc")
	if did == "" || docNode == nil || docNode.kind != jsObject {
		return Resolved{}, fmt.Errorf("%w: connection needs DID and DIDDoc", ErrInvalidDoc)
	}
	doc, err := docNode.stringify()
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %v", ErrInvalidDoc, err)
	}
	return ResolveLegacy(did, doc)
}
