import { generate, generateIdentity, type InferenceBackend, type PlanMessage } from '@butterfly/core'
import {
  createLocalPipeline,
  createNodeBackend,
  loadModel,
  nodeWrtc,
  startWorkerNode,
  type WorkerNode,
} from '@butterfly/node-worker'
import type { ServedModel } from '../src/api/completion-backend.js'
import type { Mesh } from '../src/mesh.js'
import type { SignalServer } from '../src/signal-server.js'

// Shared by the in-process mesh suites: real workers over WebRTC in this process, greedy
// generations, and the single-process reference they must match.

/** A worker node in this process, with a fresh identity, joined to mesh 'default'. */
export function startLocalWorker(
  server: SignalServer,
  name: string,
  backend: InferenceBackend = createNodeBackend(),
): Promise<WorkerNode> {
  return startWorkerNode(
    { serverUrl: server.url, mesh: 'default', token: '', name, memoryBytes: 2 ** 30, backendName: 'cpu' },
    { backend, wrtc: nodeWrtc(), identity: generateIdentity() },
  )
}

/** Greedy tokens of the model in one process: what every mesh run must give. */
export async function referenceTokens(
  modelDir: string,
  prompt: readonly number[],
  tokens: number,
): Promise<number[]> {
  const model = await loadModel(modelDir)
  const local = await createLocalPipeline(model, createNodeBackend(), { stages: 1 })
  try {
    const out: number[] = []
    for await (const t of generate(local, {
      promptIds: prompt,
      maxTokens: tokens,
      sampling: { temperature: 0 },
    })) {
      out.push(t.id)
    }
    return out
  } finally {
    await local.dispose()
    await model.close()
  }
}

/** Greedy tokens through the gateway; `onToken` runs after each (e.g. to kill a peer). */
export async function meshTokens(
  served: ServedModel,
  prompt: readonly number[],
  tokens: number,
  onToken?: (count: number) => Promise<void>,
): Promise<number[]> {
  const out: number[] = []
  const signal = new AbortController().signal
  for await (const t of served.generate(
    { promptIds: prompt, maxTokens: tokens, sampling: { temperature: 0 } },
    signal,
  )) {
    out.push(t.id)
    await onToken?.(out.length)
  }
  return out
}

/** Waits, event-driven, for a ready plan that satisfies `accept`. */
export async function readyPlan(mesh: Mesh, accept: (plan: PlanMessage) => boolean): Promise<PlanMessage> {
  for (;;) {
    const plan = await mesh.waitForReadyPlan(AbortSignal.timeout(60_000))
    if (accept(plan)) return plan
    await new Promise<void>((resolve) => mesh.once('plan', () => resolve()))
  }
}
