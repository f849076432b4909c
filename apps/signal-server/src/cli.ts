import {
  cacheDir,
  describeSpec,
  downloadOptions,
  EMBEDDED_MODEL_DIR,
  isRemoteSpec,
  parseRemoteSpec,
  resolveModelDir,
  runCliMain,
} from '@butterfly/node-platform'
import { Command, Option } from 'commander'
import { admissionOptions } from './admission-options.js'
import { intArg, meshArg, numberArg, pathArg, tokenArg } from './cli-args.js'
import {
  type ClusterCliOptions,
  clusterFromCli,
  clusterSecretOption,
  redisOption,
} from './cluster-options.js'
import { DEFAULT_JOIN_RATE, DEFAULT_MAX_PEERS_PER_ADDRESS } from './control/join-admission.js'
import { DEFAULT_SERVED_CONTEXT } from './control/mesh-registry.js'
import { SLOW_CLAIM_DEFAULTS } from './gateway/claim-check.js'
import { type GatewayCliOptions, gatewayFromCli } from './gateway-cli.js'
import type { SignalServer } from './http/signal-server.js'
import { type IceCliOptions, iceOptions, turnFromCli } from './ice-options.js'
import { startupLines } from './startup-lines.js'
import { exitAfter, stopped } from './stopped.js'
import { tokensCommand } from './tokens-cli.js'

export interface ServerCliOptions extends GatewayCliOptions, IceCliOptions, ClusterCliOptions {
  host: string
  port: number
  model: string
  hfEndpoint?: string
  mesh: string
  meshToken?: string
  heartbeatMs: number
  planStrategy: 'throughput' | 'memory' | 'uniform'
  replicas: number
  context: number
  joinTokenFile?: string
  adminToken?: string
  requirePeerTokens: boolean
  maxPeersPerAddress: number
  joinRate: number
}

export interface MainOptions {
  out?: NodeJS.WritableStream
  /** Stops the server; by default SIGINT or SIGTERM does. */
  signal?: AbortSignal
  /** Called once the server listens (tests reach the server through it). */
  onListening?: (server: SignalServer) => void
  /** The program (bin/butterfly-server.js) only: once stopped, exit this long after at the latest (exitAfter). */
  exitAfterStopMs?: number
}

