import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeTcpPort } from '@butterfly/node-platform'
import { type Proc, spawnWatched } from './processes.js'

/** redis-server's binary: BUTTERFLY_REDIS_SERVER, else the distribution's (scripts/ensure-apt-packages.mjs installs it). */
export const REDIS_SERVER_BIN = process.env.BUTTERFLY_REDIS_SERVER ?? '/usr/bin/redis-server'

/**
 * redis-server arguments for the ACL user docs/deploy.md recommends: `butterfly` with `password`,
 * Butterfly's keys and channels only, nothing @dangerous, and the default user off. Connect with
 * `aclUrl(redis.url, password)`.
 */
export function butterflyAclArgs(password: string): string[] {
  const user = ['butterfly', 'on', `>${password}`, '~butterfly:*', '&butterfly:*', '+@all', '-@dangerous']
  return ['--user', ...user, '--user', 'default', 'off']
}

/** `url` (redis://HOST:PORT) as the `butterfly` ACL user. */
export function aclUrl(url: string, password: string): string {
  return url.replace('redis://', `redis://butterfly:${encodeURIComponent(password)}@`)
}

export interface RedisOptions {
  /** More redis-server arguments, after ours (a later `--option` overrides an earlier one). */
  readonly args?: readonly string[]
  /** How long a start or restart may take before it fails with redis' output; default 20 s. */
  readonly readyTimeoutMs?: number
  /** How long `stop` waits after SIGTERM before SIGKILL; default 5 s. */
  readonly stopTimeoutMs?: number
}

export interface RedisServer {
  /** `redis://127.0.0.1:PORT`, the same across restarts. */
  readonly url: string
  readonly port: number
  /** The running redis-server's pid (a restart changes it). */
  readonly pid: number
  /** The current process's stdout+stderr. */
  output(): string
  /** SIGTERM, then SIGKILL after stopTimeoutMs; resolves once it exited. Idempotent. */
  stop(): Promise<void>
  /** SIGKILL (a crash); resolves once it exited. */
  kill(): Promise<void>
  /** Stops it (if running) and starts an empty one on the same port, resolving once ready. */
  restart(): Promise<void>
}

// Redis 6 prints "Ready to accept connections", 7 adds the listener kind ("... tcp").
const READY = /Ready to accept connections/
const IN_USE = /Address already in use/
const OUTPUT_TAIL = 2_000

// Every redis-server this process started and that has not exited: killed when the test worker
// exits, even without its suite's teardown, so no daemon outlives the run.
const live = new Set<Proc>()
process.once('exit', () => {
  for (const p of live) p.child.kill('SIGKILL')
})

function tail(text: string): string {
  return text.length > OUTPUT_TAIL ? `...${text.slice(-OUTPUT_TAIL)}` : text
}

/** A redis-server process; `gone` resolves once it exited and its --dir is removed. */
interface Running {
  readonly proc: Proc
  readonly gone: Promise<void>
}

async function exitWithin(run: Running, signal: NodeJS.Signals, killAfterMs: number): Promise<void> {
  const { child } = run.proc
  if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  // A redis that ignores SIGTERM (stuck in a save, say) is killed, so teardown always ends.
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  try {
    await run.gone
  } finally {
    clearTimeout(timer)
  }
}

/** One redis-server process on `port` with its own empty --dir, resolved once it accepts connections. */
async function spawnReady(port: number, options: RedisOptions): Promise<Running> {
  const dir = await mkdtemp(join(tmpdir(), 'bf-redis-'))
  const args = [
    ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
    // No RDB or AOF: a restart must come back empty, like a crash of a cache-only deployment.
    ...['--save', '', '--appendonly', 'no'],
    ...['--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'notice'],
    ...(options.args ?? []),
  ]
  const proc = spawnWatched(REDIS_SERVER_BIN, args)
  live.add(proc)
  const gone = proc.exited.then(() => {
    live.delete(proc)
    return rm(dir, { recursive: true, force: true })
  })
  const run = { proc, gone }
  const timeoutMs = options.readyTimeoutMs ?? 20_000
  try {
    await proc.waitFor(READY, timeoutMs)
    return run
  } catch (err) {
    await exitWithin(run, 'SIGKILL', 1_000)
    const reason = err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err)
    const error = new Error(
      `redis-server (${REDIS_SERVER_BIN}) on 127.0.0.1:${port} did not become ready: ${reason}\n` +
        `last output:\n${tail(proc.output())}`,
    )
    throw Object.assign(error, { inUse: IN_USE.test(proc.output()) })
  }
}

/**
 * Starts a throwaway redis-server on a free loopback port: no persistence, protected mode, its
 * --dir a temp directory. Ready once its log says it accepts connections (no polling).
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  let port = 0
  let first: Running | undefined
  // Another process may take the probed port before redis binds it; a new port fixes that race.
  for (let attempt = 1; first === undefined; attempt++) {
    port = await freeTcpPort()
    try {
      first = await spawnReady(port, options)
    } catch (err) {
      if (attempt >= 3 || !(err as { inUse?: boolean }).inUse) throw err
    }
  }
  let current: Running = first
  const stopTimeoutMs = options.stopTimeoutMs ?? 5_000
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return current.proc.child.pid ?? -1
    },
    output: () => current.proc.output(),
    stop: () => exitWithin(current, 'SIGTERM', stopTimeoutMs),
    kill: () => exitWithin(current, 'SIGKILL', stopTimeoutMs),
    async restart() {
      await exitWithin(current, 'SIGTERM', stopTimeoutMs)
      current = await spawnReady(port, options)
    },
  }
}
