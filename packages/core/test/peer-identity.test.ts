import { describe, expect, test } from 'vitest'
import { IdentityError } from '../src/errors.js'
import { fromBase64url, toBase64url } from '../src/identity/base64url.js'
import { joinProofBytes, signJoinProof, verifyJoinProof } from '../src/identity/join-proof.js'
import {
  generateIdentity,
  identityFromSecret,
  PEER_ID_LENGTH,
  peerIdFromPublicKey,
  signBytes,
  verifyBytes,
} from '../src/identity/peer-identity.js'
import {
  type StepResultFields,
  signResult,
  stepOutputDigest,
  stepSigningBytes,
  verifyResult,
} from '../src/identity/step-signature.js'

const hex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (b) => Number.parseInt(b, 16))
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')

// RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte, 0x72).
const RFC_SECRET = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60')
const RFC_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'
const RFC_SIG_EMPTY =
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'
const RFC2_SECRET = hex('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb')
const RFC2_SIG =
  '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'

function expectIdentityError(fn: () => unknown, code: string): void {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  expect(thrown).toBeInstanceOf(IdentityError)
  expect((thrown as IdentityError).code).toBe(code)
}

describe('peer identity', () => {
  test('matches the RFC 8032 test vectors', () => {
    const id = identityFromSecret(RFC_SECRET)
    expect(toHex(id.publicKey)).toBe(RFC_PUBLIC)
    expect(toHex(signBytes(id, new Uint8Array(0)))).toBe(RFC_SIG_EMPTY)
    const id2 = identityFromSecret(RFC2_SECRET)
    expect(toHex(signBytes(id2, Uint8Array.of(0x72)))).toBe(RFC2_SIG)
    expect(verifyBytes(id2.publicKey, Uint8Array.of(0x72), hex(RFC2_SIG))).toBe(true)
    expect(verifyBytes(id2.publicKey, Uint8Array.of(0x73), hex(RFC2_SIG))).toBe(false)
  })

  test('generated identities are distinct and rebuild from their secret', () => {
    const a = generateIdentity()
    const b = generateIdentity()
    expect(a.secretKey.length).toBe(32)
    expect(a.publicKey.length).toBe(32)
    expect(toHex(a.publicKey)).not.toBe(toHex(b.publicKey))
    const again = identityFromSecret(a.secretKey)
    expect(toHex(again.publicKey)).toBe(toHex(a.publicKey))
    expect(again.peerId).toBe(a.peerId)
  })

  test('identityFromSecret copies the secret', () => {
    const secret = RFC_SECRET.slice()
    const id = identityFromSecret(secret)
    secret.fill(0)
    expect(toHex(identityFromSecret(id.secretKey).publicKey)).toBe(RFC_PUBLIC)
  })

  test('peer ids are stable, url-safe and derived from the key only', () => {
    const id = identityFromSecret(RFC_SECRET)
    // Pinned (computed independently with node:crypto): a change would rename every peer.
    expect(id.peerId).toBe(peerIdFromPublicKey(hex(RFC_PUBLIC)))
    expect(id.peerId).toBe('kIf4x36FUomFia_hUBG_SJx')
    expect(id.peerId).toHaveLength(PEER_ID_LENGTH)
    expect(id.peerId).toMatch(/^k[A-Za-z0-9_-]{22}$/)
    for (let i = 0; i < 20; i++) expect(generateIdentity().peerId).toMatch(/^k[A-Za-z0-9_-]{22}$/)
    const flipped = hex(RFC_PUBLIC)
    flipped[0] = (flipped[0] as number) ^ 1
    expect(peerIdFromPublicKey(flipped)).not.toBe(id.peerId)
  })

  test.each([
    ['a short secret', () => identityFromSecret(new Uint8Array(31))],
    ['a long secret', () => identityFromSecret(new Uint8Array(64))],
    ['a string secret', () => identityFromSecret('x'.repeat(32) as unknown as Uint8Array)],
    ['a short public key', () => peerIdFromPublicKey(new Uint8Array(16))],
    ['a number array key', () => peerIdFromPublicKey(Array(32).fill(1) as unknown as Uint8Array)],
  ])('%s is ERR_IDENTITY_KEY', (_, fn) => expectIdentityError(fn, 'ERR_IDENTITY_KEY'))

  test('verifyBytes is false, not a throw, on malformed keys and signatures', () => {
    const id = generateIdentity()
    const sig = signBytes(id, Uint8Array.of(1))
    expect(verifyBytes(id.publicKey, Uint8Array.of(1), sig)).toBe(true)
    expect(verifyBytes(id.publicKey.subarray(1), Uint8Array.of(1), sig)).toBe(false)
    expect(verifyBytes(id.publicKey, Uint8Array.of(1), sig.subarray(1))).toBe(false)
    expect(verifyBytes(new Uint8Array(32).fill(0xff), Uint8Array.of(1), sig)).toBe(false)
    expect(verifyBytes(id.publicKey, 'x' as unknown as Uint8Array, sig)).toBe(false)
    // S >= L (non-canonical scalar) is refused under strict RFC 8032 rules.
    const bigS = sig.slice()
    bigS.fill(0xff, 32)
    expect(verifyBytes(id.publicKey, Uint8Array.of(1), bigS)).toBe(false)
  })
})

