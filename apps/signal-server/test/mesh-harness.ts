import {
  fromFloat32,
  generate,
  generateIdentity,
  type InferenceBackend,
  type PlanMessage,
  toFloat32,
} from '@butterfly/core'
import {
  createNodeBackend,
  loadModel,
  nodeWrtc,
  startWorkerNode,
  type WorkerNode,
} from '@butterfly/node-platform'
import type { Mesh } from '../src/control/mesh.js'
import type { ServedModel } from '../src/gateway/served-model.js'
import type { SignalServer } from '../src/http/signal-server.js'

// Shared by the in-process mesh suites: real workers over WebRTC in this process, greedy
// generations, and the single-process reference they must match.

/** A worker node in this process, with a fresh identity, joined to mesh 'default'. */
export function startLocalWorker(
  server: SignalServer,
  name: string,
  backend: InferenceBackend = createNodeBackend(),
  /** wrtc: an RTCPeerConnection implementation other than node-datachannel's (fault injection). */
  opts: { weights?: 'fp32' | 'fp16'; memoryBytes?: number; wrtc?: unknown; int4Compute?: 'int8' } = {},
): Promise<WorkerNode> {
  return startWorkerNode(
    {
      serverUrl: server.url,
      mesh: 'default',
      token: '',
      name,
      memoryBytes: opts.memoryBytes ?? 2 ** 30,
      backendName: 'cpu',
      weights: opts.weights ?? 'fp32',
      ...(opts.int4Compute ? { int4Compute: opts.int4Compute } : {}),
    },
    { backend, wrtc: opts.wrtc ?? nodeWrtc(), identity: generateIdentity() },
  )
}

/**
 * Greedy tokens of a pipeline with the plan's layer ranges, each stage's weights rounded to fp16
 * where `fp16(stageIndex)` says so: the exact answer of a mesh whose stages are served by
 * replicas of those classes.
 */
export async function classReferenceTokens(
  modelDir: string,
  /** Default: the whole model as one stage. */
  ranges: ReadonlyArray<{ start: number; end: number }> | undefined,
  fp16: (stage: number) => boolean,
  prompt: readonly number[],
  tokens: number,
  /** Default: onnxruntime-node on the CPU (e.g. `createNodeBackend({ int4Compute: 'int8' })`). */
  backend: InferenceBackend = createNodeBackend(),
): Promise<number[]> {
  const model = await loadModel(modelDir)
  const stages = await Promise.all(
    (ranges ?? [{ start: 0, end: model.config.numLayers }]).map((r, i) =>
      backend.createStage(
        { config: model.config, layerStart: r.start, layerEnd: r.end },
        async (name, shape) => {
          const t = await model.weights(name, shape)
          return fp16(i) && t.dtype === 'F32'
            ? { ...t, dtype: 'F16', data: fromFloat32(toFloat32(t), 'F16') }
            : t
        },
      ),
    ),
  )
  try {
    const out: number[] = []
    const pipeline = { stages, maxContext: model.config.maxContext }
    for await (const t of generate(pipeline, {
      promptIds: prompt,
      maxTokens: tokens,
      sampling: { temperature: 0 },
    })) {
      out.push(t.id)
    }
    return out
  } finally {
    await Promise.all(stages.map((s) => s.dispose()))
    await model.close()
  }
}

/** Greedy tokens of the model in one process, one fp32 stage: what every fp32 mesh run must give. */
export async function referenceTokens(
  modelDir: string,
  prompt: readonly number[],
  tokens: number,
): Promise<number[]> {
  return classReferenceTokens(modelDir, undefined, () => false, prompt, tokens)
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
