import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeTcpPort } from '@butterfly/node-platform'
import { stopChild } from './bench-processes.js'

// A throwaway redis-server for the two-server column of the control-load bench. Shipped code may
// not import @butterfly/testing (whose startRedis the tests use), so this is its small cousin:
// same flags, no restarts.

/** redis-server's binary: BUTTERFLY_REDIS_SERVER, else the distribution's. */
export const BENCH_REDIS_BIN = process.env.BUTTERFLY_REDIS_SERVER ?? '/usr/bin/redis-server'

// Redis 6 prints "Ready to accept connections", 7 adds the listener kind ("... tcp").
const READY = /Ready to accept connections/
const READY_TIMEOUT_MS = 20_000

export interface BenchRedis {
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string
  stop(): Promise<void>
}

/**
 * Starts redis-server on a free loopback port, without persistence, resolved once it accepts
 * connections; `{ skipped }` with the reason when there is no binary or it fails, so the bench goes on without
 * its Redis column rather than failing.
 */
export async function startBenchRedis(): Promise<BenchRedis | { readonly skipped: string }> {
  if (!existsSync(BENCH_REDIS_BIN)) return { skipped: `no redis-server at ${BENCH_REDIS_BIN}` }
  const port = await freeTcpPort()
  const dir = await mkdtemp(join(tmpdir(), 'bf-bench-redis-'))
  const child = spawn(
    BENCH_REDIS_BIN,
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
      ...['--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  // A bench killed midway must not leave the daemon behind.
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  const stop = async () => {
    process.off('exit', killOnExit)
    await stopChild(child)
    await rm(dir, { recursive: true, force: true })
  }
  let out = ''
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('not ready in time')), READY_TIMEOUT_MS)
      const onData = (d: Buffer) => {
        if (out.length < 16 * 1024) out += d.toString()
        if (READY.test(out)) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout?.on('data', onData)
      child.stderr?.on('data', onData)
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`exited (${code})`))
      })
    })
  } catch (err) {
    await stop()
    const reason = err instanceof Error ? err.message : String(err)
    return { skipped: `redis-server (${BENCH_REDIS_BIN}) did not start: ${reason}; ${out.slice(-500)}` }
  }
  return { url: `redis://127.0.0.1:${port}`, stop }
}
