'use strict'
// Generates vectors.json: RFC 0019 envelopes packed by libsodium (independently of
// the Go code) the way Askar/Credo and indy-sdk do, for envelope's Go tests.
//
//   NODE_PATH=/root/.cache/credo-interop/node_modules node envelope/testdata/genvectors.js \
//     > envelope/testdata/vectors.json
//
// Keys come from fixed seeds; nonces and ephemeral keys are random, so every run
// gives different (equally valid) envelopes. The output is committed so that
// `go test` does not need Node.

const path = require('path')
const { sodium, pack, unpack, testKeys } = require(path.join(__dirname, 'rfc0019.js'))

const hex = (b) => Buffer.from(b).toString('hex')

async function main() {
  await sodium.ready
  const keys = testKeys(['alice', 'bob', 'carol'])
  const { alice, bob, carol } = keys

  const basic = JSON.stringify({
    '@type': 'https://didcomm.org/basicmessage/1.0/message',
    '@id': '3f0b1a2c-5a7e-4c1e-9f2d-6b8a1c2d3e4f',
    sent_time: '2024-05-01T12:00:00.000Z',
    content: 'héllo wörld 👋 — RFC 0019',
  })
  const forward = JSON.stringify({
    '@type': 'https://didcomm.org/routing/1.0/forward',
    '@id': '0c8b2f7e-1d4a-4b3c-8e5f-7a6b5c4d3e2f',
    to: carol.verkey,
    msg: JSON.parse(pack(basic, { sender: alice, recipients: [carol] })),
  })

  const specs = [
    ['authcrypt-chacha-url', 'Askar/Credo: authcrypt, 12-byte nonce, unpadded base64url', alice, [bob], 12, 'url', basic],
    ['anoncrypt-chacha-url', 'Askar/Credo: anoncrypt forward to a routing key', null, [bob], 12, 'url', forward],
    ['authcrypt-xchacha-url', 'authcrypt, 24-byte XChaCha20 nonce, unpadded', alice, [bob], 24, 'url', basic],
    ['anoncrypt-xchacha-url', 'anoncrypt, 24-byte XChaCha20 nonce, unpadded', null, [bob], 24, 'url', basic],
    ['authcrypt-chacha-urlpad', 'indy-sdk: authcrypt, 12-byte nonce, padded base64url', alice, [bob], 12, 'urlpad', basic],
    ['anoncrypt-chacha-urlpad', 'indy-sdk: anoncrypt, 12-byte nonce, padded base64url', null, [bob], 12, 'urlpad', basic],
    ['authcrypt-xchacha-urlpad', 'authcrypt, 24-byte nonce, padded base64url', alice, [bob], 24, 'urlpad', basic],
    ['authcrypt-chacha-std', 'authcrypt, standard base64 alphabet, padded', alice, [bob], 12, 'std', basic],
    ['authcrypt-multi', 'authcrypt to two recipients', alice, [bob, carol], 12, 'url', basic],
    ['anoncrypt-multi', 'anoncrypt to two recipients', null, [carol, bob], 12, 'url', basic],
    ['anoncrypt-empty', 'anoncrypt, empty plaintext', null, [bob], 12, 'url', ''],
  ]

  const vectors = []
  for (const [name, description, sender, recipients, nonceBytes, b64, plaintext] of specs) {
    let packed
    for (;;) {
      packed = pack(plaintext, { sender, recipients, nonceBytes, b64 })
      // Make the standard-alphabet vector really use '+' or '/', both in the
      // outer fields and inside the protected header (the protected text
      // itself never can: base64 of ASCII JSON has no 62/63 sextets here).
      if (b64 !== 'std') break
      const m = JSON.parse(packed)
      const inner = Buffer.from(m.protected, 'base64').toString('utf8')
      if (/[+/]/.test(m.ciphertext + m.iv + m.tag) && /[+/]/.test(inner)) break
    }
    // Self-check with the independent unpacker before publishing.
    for (const r of recipients) {
      const got = unpack(packed, r)
      if (got.plaintext !== plaintext || got.senderKey !== (sender ? sender.verkey : null)) {
        throw new Error(`self-check failed for ${name}`)
      }
    }
    const nameOf = (k) => Object.keys(keys).find((n) => keys[n] === k)
    vectors.push({
      name,
      description,
      sender: sender ? nameOf(sender) : null,
      recipients: recipients.map(nameOf),
      plaintext,
      packed,
    })
  }

  const keyOut = {}
  for (const [name, k] of Object.entries(keys)) {
    keyOut[name] = { seed: hex(k.seed), verkey: k.verkey, x25519_public: hex(k.xPub), x25519_private: hex(k.xPriv) }
  }
  const out = {
    generator: `envelope/testdata/genvectors.js, libsodium ${sodium.SODIUM_VERSION_STRING}`,
    keys: keyOut,
    vectors,
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
