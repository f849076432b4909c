import {
  generateIdentity,
  registerSignatureBackend,
  signBytes,
  signResult,
  stepOutputDigest,
  verifyBytes,
  verifyResult,
} from '@butterfly/core'
import { afterEach, describe, expect, test } from 'vitest'
import { nodeSignatureBackend } from '../src/mesh/native-signatures.js'

describe('node:crypto Ed25519 backend', () => {
  afterEach(() => registerSignatureBackend(undefined))

  test('signs exactly as the pure-JS default and verifies its signatures', () => {
    const id = generateIdentity()
    const msg = new TextEncoder().encode('butterfly-step-v1 test message')
    const noble = signBytes(id, msg)
    registerSignatureBackend(nodeSignatureBackend())
    const native = signBytes(id, msg)
    // Ed25519 is deterministic: both implementations must produce the same bytes.
    expect(Buffer.from(native).toString('hex')).toBe(Buffer.from(noble).toString('hex'))
    expect(verifyBytes(id.publicKey, msg, noble)).toBe(true)
  })

  test('rejects tampered messages, signatures and keys', () => {
    registerSignatureBackend(nodeSignatureBackend())
    const id = generateIdentity()
    const other = generateIdentity()
    const msg = new Uint8Array([1, 2, 3, 4])
    const sig = signBytes(id, msg)
    expect(verifyBytes(id.publicKey, Uint8Array.of(1, 2, 3, 5), sig)).toBe(false)
    const bad = sig.slice()
    bad[10] = (bad[10] as number) ^ 1
    expect(verifyBytes(id.publicKey, msg, bad)).toBe(false)
    expect(verifyBytes(other.publicKey, msg, sig)).toBe(false)
    expect(verifyBytes(id.publicKey, msg, sig.subarray(0, 63))).toBe(false)
  })

  test('hashes step outputs exactly as the pure-JS default, so signatures cross backends', () => {
    const hidden = Float32Array.from({ length: 768 }, (_, i) => Math.sin(i))
    const topk = { values: Float32Array.of(3, 2, 1), ids: Int32Array.of(7, 8, 9), logSumExp: 4.25 }
    const fingerprint = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    const outputs = [{ hidden }, { topk }, { fingerprint }, { hidden, topk, fingerprint }]
    const noble = outputs.map((o) => stepOutputDigest(o))
    const id = generateIdentity()
    const fields = { mesh: 'm', generationId: 'g1', stepIndex: 3, startPos: 3, seqLen: 1, output: { hidden } }
    const nobleSig = signResult(id, fields)
    registerSignatureBackend(nodeSignatureBackend())
    const native = outputs.map((o) => stepOutputDigest(o))
    expect(native).toEqual(noble)
    for (const d of native) expect(Object.getPrototypeOf(d)).toBe(Uint8Array.prototype)
    expect(signResult(id, fields)).toEqual(nobleSig)
    expect(verifyResult(id.publicKey, fields, nobleSig)).toBe(true)
    expect(verifyResult(id.publicKey, { ...fields, stepIndex: 4 }, nobleSig)).toBe(false)
  })
})
