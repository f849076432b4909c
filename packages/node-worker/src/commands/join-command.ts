import type { Int4Compute } from '@butterfly/core'
import {
  CliUsageError,
  createNodeBackend,
  type DeviceRequest,
  nodeWrtc,
  resolveDevice,
  startWorkerNode,
} from '@butterfly/node-platform'
import cliProgress from 'cli-progress'
import { sizeArg } from '../cli-args.js'
import { ServerLostError } from '../errors.js'
import { type StageCacheFlags, withStageCache } from './stage-cache-options.js'

export interface JoinOptions extends StageCacheFlags {
  /** Servers in the order tried; the worker fails over to the next when one goes away. */
  readonly server: readonly string[]
  /** Seconds to keep trying to rejoin after losing the server; 0 exits at once. */
  readonly reconnectTimeout: number
  readonly mesh: string
  readonly token: string
  readonly device: DeviceRequest
  readonly memory: number
  readonly name: string
  readonly weights: 'fp32' | 'fp16'
  /** Intra-op threads per stage session; onnxruntime's default is one per core. */
  readonly threads?: number
  /** Most generations one stage run batches. */
  readonly maxBatch?: number
  /** Groups a stage's decoding generations run in. */
  readonly microBatches?: number
  /** Prompt positions per prefill chunk between decode batches. */
  readonly prefillChunk?: number
  /** int4 models: how MatMulNBits multiply (default fp32; int8 joins as numeric class int8a). */
  readonly int4Compute?: Int4Compute
}

const STOP_DEADLINE_MS = 20_000

/** Parses sizes like "4GB", "512MiB" or a plain byte count. */
export const parseMemory = sizeArg('--memory', 1, '4GB or 512MB')

/** `--server`: one URL or a comma-separated list of them, tried in order. */
export function parseServerUrls(value: string): string[] {
  const urls = value.split(',').map((u) => u.trim())
  if (urls.length > 16) throw new CliUsageError(`--server takes at most 16 URLs, got ${urls.length}`)
  return [...new Set(urls.map(parseServerUrl))]
}

export function parseServerUrl(value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new CliUsageError(`--server must be an http(s) URL, got "${value}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliUsageError(`--server must be an http(s) URL, got "${value}"`)
  }
  return url.toString().replace(/\/$/, '')
}

/**
 * `butterfly-worker join`: registers with the server, benchmarks, loads the stage the plan
 * gives it and serves steps until SIGINT/SIGTERM, then finishes in-flight steps and leaves.
 */
export async function runJoin(opts: JoinOptions): Promise<void> {
  // A peer has one numeric class: rounded fp16 weights and int8 activations are two.
  if (opts.weights === 'fp16' && opts.int4Compute === 'int8') {
    throw new CliUsageError('--weights fp16 and --int4-compute int8 cannot be combined')
  }
  const device = await resolveDevice(opts.device)
  const log = (line: string) => process.stderr.write(`butterfly-worker: ${line}\n`)
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        { format: 'downloading layers [{bar}] {percentage}% {value}/{total} bytes', stream: process.stderr },
        cliProgress.Presets.shades_classic,
      )
    : undefined
  let barStarted = false
  const node = await startWorkerNode(
    {
      serverUrl: opts.server[0] as string,
      failoverUrls: opts.server.slice(1),
      reconnectForMs: opts.reconnectTimeout * 1000,
      mesh: opts.mesh,
      token: opts.token,
      name: opts.name,
      memoryBytes: opts.memory,
      backendName: device,
      weights: opts.weights,
      ...(opts.int4Compute === undefined ? {} : { int4Compute: opts.int4Compute }),
    },
    {
      backend: createNodeBackend({
        device,
        ...(opts.threads === undefined ? {} : { threads: opts.threads }),
        ...(opts.maxBatch === undefined ? {} : { maxBatch: opts.maxBatch }),
        ...(opts.prefillChunk === undefined ? {} : { prefillChunk: opts.prefillChunk }),
        ...(opts.microBatches === undefined ? {} : { microBatches: opts.microBatches }),
        ...(opts.int4Compute === undefined ? {} : { int4Compute: opts.int4Compute }),
        ...withStageCache(opts),
      }),
      wrtc: nodeWrtc(),
      log,
      onDownload: (done, total) => {
        if (!bar) return
        if (!barStarted) bar.start(total, 0)
        barStarted = true
        bar.update(done)
        if (done >= total) {
          bar.stop()
          barStarted = false
        }
      },
    },
  )
  const dropped = await new Promise<string | undefined>((resolve) => {
    const stop = (sig: string) => {
      log(`${sig}: finishing in-flight steps and leaving`)
      // A wedged peer connection must not keep the process alive forever.
      const deadline = setTimeout(() => {
        log('shutdown took too long; exiting')
        process.exit(1)
      }, STOP_DEADLINE_MS)
      deadline.unref()
      node.stop().then(
        () => resolve(undefined),
        () => resolve(undefined),
      )
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
    // Dropped by the server: nothing keeps the process alive, and nothing would ever serve again.
    node.disconnected.then(resolve)
  })
  if (dropped !== undefined) {
    await node.stop({ drainMs: 0 })
    throw new ServerLostError(`the server dropped this worker (${dropped}); restart it to rejoin`)
  }
  log(`left the mesh after serving ${node.stepsServed} steps`)
}
