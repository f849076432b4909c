import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { FaultyBackendOptions } from './faulty-backend.js'

// The built CLIs (`npm test` compiles first), found from this file: packages/testing/src.
export const SERVER_BIN = fileURLToPath(
  new URL('../../../apps/signal-server/bin/butterfly-server.js', import.meta.url),
)
export const WORKER_BIN = fileURLToPath(new URL('../../node-worker/bin/butterfly-worker.js', import.meta.url))
export const TRAIN_BIN = fileURLToPath(new URL('../../trainer/bin/butterfly-train.js', import.meta.url))
/**
 * Test-only misbehaving worker (packages/testing/src/fixtures), compiled by vitest's global setup
 * (tsconfig.fixtures.json: rootDir packages/testing/src, outDir .cache/test-fixtures).
 */
export const FAULTY_WORKER_BIN = fileURLToPath(
  new URL('../../../.cache/test-fixtures/fixtures/faulty-worker.js', import.meta.url),
)

export interface Proc {
  readonly child: ChildProcess
  readonly output: () => string
  /** Resolves with the first match of `re` in stdout+stderr; rejects if the process exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** Resolves with the exit code. */
  exited: Promise<number | null>
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/** Spawns a built CLI (npm test compiles first) and watches its output. */
export function start(
  bin: string,
  args: readonly string[],
  env: Record<string, string> = {},
  moreArgs: readonly string[] = [],
): Proc {
  return spawnWatched(process.execPath, [bin, ...args, ...moreArgs], env)
}

/**
 * Spawns any program (a CLI of ours through `start`, or coturn) and watches its output. A program
 * that cannot be spawned at all says so in its output and counts as exited.
 */
export function spawnWatched(
  command: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Proc {
  const child = spawn(command, [...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const watchers = new Set<() => void>()
  const onData = (d: Buffer) => {
    out += d.toString()
    for (const w of [...watchers]) w()
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => resolve(code))
    child.on('error', (err) => {
      out += `\nspawn ${command} failed: ${err.message}\n`
      for (const w of [...watchers]) w()
      resolve(null)
      child.emit('exit', null)
    })
  })
  return {
    child,
    output: () => out,
    exited,
    waitFor(re, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re)
          if (m) {
            done()
            resolve(m)
          }
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`timed out waiting for ${re}; output so far:\n${out}`))
        }, timeoutMs)
        const onExit = (code: number | null) => {
          done()
          reject(new Error(`process exited (${code}) before ${re}; output:\n${out}`))
        }
        const done = () => {
          clearTimeout(timer)
          watchers.delete(check)
          child.off('exit', onExit)
        }
        watchers.add(check)
        child.once('exit', onExit)
        check()
      })
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      // A process that ignores the signal is killed, so a suite's teardown always ends.
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
      try {
        return await exited
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

/** Polls `url` (JSON) until `predicate` holds; a bounded wait on a condition, not a sleep. */
export async function until<T>(url: string, predicate: (body: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    const res = await fetch(url).catch(() => undefined)
    if (res?.ok) {
      last = await res.json()
      if (predicate(last as T)) return last as T
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`condition on ${url} not met; last body: ${JSON.stringify(last)}`)
}

export interface WorkerProcessOptions {
  readonly weights?: 'fp32' | 'fp16'
  readonly memoryBytes?: number
  /**
   * A fault runs the test-only faulty worker instead of `butterfly-worker join` (its options,
   * FaultyBackendOptions, travel as one JSON argument: mode, seed, delayMs, noise, fromStep,
   * honestSteps, lieRate, phase).
   */
  readonly fault?: FaultyBackendOptions
  /** Identity file for this process (one key joins a mesh once). */
  readonly identity: string
}

/** A worker process joined to mesh 'default' of `serverUrl`, with its peer id. */
export async function startWorkerProcess(
  serverUrl: string,
  name: string,
  opts: WorkerProcessOptions,
): Promise<{ proc: Proc; peerId: string }> {
  const weights = opts.weights ?? 'fp32'
  const memory = opts.memoryBytes ?? 2 ** 30
  const proc = opts.fault
    ? start(FAULTY_WORKER_BIN, [
        serverUrl,
        name,
        weights,
        String(memory),
        JSON.stringify({ seed: 1, delayMs: 6000, ...opts.fault }),
      ])
    : start(
        WORKER_BIN,
        ['join', '--server', serverUrl, '--mesh', 'default', '--device', 'cpu', '--name', name],
        { BUTTERFLY_IDENTITY: opts.identity },
        ['--weights', weights, '--memory', String(memory)],
      )
  const [, peerId] = await proc.waitFor(/joined mesh default as (\S+)/, 120_000)
  return { proc, peerId: peerId as string }
}
