import { describe, expect, test } from 'vitest'
import { ControlError } from '../src/errors.js'
import { toBase64url } from '../src/identity/base64url.js'
import { signJoinProof, verifyJoinProof } from '../src/identity/join-proof.js'
import { generateIdentity } from '../src/identity/peer-identity.js'
import { parseHello, parseJoinRequest } from '../src/mesh/control-protocol.js'

const id = generateIdentity()
const nonce = 'abcdefghijklmnopqrstuvwxyz012345'
const valid = {
  mesh: 'default',
  token: '',
  capabilities: { backend: 'cpu', memoryBytes: 2 ** 30, layerStepsPerSec: 100, name: 'w' },
  publicKey: toBase64url(id.publicKey),
  proof: signJoinProof(id, 'default', nonce),
}

function refused(fn: () => unknown): ControlError {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  expect(thrown).toBeInstanceOf(ControlError)
  expect((thrown as ControlError).code).toBe('ERR_CONTROL_INPUT')
  return thrown as ControlError
}

describe('parseJoinRequest identity fields', () => {
  test('keeps the key and proof and decodes the key', () => {
    const req = parseJoinRequest(valid)
    expect(req.publicKey).toBe(valid.publicKey)
    expect(req.proof).toBe(valid.proof)
    expect(Array.from(req.publicKeyBytes)).toEqual(Array.from(id.publicKey))
    expect(verifyJoinProof(req.publicKeyBytes, req.mesh, nonce, req.proof)).toBe(true)
  })

  test.each([
    ['no public key', { publicKey: undefined }],
    ['a numeric public key', { publicKey: 42 }],
    ['a 31-byte public key', { publicKey: toBase64url(new Uint8Array(31)) }],
    ['a 33-byte public key', { publicKey: toBase64url(new Uint8Array(33)) }],
    ['a padded public key', { publicKey: `${toBase64url(id.publicKey)}=` }],
    [
      'a standard-base64 public key',
      // '+' and '/' belong to standard base64 only, so this is never valid base64url.
      { publicKey: `+/${toBase64url(id.publicKey).slice(2)}` },
    ],
    ['a huge public key', { publicKey: 'A'.repeat(1_000_000) }],
    ['no proof', { proof: undefined }],
    ['a 63-byte proof', { proof: toBase64url(new Uint8Array(63)) }],
    ['a proof object', { proof: { sig: 1 } }],
  ])('refuses %s', (_, over) => {
    refused(() => parseJoinRequest({ ...valid, ...over }))
  })
})

describe('parseJoinRequest precision (numeric class)', () => {
  test('defaults to fp32 and keeps a known precision', () => {
    expect(parseJoinRequest(valid).capabilities.precision).toBe('fp32')
    const fp16w = parseJoinRequest({ ...valid, capabilities: { ...valid.capabilities, precision: 'fp16w' } })
    expect(fp16w.capabilities.precision).toBe('fp16w')
    const int8a = parseJoinRequest({ ...valid, capabilities: { ...valid.capabilities, precision: 'int8a' } })
    expect(int8a.capabilities.precision).toBe('int8a')
  })

  test.each([['fp8'], [''], [16], [null], [{ bits: 16 }], ['FP32']])('refuses precision %j', (precision) => {
    const err = refused(() =>
      parseJoinRequest({ ...valid, capabilities: { ...valid.capabilities, precision } }),
    )
    expect(err.message).toMatch(/precision must be one of fp32, fp16w, fp16, int8a/)
  })
})

describe('parseHello', () => {
  test('accepts a base64url nonce', () => {
    expect(parseHello({ nonce })).toEqual({ nonce })
  })
  test.each([
    [null],
    ['x'],
    [{}],
    [{ nonce: 'short' }],
    [{ nonce: 'a'.repeat(129) }],
    [{ nonce: `${nonce}!` }],
  ])('refuses %j', (v) => {
    refused(() => parseHello(v))
  })
})
