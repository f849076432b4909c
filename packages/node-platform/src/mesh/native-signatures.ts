import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { registerSignatureBackend, type SignatureBackend } from '@butterfly/core'

// DER prefixes that wrap a raw 32-byte Ed25519 key as PKCS#8 / SPKI (RFC 8410).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/**
 * Ed25519 through node:crypto (OpenSSL): about 20x faster than the pure-JS default, which
 * matters because every pipeline step is signed by its worker and checked by the coordinator.
 * Key objects are cached per key. The SHA-256 of each step's output, which the signature
 * covers, is node:crypto's too (about 60 µs less per signature and per check at hidden 768).
 */
export function nodeSignatureBackend(): SignatureBackend {
  const privateKeys = new Map<string, KeyObject>()
  const publicKeys = new Map<string, KeyObject>()
  const cached = (map: Map<string, KeyObject>, raw: Uint8Array, make: () => KeyObject) => {
    const id = Buffer.from(raw).toString('hex')
    let k = map.get(id)
    if (k === undefined) {
      if (map.size > 4096) map.clear()
      k = make()
      map.set(id, k)
    }
    return k
  }
  return {
    name: 'node:crypto',
    sign: (secretKey, message) => {
      const key = cached(privateKeys, secretKey, () =>
        createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: 'der', type: 'pkcs8' }),
      )
      return new Uint8Array(sign(null, message, key))
    },
    verify: (publicKey, message, signature) => {
      const key = cached(publicKeys, publicKey, () =>
        createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' }),
      )
      return verify(null, message, key, signature)
    },
    createSha256: () => {
      const h = createHash('sha256')
      return {
        update: (data: Uint8Array) => h.update(data),
        // A plain Uint8Array, as the pure-JS hasher gives, not a Buffer.
        digest: () => {
          const d = h.digest()
          return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
        },
      }
    },
  }
}

/** Registers node:crypto's Ed25519 with core (idempotent). */
export function useNativeSignatures(): void {
  registerSignatureBackend(nodeSignatureBackend())
}
