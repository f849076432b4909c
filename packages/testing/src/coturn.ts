import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeUdpPort } from '@butterfly/node-platform'
import { spawnWatched } from './processes.js'

/** coturn's binary: BUTTERFLY_TURNSERVER, else the distribution's (scripts/ensure-apt-packages.mjs installs it). */
export const TURNSERVER_BIN = process.env.BUTTERFLY_TURNSERVER ?? '/usr/bin/turnserver'

export interface Coturn {
  /** `turn:127.0.0.1:PORT` (UDP). */
  readonly url: string
  readonly port: number
  readonly output: () => string
  /** Successful TURN allocations so far, counted from coturn's log. */
  allocations(): number
  /** Resolves once coturn's log matches `re`; rejects when coturn exits first or after timeoutMs. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  stop(): Promise<void>
}

// One line per allocation that succeeded (coturn 4.5/4.6 with --verbose).
const ALLOCATED = /ALLOCATE processed, success/g

/**
 * Starts coturn on loopback with the TURN REST API secret `secret` (realm "butterfly", UDP only,
 * relays on a small port range, its pid file and database in a temp directory), ready once its
 * log says the UDP listener is open. `stop` kills it and removes the directory.
 */
export async function startCoturn(secret: string): Promise<Coturn> {
  const dir = await mkdtemp(join(tmpdir(), 'bf-coturn-'))
  const port = await freeUdpPort()
  // A random 64-port relay range above the usual ephemeral ports of this suite's sockets.
  const minPort = 20_000 + Math.floor(Math.random() * 600) * 64
  const args = [
    '-n',
    ...['--listening-ip', '127.0.0.1', '--relay-ip', '127.0.0.1', '--listening-port', String(port)],
    ...['--min-port', String(minPort), '--max-port', String(minPort + 63)],
    ...['--use-auth-secret', '--static-auth-secret', secret, '--realm', 'butterfly'],
    ...['--allow-loopback-peers', '--no-cli', '--no-tls', '--no-dtls', '--no-tcp', '--no-tcp-relay'],
    ...['--pidfile', join(dir, 'turnserver.pid'), '--userdb', join(dir, 'turndb.sqlite')],
    ...['--log-file', 'stdout', '--simple-log', '--verbose', '--relay-threads', '1'],
  ]
  const proc = spawnWatched(TURNSERVER_BIN, args)
  const { child, waitFor } = proc
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await proc.exited
    clearTimeout(timer)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitFor(new RegExp(`UDP listener opened on\\s*:\\s*127\\.0\\.0\\.1:${port}\\b`))
  } catch (err) {
    await stop()
    throw err
  }
  return {
    url: `turn:127.0.0.1:${port}`,
    port,
    output: proc.output,
    allocations: () => proc.output().match(ALLOCATED)?.length ?? 0,
    waitFor,
    stop,
  }
}