describe('base64url', () => {
  test('round-trips every length and byte value', () => {
    for (let n = 0; n < 70; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + n * 13) & 0xff)
      const text = toBase64url(bytes)
      expect(text).toMatch(/^[A-Za-z0-9_-]*$/)
      expect(Array.from(fromBase64url(text) ?? [])).toEqual(Array.from(bytes))
    }
    expect(toBase64url(Uint8Array.of(0xfb, 0xff))).toBe('-_8')
  })

  test.each(['AA==', 'A', 'AAAAA', 'AB', 'A+', 'A/', 'A A', 'é', 'AAA\n'])('rejects %j', (text) => {
    expect(fromBase64url(text)).toBeUndefined()
  })
})

const hidden = Float32Array.from([0.5, -1.25, 3, -0])
const baseFields: StepResultFields = {
  mesh: 'default',
  generationId: 'gen-1',
  stepIndex: 7,
  startPos: 7,
  seqLen: 1,
  output: { hidden },
}
const topkFields: StepResultFields = {
  ...baseFields,
  output: {
    topk: { values: Float32Array.from([3, 2, 1]), ids: Int32Array.from([9, 4, 1]), logSumExp: 3.5 },
    fingerprint: Uint8Array.from([1, 2, 3, 4]),
  },
}

/** Flips one bit of one field; the signature must no longer verify. */
const tampers: Array<[string, StepResultFields, (f: StepResultFields) => StepResultFields]> = [
  ['mesh', baseFields, (f) => ({ ...f, mesh: 'defaulu' })],
  ['generationId', baseFields, (f) => ({ ...f, generationId: 'gen-0' })],
  ['stepIndex', baseFields, (f) => ({ ...f, stepIndex: 6 })],
  ['startPos', baseFields, (f) => ({ ...f, startPos: 6 })],
  ['seqLen', baseFields, (f) => ({ ...f, seqLen: 0 })],
  ['a hidden byte', baseFields, (f) => ({ ...f, output: { hidden: flipByte(hidden, 5) } })],
  [
    'hidden -0 to +0',
    baseFields,
    (f) => ({ ...f, output: { hidden: Float32Array.from([0.5, -1.25, 3, 0]) } }),
  ],
  ['hidden length', baseFields, (f) => ({ ...f, output: { hidden: hidden.subarray(0, 3) } })],
  ['hidden given as a fingerprint', baseFields, (f) => ({ ...f, output: { fingerprint: bytesOf(hidden) } })],
  ['a topk value', topkFields, (f) => withTopk(f, { values: Float32Array.from([3, 2, 0.5]) })],
  ['a topk id', topkFields, (f) => withTopk(f, { ids: Int32Array.from([9, 4, 2]) })],
  ['logSumExp', topkFields, (f) => withTopk(f, { logSumExp: 3.5000000001 })],
  [
    'a fingerprint byte',
    topkFields,
    (f) => ({ ...f, output: { ...f.output, fingerprint: Uint8Array.from([1, 2, 3, 5]) } }),
  ],
  ['a dropped fingerprint', topkFields, (f) => ({ ...f, output: { topk: f.output.topk } })],
]

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength))
}
function flipByte(a: Float32Array, at: number): Float32Array {
  const b = bytesOf(a)
  b[at] = (b[at] as number) ^ 1
  return new Float32Array(b.buffer)
}
function withTopk(f: StepResultFields, over: Record<string, unknown>): StepResultFields {
  return { ...f, output: { ...f.output, topk: { ...(f.output.topk as object), ...over } as never } }
}

