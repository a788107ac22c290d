#!/usr/bin/env node
'use strict'
// Cross-checks package diddoc against Credo's own code (credo-ts 0.5.19 and 0.6.3).
// Development tool only: the Go tests never run Node.
//
//   node diddoc/testdata/credo_check.js check    [vectors.json]  # default testdata/credo_vectors.json
//   node diddoc/testdata/credo_check.js generate [out.json]      # default testdata/credo_generated.json
//
// "check" feeds the DIDs, documents and whole DID Exchange / Connections messages our Go code
// produced (vectors_test.go writes them) through Credo's DidExchangeProtocol, JwsService,
// PeerDidResolver and signature-decorator code, exactly as a Credo wallet processing our
// response would, plus negative cases (tampering, wrong signer) that must fail.
// "generate" makes Credo produce its own did:peer:1/2/4, signed attachments, legacy DIDDoc and
// connection~sig from a fixed key; TestCredoGenerated checks we accept them and derive the
// same DIDs.
//
// Needs the harness trees (npm ci done by shared/interop/credo/run.sh):
//   CREDO05_DIR  default /root/.cache/credo-interop       (@credo-ts/core 0.5.19, lib/agent05.js)
//   CREDO06_DIR  default $CREDO05_DIR/v06                 (@credo-ts/core+didcomm 0.6.3, sodium-kms.mjs)
// NODE_PATH is not needed (modules are loaded from those trees explicitly). 0.5 and 0.6 run in
// separate child processes (they bring different reflect-metadata versions).

const path = require('node:path')
const fs = require('node:fs')
const crypto = require('node:crypto')
const { createRequire } = require('node:module')
const { pathToFileURL } = require('node:url')
const { spawnSync } = require('node:child_process')

const DIR05 = process.env.CREDO05_DIR || '/root/.cache/credo-interop'
const DIR06 = process.env.CREDO06_DIR || path.join(DIR05, 'v06')
const HERE = __dirname

const [mode = 'check', fileArg, version] = process.argv.slice(2)
if (!['check', 'generate'].includes(mode)) {
  console.error('usage: credo_check.js check|generate [file]')
  process.exit(2)
}
const file = path.resolve(fileArg || path.join(HERE, mode === 'check' ? 'credo_vectors.json' : 'credo_generated.json'))

