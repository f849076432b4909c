import { IdentityError } from '../errors.js'
import { fromBase64url, toBase64url } from './base64url.js'
import { type PeerIdentity, signBytes, verifyBytes } from './peer-identity.js'

/**
 * Proof of key possession for a join: a signature over the mesh name and the nonce the server
 * sent this socket in its `hello`. The nonce is fresh per connection, so a proof captured from
 * one socket is worthless on any other; the mesh name keeps it from joining a different mesh.
 *
 *   u8 17, 'butterfly-join-v1', u8 n, mesh (UTF-8), u8 n, nonce (UTF-8)
 */

export const JOIN_PROOF_TAG = 'butterfly-join-v1'

const encoder = new TextEncoder()

export function joinProofBytes(mesh: string, nonce: string): Uint8Array {
  const parts = [encoder.encode(JOIN_PROOF_TAG), field(mesh, 'mesh'), field(nonce, 'nonce')]
  const out = new Uint8Array(parts.reduce((n, p) => n + 1 + p.length, 0))
  let at = 0
  for (const p of parts) {
    out[at++] = p.length
    out.set(p, at)
    at += p.length
  }
  return out
}

/** The `proof` a join request carries, base64url. */
export function signJoinProof(identity: PeerIdentity, mesh: string, nonce: string): string {
  return toBase64url(signBytes(identity, joinProofBytes(mesh, nonce)))
}

/** Checks a join proof (base64url or raw bytes); false for anything malformed, never throws. */
export function verifyJoinProof(
  publicKey: Uint8Array,
  mesh: string,
  nonce: string,
  proof: string | Uint8Array,
): boolean {
  const signature = typeof proof === 'string' ? fromBase64url(proof) : proof
  if (signature === undefined) return false
  let message: Uint8Array
  try {
    message = joinProofBytes(mesh, nonce)
  } catch {
    return false
  }
  return verifyBytes(publicKey, message, signature)
}

function field(v: unknown, name: string): Uint8Array {
  if (typeof v !== 'string')
    throw new IdentityError('ERR_IDENTITY_INPUT', `join proof ${name} must be a string`)
  const bytes = encoder.encode(v)
  if (bytes.length < 1 || bytes.length > 255) {
    throw new IdentityError('ERR_IDENTITY_INPUT', `join proof ${name} must be 1..255 UTF-8 bytes`)
  }
  return bytes
}
