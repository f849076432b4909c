import { randomBytes } from 'node:crypto'

/**
 * Generation ids the gateway gives peers: 'g' and 16 random hex digits, the same for generations
 * it serves and for join-time calibration, so no step's id tells a peer it is being tested.
 */
export function newGenerationId(): string {
  return `g${randomBytes(8).toString('hex')}`
}
