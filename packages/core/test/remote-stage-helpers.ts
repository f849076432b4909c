import { afterEach, expect } from 'vitest'
import type { StageSession, StageStepInput, StageStepOutput } from '../src/engine/inference-backend.js'
import { StageError } from '../src/errors.js'
import type { PeerIdentity } from '../src/identity/peer-identity.js'
import { type StepBatchSigner, type StepSigner, signResult } from '../src/identity/step-signature.js'
import { RemoteStage, type RemoteStageInit } from '../src/mesh/remote-stage.js'
import { createStageHost } from '../src/mesh/stage-host.js'
import { createMemoryTransport, MemoryNetwork } from '../src/transport/memory-transport.js'
import { MessageConnection } from '../src/transport/message-connection.js'
import type { Transport } from '../src/transport/transport.js'

// A stage host and a RemoteStage joined by the in-memory transport, for the RemoteStage suites.

export const MESH = 'default'
export const HIDDEN = 4

/** Doubles its input (middle stage) or returns a fixed top-k (last stage). */
export function fakeStage(isLast: boolean): StageSession {
  return {
    layerStart: 1,
    layerEnd: 2,
    isFirst: false,
    isLast,
    async step(_id: string, input: StageStepInput): Promise<StageStepOutput> {
      const topk = { values: Float32Array.of(2, 1), ids: Int32Array.of(7, 3), logSumExp: 2.5 }
      if (isLast && input.allRows === true) {
        // Row r: token 10 + r first, 3 second, so each position's argmax is distinguishable.
        const rows = input.seqLen
        const ids = Int32Array.from({ length: 2 * rows }, (_, i) => (i % 2 === 0 ? 10 + i / 2 : 3))
        const values = Float32Array.from({ length: 2 * rows }, (_, i) => (i % 2 === 0 ? 2 : 1))
        return { topk, rowTopk: { rows, k: 2, values, ids, logSumExp: new Float32Array(rows).fill(2.5) } }
      }
      if (isLast) return { topk }
      return { hidden: (input.hidden as Float32Array).map((v) => v * 2) }
    },
    async truncate() {},
    endGeneration() {},
    activeGenerations: 0,
    async dispose() {},
  }
}

export const signerFor =
  (identity: PeerIdentity, mesh = MESH): StepSigner =>
  (f) =>
    signResult(identity, { ...f, mesh })

const transports: Transport[] = []
afterEach(async () => {
  for (const t of transports.splice(0)) await t.close()
})

/**
 * A worker on an in-memory network and a coordinator connection to it. The worker answers
 * with a real stage host unless `peer` takes over its side of the connection.
 */
export async function connect(opts: {
  sign?: StepSigner
  /** Signs a batch of results (StageHostOptions.signBatch). */
  signBatch?: StepBatchSigner
  isLast?: boolean
  peer?: (conn: MessageConnection) => void
  /** The worker's stage, instead of fakeStage. */
  stage?: StageSession
}): Promise<MessageConnection> {
  const network = new MemoryNetwork()
  const worker = createMemoryTransport({ peerId: 'worker' }, { network })
  const coord = createMemoryTransport({ peerId: 'coord' }, { network })
  transports.push(worker, coord)
  const stage = opts.stage ?? fakeStage(opts.isLast ?? false)
  const host = createStageHost(stage, {
    ...(opts.sign ? { sign: opts.sign } : {}),
    ...(opts.signBatch ? { signBatch: opts.signBatch } : {}),
  })
  worker.onIncoming((_from, channel) => {
    const conn = new MessageConnection(channel)
    if (opts.peer) opts.peer(conn)
    else host.serve(conn)
    conn.onClose(() => host.close())
  })
  return new MessageConnection(await coord.dial('worker'))
}

export function remote(conn: MessageConnection, over: Partial<RemoteStageInit> = {}): RemoteStage {
  return new RemoteStage(
    {
      peerId: 'worker',
      layerStart: 1,
      layerEnd: 2,
      isFirst: false,
      isLast: false,
      hiddenSize: HIDDEN,
      stepTimeoutMs: 10_000,
      ...over,
    },
    conn,
  )
}

export const input = (startPos = 0): StageStepInput => ({
  hidden: Float32Array.of(1, 2, 3, 4),
  seqLen: 1,
  startPos,
})

export async function rejection(p: Promise<unknown>): Promise<StageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(StageError)
  return err as StageError
}
