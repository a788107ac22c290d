// Package diddoc reads and writes the DIDs, DID documents and signatures the
// mediator exchanges during DID Exchange 1.0/1.1 (RFC 0023) and Connections
// 1.0 (RFC 0160) with Credo 0.5/0.6 and ACA-Py agents.
//
// Formats follow what Credo actually emits and accepts (credo-ts 0.5.19 and
// 0.6.3; file names below are relative to their build trees):
//
//   - did:peer:1 — Credo hashes JSON.stringify of the genesis document with
//     its top-level "id" member removed (members otherwise in document order):
//     "did:peer:1" + "z" + base58(multihash sha2-256). See
//     core/build/modules/dids/methods/peer/peerDidNumAlgo1.js. Credo itself
//     never checks this hash on receipt; we do (ResolvePeerDID) by
//     re-serialising the attached document the way JSON.stringify does.
//   - did:peer:2 — ".V<fingerprint>" / ".E<fingerprint>" keys numbered #key-1,
//     #key-2… in order of appearance, ".S<base64url(JSON)>" services with
//     abbreviated member names (peerDidNumAlgo2.js).
//   - did:peer:4 — "did:peer:4" + z-multihash(sha2-256 of the encoded document
//     string) + ":" + z-base58(varint 0x0200 ‖ JSON) (peerDidNumAlgo4.js).
//   - Signed attachments — JWS over protected + "." + base64url(payload), where
//     base64url(payload) is the attachment's data.base64 converted textually
//     (+→-, /→_, padding dropped). Credo 0.5 takes the verification key from
//     the protected header's jwk; Credo 0.6 takes it from the unprotected
//     header kid (a did:key). We always write both, and on input accept
//     either and reject a JWS where both are present and disagree
//     (core/build/crypto/JwsService.js, DidExchangeProtocol.js).
//   - Connections 1.0 connection~sig — ed25519Sha512_single over an 8-byte
//     big-endian timestamp followed by the connection JSON
//     (decorators/signature/SignatureDecoratorUtils.js).
//
// Nothing in this package panics on malformed input; every function returns
// an error wrapping one of the sentinel errors below.
package diddoc
