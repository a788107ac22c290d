'use strict'
// Opens the envelopes packed by the Go code (go-packed.json, written by
//   ENVELOPE_WRITE_GO_PACKED=1 go test -run TestWriteGoPacked ./envelope/)
// with libsodium, and checks that they have the shape Askar emits:
//
//   NODE_PATH=/root/.cache/credo-interop/node_modules node envelope/testdata/checkgo.js
//
// Prints one line per case and exits non-zero on any failure.

const fs = require('fs')
const path = require('path')
const { sodium, b64decode, unpack, testKeys } = require(path.join(__dirname, 'rfc0019.js'))

const B64URL_UNPADDED = /^[A-Za-z0-9_-]*$/

function checkShape(packed) {
  const msg = JSON.parse(packed)
  for (const f of ['protected', 'iv', 'ciphertext', 'tag']) {
    if (typeof msg[f] !== 'string' || !B64URL_UNPADDED.test(msg[f])) throw new Error(`${f} is not unpadded base64url`)
  }
  if (b64decode(msg.iv).length !== 12) throw new Error('iv is not 12 bytes')
  if (b64decode(msg.tag).length !== 16) throw new Error('tag is not 16 bytes')
  const h = JSON.parse(Buffer.from(b64decode(msg.protected)).toString('utf8'))
  if (h.enc !== 'xchacha20poly1305_ietf' || h.typ !== 'JWM/1.0') throw new Error(`enc/typ ${h.enc}/${h.typ}`)
  for (const r of h.recipients) {
    const vals = [r.encrypted_key, r.header.sender, r.header.iv].filter((v) => v !== undefined)
    if (!vals.every((v) => B64URL_UNPADDED.test(v))) throw new Error('recipient field is not unpadded base64url')
    if (h.alg === 'Anoncrypt' && (r.header.sender !== undefined || r.header.iv !== undefined)) {
      throw new Error('anoncrypt recipient has sender/iv')
    }
    if (h.alg === 'Authcrypt' && b64decode(r.header.iv).length !== 24) throw new Error('box iv is not 24 bytes')
  }
  return h
}

async function main() {
  await sodium.ready
  const file = process.argv[2] || path.join(__dirname, 'go-packed.json')
  const data = JSON.parse(fs.readFileSync(file, 'utf8'))
  const keys = testKeys(Object.keys(data.keys))
  for (const [name, k] of Object.entries(data.keys)) {
    if (keys[name].verkey !== k.verkey) throw new Error(`key ${name}: Go verkey ${k.verkey} != ${keys[name].verkey}`)
  }
  let failed = 0
  let opened = 0
  for (const c of data.cases) {
    try {
      const h = checkShape(c.packed)
      if (h.alg !== c.alg) throw new Error(`alg ${h.alg}, want ${c.alg}`)
      for (const name of c.recipients) {
        const got = unpack(c.packed, keys[name])
        const wantSender = c.sender ? keys[c.sender].verkey : null
        if (got.plaintext !== c.plaintext) throw new Error(`${name}: plaintext differs`)
        if (got.senderKey !== wantSender) throw new Error(`${name}: sender ${got.senderKey}, want ${wantSender}`)
        opened++
      }
      console.log(`ok   ${c.name} (${h.alg}, ${c.recipients.join('+')})`)
    } catch (e) {
      failed++
      console.log(`FAIL ${c.name}: ${e.message}`)
    }
  }
  console.log(`${data.cases.length - failed}/${data.cases.length} cases ok, ${opened} opens by libsodium ${sodium.SODIUM_VERSION_STRING}`)
  process.exit(failed ? 1 : 0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