describe('step result signatures', () => {
  const id = generateIdentity()

  test.each([
    ['hidden', baseFields],
    ['top-k with a fingerprint', topkFields],
  ])('round-trip over %s', (_, fields) => {
    const sig = signResult(id, fields)
    expect(sig.length).toBe(64)
    expect(verifyResult(id.publicKey, fields, sig)).toBe(true)
    // Deterministic (RFC 8032) and independent of array views.
    expect(toHex(signResult(id, fields))).toBe(toHex(sig))
    expect(verifyResult(generateIdentity().publicKey, fields, sig)).toBe(false)
  })

  test.each(tampers)('changing %s breaks the signature', (_, fields, tamper) => {
    const sig = signResult(id, fields)
    expect(verifyResult(id.publicKey, fields, sig)).toBe(true)
    expect(verifyResult(id.publicKey, tamper(fields), sig)).toBe(false)
  })

  test('flipping any bit of the signature or the key breaks it', () => {
    const sig = signResult(id, baseFields)
    for (let i = 0; i < 64; i++) {
      const bad = sig.slice()
      bad[i] = (bad[i] as number) ^ (1 << (i % 8))
      expect(verifyResult(id.publicKey, baseFields, bad), `signature byte ${i}`).toBe(false)
    }
    for (let i = 0; i < 32; i++) {
      const key = id.publicKey.slice()
      key[i] = (key[i] as number) ^ 0x10
      expect(verifyResult(key, baseFields, sig), `key byte ${i}`).toBe(false)
    }
  })

  test('the signed bytes are the documented layout', () => {
    const bytes = stepSigningBytes(baseFields)
    const text = new TextDecoder().decode(bytes.subarray(1, 18))
    expect([bytes[0], text]).toEqual([17, 'butterfly-step-v1'])
    expect(bytes[18]).toBe(7) // 'default'
    const view = new DataView(bytes.buffer, bytes.byteOffset)
    const at = 18 + 1 + 7 + 1 + 5
    expect([view.getUint32(at, true), view.getUint32(at + 4, true), view.getUint32(at + 8, true)]).toEqual([
      7, 7, 1,
    ])
    expect(toHex(bytes.subarray(at + 12))).toBe(toHex(stepOutputDigest(baseFields.output)))
    expect(bytes.length).toBe(at + 12 + 32)
  })

  test.each([
    ['an empty output', { ...baseFields, output: {} }],
    ['an empty mesh', { ...baseFields, mesh: '' }],
    ['a 256-byte generation id', { ...baseFields, generationId: 'g'.repeat(256) }],
    ['a negative step', { ...baseFields, stepIndex: -1 }],
    ['a fractional start', { ...baseFields, startPos: 1.5 }],
    ['hidden as a plain array', { ...baseFields, output: { hidden: [1, 2] as unknown as Float32Array } }],
    ['top-k ids of another length', withTopk(topkFields, { ids: Int32Array.from([1]) })],
  ])('signing %s is ERR_IDENTITY_INPUT and verifies false', (_, fields) => {
    expectIdentityError(() => signResult(id, fields as StepResultFields), 'ERR_IDENTITY_INPUT')
    expect(verifyResult(id.publicKey, fields as StepResultFields, new Uint8Array(64))).toBe(false)
  })
})

describe('join proofs', () => {
  const id = generateIdentity()
  const nonce = 'n0nce-Of-Exactly-32-chars-abcdef'

  test('verify for the same key, mesh and nonce only', () => {
    const proof = signJoinProof(id, 'default', nonce)
    expect(fromBase64url(proof)?.length).toBe(64)
    expect(verifyJoinProof(id.publicKey, 'default', nonce, proof)).toBe(true)
    expect(verifyJoinProof(id.publicKey, 'default', nonce, fromBase64url(proof) as Uint8Array)).toBe(true)
    expect(verifyJoinProof(id.publicKey, 'default', `${nonce}x`, proof)).toBe(false) // replayed elsewhere
    expect(verifyJoinProof(id.publicKey, 'other', nonce, proof)).toBe(false)
    expect(verifyJoinProof(generateIdentity().publicKey, 'default', nonce, proof)).toBe(false)
    expect(verifyJoinProof(id.publicKey, 'default', nonce, `${proof}A`)).toBe(false)
    expect(verifyJoinProof(id.publicKey, '', nonce, proof)).toBe(false)
  })

  test('a join proof is never a valid step signature (domain separation)', () => {
    const join = joinProofBytes('default', nonce)
    expect(new TextDecoder().decode(join.subarray(1, 18))).toBe('butterfly-join-v1')
    const proof = fromBase64url(signJoinProof(id, 'default', nonce)) as Uint8Array
    expect(verifyResult(id.publicKey, baseFields, proof)).toBe(false)
  })
})