/** Builds the `butterfly-server` command; `run` receives the parsed options. */
export function buildCli(
  run: (options: ServerCliOptions) => Promise<void>,
  out: NodeJS.WritableStream = process.stdout,
): Command {
  const admission = admissionOptions()
  const ice = iceOptions()
  return (
    new Command('butterfly-server')
      .description(
        'Butterfly control plane: peers join a mesh over socket.io, the server plans which layers each\n' +
          'one runs, relays their WebRTC signaling, and serves the model files, /health and /metrics.',
      )
      .exitOverride()
      // Options before `tokens` are the server's, after it the subcommand's (both have --mesh).
      .enablePositionalOptions()
      .showHelpAfterError(false)
      .configureOutput({ writeErr: () => undefined, writeOut: (s) => out.write(s) })
      .addOption(
        new Option('--host <host>', 'interface to listen on (0.0.0.0 for every interface)')
          .env('BUTTERFLY_HOST')
          .default('127.0.0.1'),
      )
      .addOption(
        new Option('--port <port>', 'TCP port; 0 picks a free one')
          .env('BUTTERFLY_PORT')
          .argParser(intArg('--port', 0, 65_535))
          .default(8080),
      )
      .addOption(
        new Option(
          '--model <dir|synthetic:NAME|hf:ORG/REPO|URL>',
          'model directory; synthetic:NAME[:fp16|:int4] (tiny, small, 10m, 100m, 1b); hf:ORG/REPO[@REVISION] or an https:// directory URL, downloaded once into the cache (workers then fetch their tensors from this server)',
        )
          .env('BUTTERFLY_MODEL')
          .default(EMBEDDED_MODEL_DIR, 'models/shakespeare, the embedded model'),
      )
      .addOption(
        new Option('--hf-endpoint <url>', 'Hugging Face Hub for hf: models (HF_TOKEN, if set, is sent to it)')
          .env('HF_ENDPOINT')
          .default(undefined, 'https://huggingface.co'),
      )
      .addOption(
        new Option('--mesh <name>', 'name of the mesh peers join to run this model')
          .env('BUTTERFLY_MESH')
          .argParser(meshArg)
          .default('default'),
      )
      .addOption(
        new Option('--mesh-token <token>', 'secret peers must present to join the mesh (default: open mesh)')
          .env('BUTTERFLY_MESH_TOKEN')
          .argParser(tokenArg('--mesh-token')),
      )
      .addOption(
        new Option('--api-token <token>', 'bearer token API clients must send (default: no auth)')
          .env('BUTTERFLY_API_TOKEN')
          .argParser(tokenArg('--api-token')),
      )
      .addOption(ice.iceServers)
      .addOption(ice.turnSecret)
      .addOption(ice.turnUrl)
      .addOption(ice.turnTtl)
      .addOption(ice.iceTransportPolicy)
      .addOption(redisOption())
      .addOption(clusterSecretOption())
      .addOption(
        new Option('--heartbeat-ms <n>', 'peer heartbeat interval; a peer silent for 3 intervals is dropped')
          .env('BUTTERFLY_HEARTBEAT_MS')
          .argParser(intArg('--heartbeat-ms', 100, 3_600_000))
          .default(5000),
      )
      .addOption(
        new Option('--plan-strategy <strategy>', 'placement strategy tried first (others are fallbacks)')
          .env('BUTTERFLY_PLAN_STRATEGY')
          .choices(['throughput', 'memory', 'uniform'])
          .default('throughput'),
      )
      .addOption(
        new Option(
          '--replicas <r>',
          'peers per stage; with 3 or more the gateway votes among them (f = (r-1)/2 liars)',
        )
          .env('BUTTERFLY_REPLICAS')
          .argParser(intArg('--replicas', 1, 16))
          .default(1),
      )
      .addOption(admission.maxConcurrent)
      .addOption(admission.maxQueued)
      .addOption(admission.maxQueuedPerKey)
      .addOption(admission.maxQueueWait)
      .addOption(
        new Option(
          '--context <tokens>',
          "tokens of context served per generation (prompt + completion), at most the model's; the planner reserves each stage's KV cache for this many",
        )
          .env('BUTTERFLY_CONTEXT')
          .argParser(intArg('--context', 16, 1_048_576))
          .default(DEFAULT_SERVED_CONTEXT),
      )
      .addOption(
        new Option(
          '--step-timeout-ms <n>',
          'a replica that misses this step deadline is replaced and flagged',
        )
          .env('BUTTERFLY_STEP_TIMEOUT_MS')
          .argParser(intArg('--step-timeout-ms', 100, 3_600_000))
          .default(60_000),
      )
      .addOption(
        new Option(
          '--trust-after <n>',
          'agreements in a row after which a peer may lead decode steps, confirmed afterwards in windows',
        )
          .env('BUTTERFLY_TRUST_AFTER')
          .argParser(intArg('--trust-after', 1, 1_000_000_000))
          .default(20),
      )
      .addOption(
        new Option(
          '--verification <mode>',
          'replicated stages: windowed (a trusted leader runs ahead, f replicas confirm each window before its tokens are sent) or every-step (2f+1 vote on every step)',
        )
          .env('BUTTERFLY_VERIFICATION')
          .choices(['windowed', 'every-step'])
          .default('windowed'),
      )
      .addOption(
        new Option(
          '--verify-window <positions>',
          'windowed verification: unconfirmed positions after which replicas check them (latency of each token vs throughput)',
        )
          .env('BUTTERFLY_VERIFY_WINDOW')
          .argParser(intArg('--verify-window', 1, 512))
          .default(8),
      )
      .addOption(
        new Option(
          '--join-token-file <path>',
          'per-peer join tokens: a JSON file read at start, rewritten on change',
        )
          .env('BUTTERFLY_JOIN_TOKEN_FILE')
          .argParser(pathArg('--join-token-file')),
      )
      .addOption(
        new Option(
          '--admin-token <token>',
          'bearer token of the /admin API (issue, list, revoke join tokens; default: no /admin)',
        )
          .env('BUTTERFLY_ADMIN_TOKEN')
          .argParser(tokenArg('--admin-token')),
      )
      .addOption(
        new Option(
          '--require-peer-tokens',
          'the shared mesh token alone admits no worker: each needs its own join token',
        ).default(false),
      )
      .addOption(
        new Option('--max-peers-per-address <n>', 'live peers allowed from one source address')
          .env('BUTTERFLY_MAX_PEERS_PER_ADDRESS')
          .argParser(intArg('--max-peers-per-address', 1, 1_000_000))
          .default(DEFAULT_MAX_PEERS_PER_ADDRESS),
      )
      .addOption(
        new Option(
          '--join-rate <n>',
          'join attempts per minute allowed from one source address (a token bucket)',
        )
          .env('BUTTERFLY_JOIN_RATE')
          .argParser(intArg('--join-rate', 1, 1_000_000))
          .default(DEFAULT_JOIN_RATE),
      )
      .addOption(
        new Option(
          '--slow-claim-factor <x>',
          'a peer whose steps run this many times slower than it claimed is excluded',
        )
          .env('BUTTERFLY_SLOW_CLAIM_FACTOR')
          .argParser(numberArg('--slow-claim-factor', 1, 1_000_000))
          .default(SLOW_CLAIM_DEFAULTS.factor),
      )
      .addOption(
        new Option('--slow-claim-min-steps <n>', 'single-token steps measured before a claim is judged')
          .env('BUTTERFLY_SLOW_CLAIM_MIN_STEPS')
          .argParser(intArg('--slow-claim-min-steps', 1, 1_000_000))
          .default(SLOW_CLAIM_DEFAULTS.minSteps),
      )
      .addOption(
        new Option(
          '--wire-dtype <dtype>',
          'hidden states between stages: fp32, or fp16 for half the bytes (every worker must speak it)',
        )
          .env('BUTTERFLY_WIRE_DTYPE')
          .choices(['fp32', 'fp16'])
          .default('fp32'),
      )
      .addOption(
        new Option(
          '--relay <how>',
          'hidden states in plans without replicas: chain (worker to worker) or coordinator (through this server)',
        )
          .env('BUTTERFLY_RELAY')
          .choices(['chain', 'coordinator'])
          .default('coordinator'),
      )
      .addCommand(tokensCommand(out))
      .action(async (opts: ServerCliOptions) => {
        turnFromCli(opts) // a bad combination answers before the model loads
        clusterFromCli(opts)
        await run(opts)
      })
  )
}

