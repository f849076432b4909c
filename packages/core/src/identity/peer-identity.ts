import * as ed from '@noble/ed25519'
import { sha256, sha512 } from '@noble/hashes/sha2.js'
import { IdentityError } from '../errors.js'
import { toBase64url } from './base64url.js'

// noble's sync API needs a SHA-512 plugged in; @noble/hashes is pure JS, so this stays isomorphic.
ed.hashes.sha512 = sha512

export const SECRET_KEY_BYTES = 32
export const PUBLIC_KEY_BYTES = 32
export const SIGNATURE_BYTES = 64
/** 'k' + 22 base64url characters: 132 bits of the key's SHA-256. */
export const PEER_ID_LENGTH = 23

/**
 * A peer's long-lived Ed25519 identity. The peer id is derived from the public key, so a peer
 * keeps its id across restarts and nobody can claim an id without the matching secret key.
 */
export interface PeerIdentity {
  /** Ed25519 seed (RFC 8032 private key), 32 bytes. Never leaves the peer. */
  readonly secretKey: Uint8Array
  readonly publicKey: Uint8Array
  readonly peerId: string
}

export function generateIdentity(): PeerIdentity {
  return identityFromSecret(ed.utils.randomSecretKey())
}

/** Rebuilds an identity from its 32-byte secret key (the bytes are copied). */
export function identityFromSecret(secretKey: Uint8Array): PeerIdentity {
  checkBytes(secretKey, SECRET_KEY_BYTES, 'secret key')
  const secret = Uint8Array.from(secretKey)
  const publicKey = ed.getPublicKey(secret)
  return { secretKey: secret, publicKey, peerId: peerIdFromPublicKey(publicKey) }
}

/** A stable, url-safe peer id for a public key: 'k' + base64url(sha256(key)) cut to 22 characters. */
export function peerIdFromPublicKey(publicKey: Uint8Array): string {
  checkBytes(publicKey, PUBLIC_KEY_BYTES, 'public key')
  return `k${toBase64url(sha256(publicKey)).slice(0, PEER_ID_LENGTH - 1)}`
}

/**
 * Raw Ed25519 operations. The default is @noble/ed25519 (pure JS, runs anywhere, ~1 ms to sign
 * and ~2 ms to verify here); an environment with native Ed25519 registers a faster one
 * (node-worker registers node:crypto's), as onnxruntime backends register into their API.
 */
export interface SignatureBackend {
  readonly name: string
  sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array
  /** Strict RFC 8032; false for anything malformed. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean
  /**
   * A native SHA-256, for the digest every step signature covers (step-signature.ts); without
   * one, @noble/hashes' pure-JS SHA-256 (about 60 µs for a 768-wide hidden state, ten times
   * node:crypto's). Must compute plain SHA-256: the digest is part of what peers sign.
   */
  createSha256?(): Sha256Hasher
}

/** An incremental SHA-256, as @noble/hashes and node:crypto both give one. */
export interface Sha256Hasher {
  update(data: Uint8Array): unknown
  digest(): Uint8Array
}

const nobleBackend: SignatureBackend = {
  name: 'noble',
  sign: (secretKey, message) => ed.sign(message, secretKey),
  verify: (publicKey, message, signature) => ed.verify(signature, message, publicKey, { zip215: false }),
}

let backend: SignatureBackend = nobleBackend

/** Replaces the Ed25519 implementation for this process (undefined restores the default). */
export function registerSignatureBackend(next: SignatureBackend | undefined): void {
  backend = next ?? nobleBackend
}

export function signatureBackendName(): string {
  return backend.name
}

/** A SHA-256 hasher from the registered backend, or @noble/hashes' when it has none. */
export function createSha256(): Sha256Hasher {
  return backend.createSha256?.() ?? sha256.create()
}

/** Signs `message` (already domain-separated by the caller) with the identity's secret key. */
export function signBytes(identity: PeerIdentity, message: Uint8Array): Uint8Array {
  checkBytes(identity?.secretKey, SECRET_KEY_BYTES, 'secret key')
  return backend.sign(identity.secretKey, message)
}

/**
 * Strict RFC 8032 verification (no ZIP-215 leniency), so a signature binds one key to one
 * message and votes stay attributable. Malformed keys or signatures verify false, never throw.
 */
export function verifyBytes(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!isBytes(publicKey, PUBLIC_KEY_BYTES) || !isBytes(signature, SIGNATURE_BYTES)) return false
  if (!(message instanceof Uint8Array)) return false
  try {
    return backend.verify(publicKey, message, signature)
  } catch {
    return false
  }
}

export function isBytes(v: unknown, length: number): v is Uint8Array {
  return v instanceof Uint8Array && v.length === length
}

function checkBytes(v: unknown, length: number, what: string): asserts v is Uint8Array {
  if (!isBytes(v, length)) {
    const got = v instanceof Uint8Array ? `${v.length} bytes` : typeof v
    throw new IdentityError('ERR_IDENTITY_KEY', `${what} must be ${length} bytes, got ${got}`)
  }
}
