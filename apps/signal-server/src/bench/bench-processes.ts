import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

// Server and worker programs as child processes, for the benches (the tests have their own in
// @butterfly/testing, which shipped code may not import).

// The programs, by their place in the repository (src/bench and dist/bench are equally deep): the
// server runs the worker as a program and does not depend on @butterfly/node-worker.
const WORKER_BIN = fileURLToPath(
  new URL('../../../../packages/node-worker/bin/butterfly-worker.js', import.meta.url),
)
const SERVER_BIN = fileURLToPath(new URL('../../bin/butterfly-server.js', import.meta.url))

/**
 * BUTTERFLY_BENCH_CPU_PROF=DIR: every server and worker process a bench starts writes a V8 CPU
 * profile (`.cpuprofile`, for Chrome DevTools or speedscope) into DIR when it exits. Profiling
 * slows them, so figures from such a run are only for finding where time goes.
 */
function profileArgs(): string[] {
  const dir = process.env.BUTTERFLY_BENCH_CPU_PROF
  return dir === undefined || dir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`]
}

export interface WorkerProcessesInit {
  readonly serverUrl: string
  readonly mesh: string
  readonly count: number
  /** Worker names are `${name}-${i}`; their identity files `${identities}/${name}-${i}.json`. */
  readonly name: string
  /** Folder for the workers' identity files: one key joins a mesh once. */
  readonly identities: string
  readonly env?: Readonly<Record<string, string>>
  /** More `join` flags, e.g. `--threads 1`. */
  readonly args?: readonly string[]
}

/** `butterfly-worker join` processes on the CPU, output ignored. */
export function spawnWorkers(init: WorkerProcessesInit): ChildProcess[] {
  return Array.from({ length: init.count }, (_, i) =>
    spawn(
      process.execPath,
      [
        ...profileArgs(),
        WORKER_BIN,
        'join',
        '--server',
        init.serverUrl,
        '--mesh',
        init.mesh,
        '--device',
        'cpu',
        '--name',
        `${init.name}-${i}`,
        ...(init.args ?? []),
      ],
      {
        stdio: 'ignore',
        env: {
          ...process.env,
          ...init.env,
          BUTTERFLY_IDENTITY: join(init.identities, `${init.name}-${i}.json`),
        },
      },
    ),
  )
}

/** SIGTERM, then resolves when the process has exited. */
export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
  })
}

export interface ServerProcess {
  readonly child: ChildProcess
  readonly url: string
  close(): Promise<void>
}

/** A `butterfly-server` process with these arguments (add `--port 0`), once it listens. */
export async function startServerProcess(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...profileArgs(), SERVER_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  let out = ''
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      // Kept short: the server logs each request, and only the start matters here.
      if (out.length < 64 * 1024) out += d.toString()
      const m = out.match(/listening on (http:\/\/\S+)/)
      if (m) resolve(m[1] as string)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) =>
      reject(new Error(`butterfly-server exited (${code}) before listening:\n${out}`)),
    )
  })
  return { child, url, close: () => stopChild(child) }
}

/** User + system CPU seconds a live process has used so far (/proc/PID/stat; Linux only). */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces), from field 3 on: utime and stime are
    // fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}
