import type { ChatTemplate, HiddenDtype, ReputationOptions, Tokenizer } from '@butterfly/core'
import type { Mesh } from '../control/mesh.js'
import type { ServerMetrics } from '../control/server-metrics.js'
import type { IceFor } from '../control/turn-credentials.js'
import { ADMISSION_DEFAULTS, Admission } from './admission.js'
import type { SlowClaimOptions } from './claim-check.js'

// What a MeshGateway is built from (mesh-gateway.ts): its limits and the components it uses.

export interface MeshGatewayInit {
  /** A step with no answer after this long fails the generation (503). */
  readonly stepTimeoutMs?: number
  /** How long a request waits for a plan that is still loading before 503. */
  readonly planWaitMs?: number
  /** Admission's limits (AdmissionInit); each defaults to ADMISSION_DEFAULTS. */
  readonly maxConcurrent?: number
  readonly maxQueued?: number
  readonly maxQueuedPerKey?: number
  readonly maxQueueWaitMs?: number
  /** Flagging and trust (trustAfter, ...); flagAfter defaults to 1 here, core's defaults otherwise. */
  readonly reputation?: ReputationOptions
  /** Replicated stages: 'windowed' (default) or 'every-step' (see ReplicatedStageInit). */
  readonly verification?: 'windowed' | 'every-step'
  /** Unconfirmed positions after which a window check runs; default 8. */
  readonly verifyWindow?: number
  /** The check of claimed throughput against measured steps (factor, minSteps, slackMs). */
  readonly slowClaim?: SlowClaimOptions
  /** Hidden states between stages: fp32 (default, what every peer speaks) or fp16 (half the bytes). */
  readonly wireDtype?: HiddenDtype
  /**
   * How hidden states travel in a plan without replicas: 'coordinator' (default) back through the
   * coordinator after every stage; 'chain' worker to worker, only the last stage answering the
   * coordinator. Plans with replicas always go through the coordinator, which votes.
   */
  readonly relay?: 'chain' | 'coordinator'
}

export interface MeshGatewayComponents {
  readonly mesh: Mesh
  readonly tokenizer: Tokenizer
  readonly chatTemplate?: ChatTemplate | undefined
  readonly stopTokenIds?: readonly number[] | undefined
  /** RTCPeerConnection implementation for Node. */
  readonly wrtc: unknown
  /** The gateway peer's ICE servers and policy, asked anew per connection (TURN credentials expire). */
  readonly iceFor?: IceFor
  readonly metrics?: ServerMetrics
  readonly log?: (line: string) => void
}

/** The gateway's admission: the init's limits over ADMISSION_DEFAULTS, counts exported as metrics. */
export function meshAdmission(init: MeshGatewayInit, components: MeshGatewayComponents): Admission {
  const d = ADMISSION_DEFAULTS
  const { mesh, metrics } = components
  return new Admission(
    {
      maxConcurrent: init.maxConcurrent ?? d.maxConcurrent,
      maxQueued: init.maxQueued ?? d.maxQueued,
      maxQueuedPerKey: init.maxQueuedPerKey ?? d.maxQueuedPerKey,
      maxQueueWaitMs: init.maxQueueWaitMs ?? d.maxQueueWaitMs,
    },
    {
      onChange: (running, queued) => {
        metrics?.generationsRunning.set({ mesh: mesh.name }, running)
        metrics?.generationsQueued.set({ mesh: mesh.name }, queued)
      },
    },
  )
}
