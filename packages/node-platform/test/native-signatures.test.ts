import { generateIdentity, registerSignatureBackend, signBytes, verifyBytes } from '@butterfly/core'
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
})
