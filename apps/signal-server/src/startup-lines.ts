import { redactRedisUrl } from './control/cluster.js'
import type { SignalServer } from './http/signal-server.js'

/** What `butterfly-server` prints once it listens: where, which model, and what is switched on. */
export interface StartupOptions {
  readonly mesh: string
  readonly meshToken?: string | undefined
  readonly requirePeerTokens: boolean
  readonly turnUrl?: readonly string[] | undefined
  readonly wireDtype: 'fp32' | 'fp16'
  readonly relay: 'chain' | 'coordinator'
  readonly redis?: string | undefined
  readonly clusterSecret?: string | undefined
}

export function startupLines(opts: StartupOptions, server: SignalServer, modelDir: string): string {
  const mesh = server.meshes.get(opts.mesh)
  const lines = [
    `butterfly-server listening on ${server.url}`,
    `  mesh "${opts.mesh}": model ${mesh?.modelId} from ${modelDir}${opts.meshToken ? ' (token required)' : ''}`,
  ]
  if (opts.requirePeerTokens) lines.push('  per-peer join tokens required')
  // The URLs only: secrets (the TURN secret, a Redis password) are never printed.
  if (opts.turnUrl) lines.push(`  TURN credentials minted for ${opts.turnUrl.join(', ')}`)
  if (opts.wireDtype === 'fp16') lines.push('  hidden states on the wire: fp16')
  if (opts.relay === 'chain') lines.push('  hidden states chained worker to worker')
  if (opts.redis !== undefined && server.cluster !== undefined) {
    const sealed = opts.clusterSecret === undefined ? '' : ', sealed with the cluster secret'
    lines.push(`  cluster: server ${server.cluster.serverId} on ${redactRedisUrl(opts.redis)}${sealed}`)
  }
  return `${lines.map((l) => `${l}\n`).join('')}`
}