/** Runs the CLI; user errors print `butterfly-server: error [CODE]: message` with no stack. */
export async function main(argv: readonly string[], options: MainOptions = {}): Promise<number> {
  const out = options.out ?? process.stdout
  const program = buildCli((opts) => serve(opts, out, options), out)
  return runCliMain(() => program.parseAsync([...argv], { from: 'user' }), {
    name: 'butterfly-server',
    systemErrors: true,
  })
}

async function serve(
  opts: ServerCliOptions,
  out: NodeJS.WritableStream,
  options: MainOptions,
): Promise<void> {
  // Loaded here, not at the top, so --help and usage errors answer without loading the server.
  const { createSignalServer } = await import('./http/signal-server.js')
  const modelDir = await resolveModelDir(
    opts.model,
    cacheDir(),
    downloadOptions(opts.hfEndpoint, options.signal, 'butterfly-server'),
  )
  // A downloaded model is known by its repository (or URL), not by its cache directory's name.
  const modelId = isRemoteSpec(opts.model) ? describeSpec(parseRemoteSpec(opts.model)) : undefined
  const server = await createSignalServer({
    host: opts.host,
    port: opts.port,
    meshes: [{ name: opts.mesh, modelDir, meshToken: opts.meshToken, modelId }],
    apiToken: opts.apiToken,
    joinTokenFile: opts.joinTokenFile,
    adminToken: opts.adminToken,
    requirePeerTokens: opts.requirePeerTokens,
    maxPeersPerAddress: opts.maxPeersPerAddress,
    joinRate: opts.joinRate,
    iceServers: opts.iceServers,
    turn: turnFromCli(opts),
    iceTransportPolicy: opts.iceTransportPolicy,
    heartbeatMs: opts.heartbeatMs,
    heartbeatTimeoutMs: 3 * opts.heartbeatMs,
    planOptions: { strategy: opts.planStrategy },
    maxContext: opts.context,
    replicas: opts.replicas,
    redis: clusterFromCli(opts),
    logger: { level: 'warn' },
    extend: async (parts) => {
      const { attachGateway } = await import('./api/attach-gateway.js')
      const { nodeWrtc } = await import('@butterfly/node-platform')
      await attachGateway(parts, gatewayFromCli(opts), {
        wrtc: nodeWrtc(),
        log: (line) => process.stderr.write(`butterfly-server: ${line}\n`),
      })
    },
  })
  out.write(startupLines(opts, server, modelDir))
  options.onListening?.(server)
  await stopped(options.signal)
  exitAfter(options.exitAfterStopMs)
  await server.close()
}
