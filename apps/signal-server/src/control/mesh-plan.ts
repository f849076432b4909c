import type { EventEmitter } from 'node:events'
import {
  ButterflyError,
  type ModelConfig,
  type PlanMessage,
  type PlanStage,
  stagePeers,
  type WireError,
} from '@butterfly/core'
import type { MeshEvents, Planner, WorkerInfo } from './mesh-member.js'

export type { Planner }

/** Stages for the workers, or why there are none (never throws). */
export function planStages(
  planner: Planner,
  config: ModelConfig,
  workers: readonly WorkerInfo[],
): { readonly stages: readonly PlanStage[]; readonly error: WireError | undefined } {
  if (workers.length === 0) return { stages: [], error: noWorkersError() }
  try {
    const stages = planner(config, workers)
    return { stages, error: stages.length === 0 ? noWorkersError() : undefined }
  } catch (err) {
    return { stages: [], error: toWire(err) }
  }
}

/** The plan as sent to members: a copy of the stages, `excluded` only when not empty. */
export function planMessage(
  version: number,
  mesh: { readonly name: string; readonly modelPath: string; readonly modelId: string },
  stages: readonly PlanStage[],
  excluded: readonly string[],
): PlanMessage {
  const copy = stages.map((s) =>
    s.replicas === undefined || s.replicas.length === 0
      ? { start: s.start, end: s.end, peerId: s.peerId }
      : { start: s.start, end: s.end, peerId: s.peerId, replicas: [...s.replicas] },
  )
  return {
    version,
    mesh: mesh.name,
    modelPath: mesh.modelPath,
    modelId: mesh.modelId,
    stages: copy,
    ...(excluded.length === 0 ? {} : { excluded: [...excluded] }),
  }
}

/** Same stages, same excluded peers and the same reason for having none: only the version may differ. */
export function samePlan(
  a: PlanMessage,
  aError: WireError | undefined,
  b: PlanMessage,
  bError: WireError | undefined,
): boolean {
  const stage = (s: PlanStage) => `${s.start}:${s.end}:${s.peerId}:${(s.replicas ?? []).join(',')}`
  return (
    a.stages.map(stage).join(';') === b.stages.map(stage).join(';') &&
    (a.excluded ?? []).join(',') === (b.excluded ?? []).join(',') &&
    aError?.code === bError?.code &&
    aError?.message === bError?.message
  )
}

/** Which peers of one plan have loaded their stage. */
export class PlanReadiness {
  private readonly peers = new Set<string>()

  /** Starts over for a new plan. */
  reset(): void {
    this.peers.clear()
  }

  /** Marks a peer ready; true when this made every stage of `plan` ready. */
  mark(plan: PlanMessage, peerId: string): boolean {
    const wasReady = this.isReady(plan)
    this.peers.add(peerId)
    return !wasReady && this.isReady(plan)
  }

  /** A peer's new session has not loaded its stage yet (it says so again with stageReady). */
  unmark(peerId: string): void {
    this.peers.delete(peerId)
  }

  /** Every stage of `plan` is loaded (false while the plan has no stages). */
  isReady(plan: PlanMessage): boolean {
    const { stages } = plan
    return stages.length > 0 && stages.every((s) => stagePeers(s).every((p) => this.peers.has(p)))
  }
}

export function noWorkersError(): WireError {
  return { name: 'PlacementError', code: 'ERR_PLACEMENT_NO_CAPACITY', message: 'no worker peers have joined' }
}

function toWire(err: unknown): WireError {
  if (err instanceof ButterflyError) return err.toJSON()
  return { name: 'Error', code: 'ERR_PLACEMENT', message: err instanceof Error ? err.message : String(err) }
}

export function closedError(mesh: string): ButterflyError {
  return new ButterflyError('ERR_MESH_CLOSED', `mesh "${mesh}" is closed`)
}

/** The next plan `mesh` reports ready; rejects when it closes first or `signal` aborts. */
/**
 * Aborts once `mesh` issues a plan other than `version` (work for that plan is then wasted, such as
 * a 30 s dial to a peer that has gone); `dispose` stops watching.
 */
export function supersededSignal(
  mesh: EventEmitter<MeshEvents>,
  version: number,
): { readonly signal: AbortSignal; dispose(): void } {
  const ctl = new AbortController()
  const onPlan = (plan: PlanMessage) => {
    if (plan.version !== version) ctl.abort(new Error(`plan ${version} was superseded by ${plan.version}`))
  }
  mesh.on('plan', onPlan)
  return { signal: ctl.signal, dispose: () => mesh.off('plan', onPlan) }
}

export function nextReadyPlan(
  mesh: EventEmitter<MeshEvents>,
  name: string,
  signal?: AbortSignal,
): Promise<PlanMessage> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const cleanup = () => {
      mesh.off('ready', onReady)
      mesh.off('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onReady = (plan: PlanMessage) => {
      cleanup()
      resolve(plan)
    }
    const onClose = () => {
      cleanup()
      reject(closedError(name))
    }
    const onAbort = () => {
      cleanup()
      reject(signal?.reason)
    }
    mesh.on('ready', onReady)
    mesh.on('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
