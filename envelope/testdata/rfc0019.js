'use strict'
// An independent RFC 0019 (DIDComm v1) packer/unpacker on libsodium, written the
// way indy-sdk, Askar and Credo's libsodium wallet do it, to cross-check the Go
// package. Shared by genvectors.js and checkgo.js; not used by `go test`.
//
//   protected = b64(JSON{enc:'xchacha20poly1305_ietf', typ:'JWM/1.0', alg, recipients})
//   authcrypt recipient = {encrypted_key: b64(crypto_box_easy(cek, iv, recipX, senderX)),
//                          header: {kid, sender: b64(crypto_box_seal(senderVerkeyB58, recipX)), iv: b64(iv)}}
//   anoncrypt recipient = {encrypted_key: b64(crypto_box_seal(cek, recipX)), header: {kid}}
//   content = (X)ChaCha20-Poly1305-IETF detached, aad = ASCII of the protected text.

const sodium = require('libsodium-wrappers')

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function b58encode(bytes) {
  let n = 0n
  for (const b of bytes) n = n * 256n + BigInt(b)
  let s = ''
  while (n > 0n) {
    s = B58[Number(n % 58n)] + s
    n /= 58n
  }
  for (const b of bytes) {
    if (b !== 0) break
    s = '1' + s
  }
  return s
}

function b58decode(s) {
  let n = 0n
  for (const c of s) {
    const v = B58.indexOf(c)
    if (v < 0) throw new Error(`bad base58 digit ${c}`)
    n = n * 58n + BigInt(v)
  }
  const out = []
  while (n > 0n) {
    out.unshift(Number(n % 256n))
    n /= 256n
  }
  for (const c of s) {
    if (c !== '1') break
    out.unshift(0)
  }
  return Uint8Array.from(out)
}

// Encoders by variant: 'url' = unpadded base64url (Askar, Credo, ACA-Py),
// 'urlpad' = padded base64url (indy-sdk), 'std' = padded standard alphabet.
const ENCODERS = {
  url: (b) => Buffer.from(b).toString('base64url'),
  urlpad: (b) => Buffer.from(b).toString('base64').replace(/\+/g, '-').replace(/\//g, '_'),
  std: (b) => Buffer.from(b).toString('base64'),
}

// Lenient decoder: either alphabet, padded or not.
function b64decode(s) {
  return new Uint8Array(Buffer.from(String(s).replace(/-/g, '+').replace(/_/g, '/'), 'base64'))
}

function keyFromSeed(seed) {
  const kp = sodium.crypto_sign_seed_keypair(seed)
  return {
    seed,
    publicKey: kp.publicKey,
    privateKey: kp.privateKey,
    verkey: b58encode(kp.publicKey),
    xPub: sodium.crypto_sign_ed25519_pk_to_curve25519(kp.publicKey),
    xPriv: sodium.crypto_sign_ed25519_sk_to_curve25519(kp.privateKey),
  }
}

// pack builds a packed message (as a JSON string).
// opts: {sender: key|null, recipients: [key], nonceBytes: 12|24, b64: 'url'|'urlpad'|'std'}
function pack(plaintext, opts) {
  const enc = ENCODERS[opts.b64 || 'url']
  const cek = sodium.randombytes_buf(32)
  const recipients = opts.recipients.map((r) => {
    if (opts.sender) {
      const iv = sodium.randombytes_buf(sodium.crypto_box_NONCEBYTES)
      return {
        encrypted_key: enc(sodium.crypto_box_easy(cek, iv, r.xPub, opts.sender.xPriv)),
        header: {
          kid: r.verkey,
          sender: enc(sodium.crypto_box_seal(Buffer.from(opts.sender.verkey, 'utf8'), r.xPub)),
          iv: enc(iv),
        },
      }
    }
    return { encrypted_key: enc(sodium.crypto_box_seal(cek, r.xPub)), header: { kid: r.verkey } }
  })
  const protectedText = enc(
    Buffer.from(
      JSON.stringify({
        enc: 'xchacha20poly1305_ietf',
        typ: 'JWM/1.0',
        alg: opts.sender ? 'Authcrypt' : 'Anoncrypt',
        recipients,
      }),
      'utf8'
    )
  )
  const xchacha = opts.nonceBytes === 24
  const iv = sodium.randombytes_buf(
    xchacha ? sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES : sodium.crypto_aead_chacha20poly1305_ietf_NPUBBYTES
  )
  const encrypt = xchacha
    ? sodium.crypto_aead_xchacha20poly1305_ietf_encrypt_detached
    : sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached
  const { ciphertext, mac } = encrypt(Buffer.from(plaintext, 'utf8'), Buffer.from(protectedText, 'ascii'), null, iv, cek)
  return JSON.stringify({ protected: protectedText, iv: enc(iv), ciphertext: enc(ciphertext), tag: enc(mac) })
}

// unpack opens a packed message (JSON string) as key `me`, returning
// {plaintext (string), senderKey (base58|null), recipientKey}. Throws on any failure.
function unpack(packed, me) {
  const msg = JSON.parse(packed)
  const header = JSON.parse(Buffer.from(b64decode(msg.protected)).toString('utf8'))
  if (header.alg !== 'Authcrypt' && header.alg !== 'Anoncrypt') throw new Error(`alg ${header.alg}`)
  if (header.enc !== 'xchacha20poly1305_ietf') throw new Error(`enc ${header.enc}`)
  const r = header.recipients.find((x) => x.header.kid === me.verkey)
  if (!r) throw new Error('not a recipient')
  let cek
  let senderKey = null
  if (header.alg === 'Authcrypt') {
    senderKey = Buffer.from(sodium.crypto_box_seal_open(b64decode(r.header.sender), me.xPub, me.xPriv)).toString('utf8')
    const senderX = sodium.crypto_sign_ed25519_pk_to_curve25519(b58decode(senderKey))
    cek = sodium.crypto_box_open_easy(b64decode(r.encrypted_key), b64decode(r.header.iv), senderX, me.xPriv)
  } else {
    cek = sodium.crypto_box_seal_open(b64decode(r.encrypted_key), me.xPub, me.xPriv)
  }
  const iv = b64decode(msg.iv)
  const decrypt =
    iv.length === 24
      ? sodium.crypto_aead_xchacha20poly1305_ietf_decrypt_detached
      : sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached
  const plaintext = decrypt(null, b64decode(msg.ciphertext), b64decode(msg.tag), Buffer.from(msg.protected, 'ascii'), iv, cek)
  return { plaintext: Buffer.from(plaintext).toString('utf8'), senderKey, recipientKey: r.header.kid }
}

// Fixed test keys: seed = SHA-256("envelope test key " + name).
function testKeys(names) {
  const crypto = require('crypto')
  const keys = {}
  for (const name of names) {
    keys[name] = keyFromSeed(new Uint8Array(crypto.createHash('sha256').update('envelope test key ' + name).digest()))
  }
  return keys
}

module.exports = { sodium, b58encode, b58decode, b64decode, keyFromSeed, pack, unpack, testKeys }
