import type { AdmissionCliOptions } from './admission-options.js'
import type { GatewayInit } from './api/attach-gateway.js'

/** The command line's options that configure the gateway (part of ServerCliOptions). */
export interface GatewayCliOptions extends AdmissionCliOptions {
  apiToken?: string
  stepTimeoutMs: number
  trustAfter: number
  verification: 'windowed' | 'every-step'
  verifyWindow: number
  slowClaimFactor: number
  slowClaimMinSteps: number
  wireDtype: 'fp32' | 'fp16'
  relay: 'chain' | 'coordinator'
}

/** The gateway's options from the command line's (`butterfly-server` flags and environment). */
export function gatewayFromCli(opts: GatewayCliOptions): GatewayInit {
  return {
    apiToken: opts.apiToken,
    maxConcurrent: opts.maxConcurrent,
    maxQueued: opts.maxQueued,
    maxQueuedPerKey: opts.maxQueuedPerKey,
    maxQueueWaitMs: opts.maxQueueWait * 1000,
    stepTimeoutMs: opts.stepTimeoutMs,
    reputation: { trustAfter: opts.trustAfter },
    verification: opts.verification,
    verifyWindow: opts.verifyWindow,
    slowClaim: { factor: opts.slowClaimFactor, minSteps: opts.slowClaimMinSteps },
    wireDtype: opts.wireDtype,
    relay: opts.relay,
  }
}