// ---------------------------------------------------------------------------------------------
// Parent: run 0.5 and 0.6 in children and combine.
if (!version) {
  let ok = true
  const generated = {}
  for (const v of ['0.5', '0.6']) {
    const r = spawnSync(process.execPath, [__filename, mode, file, v], { encoding: 'utf8' })
    process.stderr.write(r.stderr)
    if (mode === 'check') process.stdout.write(r.stdout)
    if (r.status !== 0) ok = false
    if (mode === 'generate' && r.status === 0) generated[v] = JSON.parse(r.stdout)
  }
  if (mode === 'generate' && ok) {
    fs.writeFileSync(file, JSON.stringify(generated, null, 2) + '\n')
    console.log(`wrote ${file}`)
  }
  console.log(ok ? 'ALL OK' : 'FAILURES')
  process.exit(ok ? 0 : 1)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
let failures = 0
const results = []
function report(name, ok, detail) {
  results.push(`${ok ? 'ok  ' : 'FAIL'} [credo ${version}] ${name}${detail ? ' — ' + detail : ''}`)
  if (!ok) failures++
}
async function expectOk(name, fn) {
  try {
    const detail = await fn()
    report(name, true, detail)
  } catch (e) {
    report(name, false, String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e))
  }
}
async function expectFail(name, fn) {
  try {
    await fn()
    report(name, false, 'unexpectedly accepted')
  } catch (e) {
    report(name, true, 'rejected: ' + String(e.message || e).slice(0, 120))
  }
}
function assertEq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: got ${JSON.stringify(a)} want ${JSON.stringify(b)}`)
}
const b64u = (buf) => Buffer.from(buf).toString('base64url')
function fixedSeed() {
  return crypto.createHash('sha256').update('diddoc credo-generated key').digest()
}
function edPublicFromSeed(seed) {
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed])
  const priv = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
  return Buffer.from(crypto.createPublicKey(priv).export({ format: 'jwk' }).x, 'base64url')
}
function tamperSignature(msgJson, attachName) {
  const m = JSON.parse(JSON.stringify(msgJson))
  const jws = m[attachName].data.jws
  const sig = jws.signatures ? jws.signatures[0] : jws
  const c = sig.signature[5] === 'A' ? 'B' : 'A'
  sig.signature = sig.signature.slice(0, 5) + c + sig.signature.slice(6)
  return m
}
function tamperPayload(msgJson, attachName) {
  const m = JSON.parse(JSON.stringify(msgJson))
  const doc = JSON.parse(Buffer.from(m[attachName].data.base64, 'base64').toString())
  doc.service[0].serviceEndpoint = 'https://evil.example.com'
  m[attachName].data.base64 = Buffer.from(JSON.stringify(doc)).toString('base64')
  return m
}
const GEN_ENDPOINTS = ['https://credo.example.org/didcomm', 'wss://credo.example.org/ws']

// ---------------------------------------------------------------------------------------------
// Credo 0.5.19
async function run05() {
  const req = createRequire(path.join(DIR05, 'package.json'))
  req('reflect-metadata')
  const core = req('@credo-ts/core')
  const { SodiumWalletModule, agentDependencies, ensureSodium } = req('./lib/agent05.js')
  const { didDocumentJsonToNumAlgo1Did } = req('@credo-ts/core/build/modules/dids/methods/peer/peerDidNumAlgo1')
  const { signData, unpackAndVerifySignatureDecorator } = req('@credo-ts/core/build/decorators/signature/SignatureDecoratorUtils')
  const { convertToNewDidDocument, routingToServices } = req('@credo-ts/core/build/modules/connections/services/helpers')
  const { JsonTransformer, MessageValidator } = core

  await ensureSodium()
  const agent = new core.Agent({
    config: { label: 'diddoc-check', walletConfig: { id: `diddoc-${process.pid}`, key: 'k' }, logger: new core.ConsoleLogger(core.LogLevel.off) },
    dependencies: agentDependencies,
    modules: { wallet: new SodiumWalletModule(), connections: new core.ConnectionsModule({ autoAcceptConnections: true }) },
  })
  await agent.initialize()
  const ctx = agent.context
  const protocol = agent.dependencyManager.resolve(core.DidExchangeProtocol)
  const vk = (k) => k.publicKeyBase58

  if (mode === 'generate') {
    const seed = fixedSeed()
    const key = await agent.wallet.createKey({ keyType: core.KeyType.Ed25519, privateKey: seed })
    const routing = { recipientKey: key, endpoints: GEN_ENDPOINTS, routingKeys: [] }
    const mk = async (numAlgo) => {
      const didDocument = core.createPeerDidDocumentFromServices(routingToServices(routing))
      const r = await agent.dids.create({ method: 'peer', didDocument, options: { numAlgo } })
      if (r.didState.state !== 'finished') throw new Error(JSON.stringify(r.didState))
      return r.didState.didDocument
    }
    const d1 = await mk(core.PeerDidNumAlgo.GenesisDoc)
    const d2 = await mk(core.PeerDidNumAlgo.MultipleInceptionKeyWithoutDoc)
    const d4 = await mk(core.PeerDidNumAlgo.ShortFormAndLongForm)
    const docAttach = await protocol.createSignedAttachment(ctx, d1.toJSON(), [vk(key)])
    const rotAttach = await protocol.createSignedAttachment(ctx, d2.id, [vk(key)])
    const connService = agent.dependencyManager.resolve(core.ConnectionService)
    const didDoc = connService.createDidDoc(routing)
    const connectionJson = JsonTransformer.toJSON(new core.Connection({ did: didDoc.id, didDoc }))
    const sig = await signData(connectionJson, ctx.wallet, vk(key))
    return {
      credo: req('@credo-ts/core/package.json').version,
      verkey: vk(key),
      endpoints: GEN_ENDPOINTS,
      peer1Did: d1.id,
      peer1Doc: JSON.stringify(d1.toJSON()),
      peer2Did: d2.id,
      peer4Did: d4.id,
      docAttach: JsonTransformer.toJSON(docAttach).data,
      rotateAttach: JsonTransformer.toJSON(rotAttach).data,
      legacyDid: didDoc.id,
      connection: JSON.stringify(connectionJson),
      connectionSig: JsonTransformer.toJSON(sig),
    }
  }

  const v = JSON.parse(fs.readFileSync(file, 'utf8'))
  const inv = [v.invitationVerkey]
  const resp = (json, cls) => {
    const m = JsonTransformer.fromJSON(json, cls)
    MessageValidator.validateSync(m)
    return m
  }
  const checkDoc = (doc) => {
    assertEq([...new Set(doc.recipientKeys.map(vk))], [v.ourVerkey], 'recipientKeys (one key, listed once per service)')
    assertEq(doc.didCommServices.map((s) => s.serviceEndpoint), v.endpoints, 'endpoints')
    return `recipientKeys=${[...new Set(doc.recipientKeys.map(vk))]} endpoints=${doc.didCommServices.map((s) => s.serviceEndpoint)}`
  }

  await expectOk('did:peer:1 id = didDocumentJsonToNumAlgo1Did(our doc)', () => {
    assertEq(didDocumentJsonToNumAlgo1Did(v.peer1Doc), v.peer1Did, 'did:peer:1')
    return v.peer1Did
  })
  await expectOk('did:key of our verkey', () => {
    assertEq(core.DidKey.fromDid(v.ourDidKey).key.publicKeyBase58, v.ourVerkey, 'did:key')
  })
  await expectOk('isValidPeerDid / numalgo of our DIDs', () => {
    for (const [d, n] of [[v.peer1Did, 1], [v.peer2Did, 2], [v.peer4Did, 4]]) {
      if (!core.isValidPeerDid(d)) throw new Error(`invalid peer did ${d.slice(0, 40)}`)
      assertEq(core.getNumAlgoFromPeerDid(d), n, 'numalgo')
    }
  })
  await expectOk('resolve our did:peer:2 (PeerDidResolver)', async () => checkDoc(await agent.dids.resolveDidDocument(v.peer2Did)))
  await expectOk('resolve our did:peer:4 long form (PeerDidResolver, hash check)', async () =>
    checkDoc(await agent.dids.resolveDidDocument(v.peer4Did)))
  await expectOk('resolve our did:peer:2 for endpoints with ?~>é (escaped JSON)', async () => {
    const doc = await agent.dids.resolveDidDocument(v.peer2OddDid)
    assertEq(doc.didCommServices.map((s) => s.serviceEndpoint), v.oddEndpoints, 'endpoints')
    return doc.didCommServices.map((s) => s.serviceEndpoint).join(' ')
  })
  await expectFail('NEG the same did:peer:2 with plain (unescaped) base64url service JSON', async () => {
    const plain = v.peer2OddDid.split('.S')[0] + v.oddEndpoints.map((ep, i) => '.S' + b64u(Buffer.from(JSON.stringify({ s: ep, t: 'did-communication', priority: i, recipientKeys: ['#key-1'], r: [] })))).join('')
    if (plain === v.peer2OddDid) throw new Error('no difference')
    await agent.dids.resolveDidDocument(plain)
  })
  await expectOk('request did:peer:1 + did_doc~attach: extractAttachedDidDocument', async () =>
    checkDoc(await protocol.extractAttachedDidDocument(ctx, resp(v.requestPeer1, core.DidExchangeRequestMessage))))
  await expectOk('response did:peer:1 signed by own key: resolveDidDocument (processResponse path)', async () =>
    checkDoc(await protocol.resolveDidDocument(ctx, resp(v.responsePeer1, core.DidExchangeResponseMessage), inv)))
  await expectOk('response did:peer:1 signed by own + invitation key (signatures form)', async () =>
    checkDoc(await protocol.resolveDidDocument(ctx, resp(v.responsePeer1Multi, core.DidExchangeResponseMessage), inv)))
  await expectFail('NEG signatures form without the invitation key trusted', async () =>
    protocol.resolveDidDocument(ctx, resp(v.responsePeer1Multi, core.DidExchangeResponseMessage), []))
  await expectOk('response did:peer:1 signed by the invitation key only', async () =>
    checkDoc(await protocol.resolveDidDocument(ctx, resp(v.responsePeer1Inv, core.DidExchangeResponseMessage), inv)))
  await expectFail('NEG did_doc~attach with tampered signature', async () =>
    protocol.resolveDidDocument(ctx, resp(tamperSignature(v.responsePeer1, 'did_doc~attach'), core.DidExchangeResponseMessage), inv))
  await expectFail('NEG did_doc~attach with tampered document', async () =>
    protocol.resolveDidDocument(ctx, resp(tamperPayload(v.responsePeer1, 'did_doc~attach'), core.DidExchangeResponseMessage), inv))
  for (const [name, msg] of [['did:peer:2', v.responsePeer2], ['did:peer:4', v.responsePeer4]]) {
    await expectOk(`response ${name} + did_rotate~attach: resolveDidDocument (processResponse path)`, async () =>
      checkDoc(await protocol.resolveDidDocument(ctx, resp(msg, core.DidExchangeResponseMessage), inv)))
    await expectFail(`NEG ${name} did_rotate checked against another invitation key`, async () =>
      protocol.resolveDidDocument(ctx, resp(msg, core.DidExchangeResponseMessage), [v.ourVerkey]))
    await expectFail(`NEG ${name} did_rotate with tampered signature`, async () =>
      protocol.resolveDidDocument(ctx, resp(tamperSignature(msg, 'did_rotate~attach'), core.DidExchangeResponseMessage), inv))
  }
  await expectOk('connections/1.0 response: connection~sig + legacy DIDDoc', async () => {
    const m = resp(v.connectionResponse, core.ConnectionResponseMessage)
    const json = await unpackAndVerifySignatureDecorator(m.connectionSig, ctx.wallet)
    assertEq(m.connectionSig.signer, v.invitationVerkey, 'signer')
    const conn = JsonTransformer.fromJSON(json, core.Connection)
    MessageValidator.validateSync(conn)
    assertEq(conn.did, v.legacyDid, 'DID')
    const doc = convertToNewDidDocument(conn.didDoc)
    assertEq([...new Set(doc.recipientKeys.map(vk))], [v.ourVerkey], 'recipientKeys (one key, listed once per service)')
    // convertToNewDidDocument reverses service order (Credo FIXME); compare as a set
    assertEq(doc.didCommServices.map((s) => s.serviceEndpoint).sort(), [...v.endpoints].sort(), 'endpoints')
    return `did=${conn.did} converted=${doc.id.slice(0, 24)}…`
  })
  await expectFail('NEG connection~sig with tampered sig_data', async () => {
    const m = resp(v.connectionResponse, core.ConnectionResponseMessage)
    const data = Buffer.from(m.connectionSig.signatureData, 'base64')
    data[data.length - 3] ^= 1
    m.connectionSig.signatureData = b64u(data)
    await unpackAndVerifySignatureDecorator(m.connectionSig, ctx.wallet)
  })
  await agent.shutdown()
}

// ---------------------------------------------------------------------------------------------
// Credo 0.6.3
async function run06() {
  const req = createRequire(path.join(DIR06, 'package.json'))
  req('reflect-metadata')
  const imp = (p) => import(pathToFileURL(path.join(DIR06, p)).href)
  const core = await imp('node_modules/@credo-ts/core/build/index.mjs')
  const didcomm = await imp('node_modules/@credo-ts/didcomm/build/index.mjs')
  const { signData, unpackAndVerifySignatureDecorator } = await imp('node_modules/@credo-ts/didcomm/build/decorators/signature/SignatureDecoratorUtils.mjs')
  const { convertToNewDidDocument, routingToServices } = await imp('node_modules/@credo-ts/didcomm/build/modules/connections/services/helpers.mjs')
  const { SodiumKeyManagementService, sodiumReady } = await imp('sodium-kms.mjs')
  const { MemoryStorageService06 } = await imp('memory-storage.mjs')
  const { agentDependencies06 } = await imp('agent06.mjs')
  const { JsonTransformer, MessageValidator, Kms, TypedArrayEncoder } = core

  await sodiumReady()
  const storage = new MemoryStorageService06()
  const agent = new core.Agent({
    config: { logger: new core.ConsoleLogger(core.LogLevel.off), autoUpdateStorageOnStartup: true },
    dependencies: agentDependencies06,
    modules: {
      harnessStorage: { register: (dm) => dm.registerInstance(core.InjectionSymbols.StorageService, storage) },
      kms: new Kms.KeyManagementModule({ backends: [new SodiumKeyManagementService()] }),
      didcomm: new didcomm.DidCommModule({
        endpoints: ['http://127.0.0.1:9'],
        transports: { inbound: [], outbound: [] },
        connections: { autoAcceptConnections: true },
        mediator: false,
        credentials: false,
        proofs: false,
      }),
    },
  })
  await agent.initialize()
  const ctx = agent.context
  const protocol = agent.dependencyManager.resolve(didcomm.DidExchangeProtocol)
  const vk = (jwk) => TypedArrayEncoder.toBase58(jwk.publicKey.publicKey)
  const jwkOf = (base58) =>
    Kms.PublicJwk.fromPublicKey({ kty: 'OKP', crv: 'Ed25519', publicKey: TypedArrayEncoder.fromBase58(base58) })

  if (mode === 'generate') {
    const seed = fixedSeed()
    const kms = ctx.resolve(Kms.KeyManagementApi)
    const imported = await kms.importKey({
      privateJwk: { kty: 'OKP', crv: 'Ed25519', d: b64u(seed), x: b64u(edPublicFromSeed(seed)) },
    })
    const key = Kms.PublicJwk.fromPublicJwk(imported.publicJwk)
    key.keyId = imported.keyId
    const routing = { recipientKey: key, endpoints: GEN_ENDPOINTS, routingKeys: [] }
    const mk = async (numAlgo) => {
      const { didDocument, keys } = core.createPeerDidDocumentFromServices(routingToServices(routing), true)
      const r = await agent.dids.create({ method: 'peer', didDocument, options: { numAlgo, keys } })
      if (r.didState.state !== 'finished') throw new Error(JSON.stringify(r.didState))
      return r.didState.didDocument
    }
    const d1 = await mk(core.PeerDidNumAlgo.GenesisDoc)
    const d2 = await mk(core.PeerDidNumAlgo.MultipleInceptionKeyWithoutDoc)
    const d4 = await mk(core.PeerDidNumAlgo.ShortFormAndLongForm)
    const docAttach = await protocol.createSignedAttachment(ctx, d1.toJSON(), [key])
    const rotAttach = await protocol.createSignedAttachment(ctx, d2.id, [key])
    const connService = agent.dependencyManager.resolve(didcomm.DidCommConnectionService)
    const { didDoc } = connService.createDidDoc(routing)
    const connectionJson = JsonTransformer.toJSON(new didcomm.DidCommConnection({ did: didDoc.id, didDoc }))
    const sig = await signData(ctx, connectionJson, key)
    return {
      credo: req('@credo-ts/didcomm/package.json').version,
      verkey: vk(key),
      endpoints: GEN_ENDPOINTS,
      peer1Did: d1.id,
      peer1Doc: JSON.stringify(d1.toJSON()),
      peer2Did: d2.id,
      peer4Did: d4.id,
      docAttach: JsonTransformer.toJSON(docAttach).data,
      rotateAttach: JsonTransformer.toJSON(rotAttach).data,
      legacyDid: didDoc.id,
      connection: JSON.stringify(connectionJson),
      connectionSig: JsonTransformer.toJSON(sig),
    }
  }

  const v = JSON.parse(fs.readFileSync(file, 'utf8'))
  const inv = [jwkOf(v.invitationVerkey)]
  const resp = (json, cls) => {
    const m = JsonTransformer.fromJSON(json, cls)
    MessageValidator.validateSync(m)
    return m
  }
  const checkDoc = (doc) => {
    assertEq([...new Set(doc.recipientKeys.map(vk))], [v.ourVerkey], 'recipientKeys (one key, listed once per service)')
    assertEq(doc.didCommServices.map((s) => s.serviceEndpoint), v.endpoints, 'endpoints')
    return `recipientKeys=${[...new Set(doc.recipientKeys.map(vk))]} endpoints=${doc.didCommServices.map((s) => s.serviceEndpoint)}`
  }
  const Req = didcomm.DidCommDidExchangeRequestMessage
  const Resp = didcomm.DidCommDidExchangeResponseMessage

  await expectOk('did:peer:1 id = didDocumentJsonToNumAlgo1Did(our doc)', () => {
    assertEq(core.didDocumentJsonToNumAlgo1Did(v.peer1Doc), v.peer1Did, 'did:peer:1')
    return v.peer1Did
  })
  await expectOk('did:key of our verkey', () => {
    assertEq(vk(core.DidKey.fromDid(v.ourDidKey).publicJwk), v.ourVerkey, 'did:key')
  })
  await expectOk('resolve our did:peer:2 (PeerDidResolver)', async () => checkDoc(await agent.dids.resolveDidDocument(v.peer2Did)))
  await expectOk('resolve our did:peer:4 long form (PeerDidResolver, hash check)', async () =>
    checkDoc(await agent.dids.resolveDidDocument(v.peer4Did)))
  await expectOk('resolve our did:peer:2 for endpoints with ?~>é (escaped JSON)', async () => {
    const doc = await agent.dids.resolveDidDocument(v.peer2OddDid)
    assertEq(doc.didCommServices.map((s) => s.serviceEndpoint), v.oddEndpoints, 'endpoints')
    return doc.didCommServices.map((s) => s.serviceEndpoint).join(' ')
  })
  await expectFail('NEG the same did:peer:2 with plain (unescaped) base64url service JSON', async () => {
    const plain = v.peer2OddDid.split('.S')[0] + v.oddEndpoints.map((ep, i) => '.S' + b64u(Buffer.from(JSON.stringify({ s: ep, t: 'did-communication', priority: i, recipientKeys: ['#key-1'], r: [] })))).join('')
    if (plain === v.peer2OddDid) throw new Error('no difference')
    await agent.dids.resolveDidDocument(plain)
  })
  await expectOk('request did:peer:1 + did_doc~attach: extractAttachedDidDocument', async () =>
    checkDoc(await protocol.extractAttachedDidDocument(ctx, resp(v.requestPeer1, Req))))
  await expectOk('response did:peer:1 signed by own key: resolveDidDocument (processResponse path)', async () =>
    checkDoc(await protocol.resolveDidDocument(ctx, resp(v.responsePeer1, Resp), inv)))
  await expectOk('response did:peer:1 signed by own + invitation key (signatures form)', async () =>
    checkDoc(await protocol.resolveDidDocument(ctx, resp(v.responsePeer1Multi, Resp), inv)))
  await expectFail('NEG signatures form without the invitation key trusted', async () =>
    protocol.resolveDidDocument(ctx, resp(v.responsePeer1Multi, Resp), []))
  await expectOk('response did:peer:1 signed by the invitation key only', async () =>
    checkDoc(await protocol.resolveDidDocument(ctx, resp(v.responsePeer1Inv, Resp), inv)))
  await expectFail('NEG did_doc~attach with tampered signature', async () =>
    protocol.resolveDidDocument(ctx, resp(tamperSignature(v.responsePeer1, 'did_doc~attach'), Resp), inv))
  await expectFail('NEG did_doc~attach with tampered document', async () =>
    protocol.resolveDidDocument(ctx, resp(tamperPayload(v.responsePeer1, 'did_doc~attach'), Resp), inv))
  for (const [name, msg] of [['did:peer:2', v.responsePeer2], ['did:peer:4', v.responsePeer4]]) {
    await expectOk(`response ${name} + did_rotate~attach: resolveDidDocument (processResponse path)`, async () =>
      checkDoc(await protocol.resolveDidDocument(ctx, resp(msg, Resp), inv)))
    await expectFail(`NEG ${name} did_rotate checked against another invitation key`, async () =>
      protocol.resolveDidDocument(ctx, resp(msg, Resp), [jwkOf(v.ourVerkey)]))
    await expectFail(`NEG ${name} did_rotate with tampered signature`, async () =>
      protocol.resolveDidDocument(ctx, resp(tamperSignature(msg, 'did_rotate~attach'), Resp), inv))
  }
  await expectOk('connections/1.0 response: connection~sig + legacy DIDDoc', async () => {
    const m = resp(v.connectionResponse, didcomm.DidCommConnectionResponseMessage)
    const json = await unpackAndVerifySignatureDecorator(ctx, m.connectionSig)
    assertEq(m.connectionSig.signer, v.invitationVerkey, 'signer')
    const conn = JsonTransformer.fromJSON(json, didcomm.DidCommConnection)
    MessageValidator.validateSync(conn)
    assertEq(conn.did, v.legacyDid, 'DID')
    const { didDocument } = convertToNewDidDocument(conn.didDoc)
    assertEq([...new Set(didDocument.recipientKeys.map(vk))], [v.ourVerkey], 'recipientKeys')
    assertEq(didDocument.didCommServices.map((s) => s.serviceEndpoint).sort(), [...v.endpoints].sort(), 'endpoints')
    return `did=${conn.did} converted=${didDocument.id.slice(0, 24)}…`
  })
  await expectFail('NEG connection~sig with tampered sig_data', async () => {
    const m = resp(v.connectionResponse, didcomm.DidCommConnectionResponseMessage)
    const data = Buffer.from(m.connectionSig.signatureData, 'base64')
    data[data.length - 3] ^= 1
    m.connectionSig.signatureData = b64u(data)
    await unpackAndVerifySignatureDecorator(ctx, m.connectionSig)
  })
  await agent.shutdown()
}

;(async () => {
  try {
    const out = version === '0.5' ? await run05() : await run06()
    if (mode === 'generate') {
      process.stdout.write(JSON.stringify(out))
    } else {
      console.log(results.join('\n'))
    }
  } catch (e) {
    console.error(`[credo ${version}] fatal:`, e)
    process.exit(1)
  }
  process.exit(failures === 0 ? 0 : 1)
})()
