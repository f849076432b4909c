import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { aclUrl, butterflyAclArgs, startRedis } from '@butterfly/testing/node'
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest'
import { buildCli, type ServerCliOptions } from '../src/cli.js'
import type { HealthReport } from '../src/http/health-routes.js'
import { tinyModel } from './helpers.js'

// Waits are event-driven: a broken server shows up as a fast timeout, not a two-minute one.
vi.setConfig({ testTimeout: 15_000 })

// These run the built CLI (`npm test` compiles first) as a real process.
const BIN = fileURLToPath(new URL('../bin/butterfly-server.js', import.meta.url))
let model: Awaited<ReturnType<typeof tinyModel>>

beforeAll(async () => {
  model = await tinyModel()
})
afterAll(() => model.cleanup())

/** Env without any BUTTERFLY_* from the developer's shell, plus `extra`. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BUTTERFLY_')))
  return { ...clean, ...extra }
}

function start(
  args: readonly string[],
  extraEnv: Record<string, string> = {},
): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [BIN, ...args], { env: env(extraEnv), stdio: ['pipe', 'pipe', 'pipe'] })
}

async function run(args: readonly string[], extraEnv: Record<string, string> = {}) {
  const child = start(args, extraEnv)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

/** Resolves with the URL the server prints once it listens. */
function listening(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    child.stdout.on('data', (d) => {
      out += d
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m?.[1] !== undefined) resolve(m[1])
    })
    child.once('close', (code) => reject(new Error(`exited ${code} before listening: ${err}`)))
  })
}

describe('butterfly-server', () => {
  test('--help explains every option and exits 0', async () => {
    const r = await run(['--help'])
    expect(r.code).toBe(0)
    for (const flag of [
      '--host',
      '--port',
      '--model',
      '--mesh',
      '--mesh-token',
      '--api-token',
      '--ice-servers',
      '--heartbeat-ms',
      '--replicas',
      '--step-timeout-ms',
      '--trust-after',
      '--verification',
      '--verify-window',
      '--hf-endpoint',
      '--max-concurrent',
      '--max-queued',
      '--max-queued-per-key',
      '--max-queue-wait',
      '--wire-dtype',
      '--relay',
      '--turn-secret',
      '--turn-url',
      '--turn-ttl',
      '--ice-transport-policy',
      'BUTTERFLY_TURN_SECRET',
    ]) {
      expect(r.stdout).toContain(flag)
    }
    expect(r.stdout).toContain('BUTTERFLY_MESH_TOKEN')
    expect(r.stdout).toContain('models/shakespeare')
  })

  const bad: Array<[string, string[], Record<string, string>]> = [
    ['a port out of range', ['--port', '70000'], {}],
    ['a non-numeric port', ['--port', 'http'], {}],
    ['a bad port from the environment', [], { BUTTERFLY_PORT: '-1' }],
    ['a zero heartbeat', ['--heartbeat-ms', '0'], {}],
    ['ICE servers that are not JSON', ['--ice-servers', '{stun'], {}],
    ['ICE servers that are not an array', ['--ice-servers', '{"urls":"stun:x"}'], {}],
    ['an ICE server with an http URL', ['--ice-servers', '[{"urls":"http://x"}]'], {}],
    ['a mesh name with a slash', ['--mesh', 'a/b'], {}],
    ['an empty mesh token', ['--mesh-token', ''], {}],
    ['an unknown option', ['--frobnicate'], {}],
    ['an unknown verification mode', ['--verification', 'sometimes'], {}],
    ['a zero verify window', ['--verify-window', '0'], {}],
    ['a verify window past a replay chunk', ['--verify-window', '513'], {}],
    ['a verify window that is not a number', ['--verify-window', 'wide'], {}],
    ['a bad verify window from the environment', [], { BUTTERFLY_VERIFY_WINDOW: '-8' }],
    ['the removed spot-check rate', ['--spot-check-rate', '0.1'], {}],
    ['a zero trust-after', ['--trust-after', '0'], {}],
    ['a step timeout below 100 ms', ['--step-timeout-ms', '5'], {}],
    ['a served context below 16 tokens', ['--context', '8'], {}],
    ['a served context that is not a number', ['--context', 'long'], {}],
    ['a stray argument', ['serve'], {}],
    ['an empty admin token', ['--admin-token', ''], {}],
    ['an empty join-token file path', ['--join-token-file', ''], {}],
    ['zero generations at once', ['--max-concurrent', '0'], {}],
    ['a negative queue', ['--max-queued', '-1'], {}],
    ['a zero per-key queue', ['--max-queued-per-key', '0'], {}],
    ['a zero queue wait', ['--max-queue-wait', '0'], {}],
    ['a fractional queue wait', ['--max-queue-wait', '1.5'], {}],
    ['a queue wait past an hour', ['--max-queue-wait', '3601'], {}],
    ['a bad queue wait from the environment', [], { BUTTERFLY_MAX_QUEUE_WAIT: 'forever' }],
    ['a zero per-address cap', ['--max-peers-per-address', '0'], {}],
    ['a per-address cap that is not a number', ['--max-peers-per-address', 'many'], {}],
    ['a zero join rate', ['--join-rate', '0'], {}],
    ['a bad join rate from the environment', [], { BUTTERFLY_JOIN_RATE: '-5' }],
    ['a slow-claim factor below 1', ['--slow-claim-factor', '0.5'], {}],
    ['a slow-claim factor that is not a number', ['--slow-claim-factor', 'x'], {}],
    ['zero slow-claim steps', ['--slow-claim-min-steps', '0'], {}],
    ['an unknown wire dtype', ['--wire-dtype', 'bf16'], {}],
    ['a bad wire dtype from the environment', [], { BUTTERFLY_WIRE_DTYPE: 'fp8' }],
    ['an unknown relay', ['--relay', 'mesh'], {}],
    ['a bad relay from the environment', [], { BUTTERFLY_RELAY: 'workers' }],
    ['a TURN secret without a TURN URL', ['--turn-secret', 's3cret'], {}],
    ['a TURN URL without a TURN secret', ['--turn-url', 'turn:127.0.0.1:3478'], {}],
    ['a TURN secret from the environment without a URL', [], { BUTTERFLY_TURN_SECRET: 's3cret' }],
    ['a stun: URL as TURN URL', ['--turn-secret', 's', '--turn-url', 'stun:127.0.0.1:3478'], {}],
    ['a TURN URL list with an http URL', ['--turn-secret', 's', '--turn-url', 'turn:a:1,http://b'], {}],
    ['an empty TURN secret', ['--turn-secret', '', '--turn-url', 'turn:a:1'], {}],
    ['a TURN ttl under a minute', ['--turn-secret', 's', '--turn-url', 'turn:a:1', '--turn-ttl', '59'], {}],
    ['a TURN ttl past a week', ['--turn-secret', 's', '--turn-url', 'turn:a:1', '--turn-ttl', '604801'], {}],
    ['an unknown ICE transport policy', ['--ice-transport-policy', 'direct'], {}],
    ['relay-only ICE without any TURN server', ['--ice-transport-policy', 'relay'], {}],
    ['tokens issue without a file', ['tokens', 'issue', '--mesh', 'demo'], {}],
    ['tokens issue without a mesh', ['tokens', 'issue', '--join-token-file', '/tmp/x.json'], {}],
    [
      'tokens issue with a bad mesh',
      ['tokens', 'issue', '--join-token-file', '/tmp/x.json', '--mesh', 'a/b'],
      {},
    ],
    [
      'tokens issue with a zero expiry',
      ['tokens', 'issue', '--join-token-file', '/tmp/x.json', '--mesh', 'd', '--expires-in', '0'],
      {},
    ],
    ['tokens revoke without an id', ['tokens', 'revoke', '--join-token-file', '/tmp/x.json'], {}],
    ['an unknown tokens command', ['tokens', 'burn'], {}],
    ['a Redis URL that is not redis: or rediss:', ['--redis', 'http://127.0.0.1:6379'], {}],
    ['a Redis URL that is not a URL', ['--redis', 'localhost:6379'], {}],
    ['a Redis URL from the environment without a host', [], { BUTTERFLY_REDIS_URL: 'redis://' }],
    ['a cluster secret under 16 bytes', ['--redis', 'redis://127.0.0.1:1', '--cluster-secret', 'short'], {}],
    ['a cluster secret without --redis', ['--cluster-secret', 'long enough cluster secret'], {}],
    ['a cluster secret from the environment without Redis', [], { BUTTERFLY_CLUSTER_SECRET: 'x'.repeat(20) }],
  ]
  test.each(bad)('%s is a usage error (exit 2, no stack)', async (_, args, extraEnv) => {
    const r = await run(args, extraEnv)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^butterfly-server: error \[ERR_CLI_USAGE\]: /)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stdout).toBe('')
  })

  test('tokens issue, list and revoke work on the file offline; a bad file is ERR_JOIN_TOKEN_FILE', async () => {
    const file = join(model.dir, '..', 'cli-tokens.json')
    const issued = await run([
      'tokens',
      'issue',
      '--join-token-file',
      file,
      '--mesh',
      'demo',
      '--label',
      'bob',
    ])
    expect(issued.code).toBe(0)
    const token = JSON.parse(issued.stdout) as { id: string; token: string }
    expect(token.token).toMatch(/^bft_/)
    const listed = await run(['tokens', 'list', '--join-token-file', file])
    expect(listed.stdout).toContain(token.id)
    expect(listed.stdout).not.toContain(token.token)
    const revoked = await run(['tokens', 'revoke', token.id, '--join-token-file', file])
    expect(JSON.parse(revoked.stdout)).toMatchObject({ revoked: { id: token.id, status: 'revoked' } })
    const unknown = await run(['tokens', 'revoke', 'jt_0123456789abcdef', '--join-token-file', file])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/error \[ERR_JOIN_TOKEN_FILE\]: .*no token/)
    await writeFile(file, '{"version": 1, "tokens": "none"}')
    const bad = await run(['--port', '0', '--model', model.dir, '--join-token-file', file])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/error \[ERR_JOIN_TOKEN_FILE\]: .*tokens must be an array/)
  })

  test('a missing model directory is an error naming it (exit 1)', async () => {
    const r = await run(['--port', '0', '--model', '/nonexistent/model'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/error \[ERR_MODEL_NOT_FOUND\]: .*\/nonexistent\/model/)
  })

  test.each([
    [
      'a malformed hf: spec',
      ['--model', 'hf:../etc'],
      {},
      /error \[ERR_MODEL_SPEC\]: bad model spec "hf:\.\.\/etc"/,
    ],
    [
      'a plain-http model URL off loopback',
      ['--model', 'http://example.com/m/'],
      {},
      /error \[ERR_MODEL_SPEC\]/,
    ],
    ['an hf-endpoint that is not https', ['--model', 'hf:o/r'], { HF_ENDPOINT: 'ftp://x' }, /ERR_MODEL_SPEC/],
    [
      'a Redis that does not answer',
      ['--redis', 'redis://:pw-not-printed@127.0.0.1:9'],
      {},
      /error \[ERR_REDIS\]: cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:9/,
    ],
    [
      'an unreachable hub',
      ['--model', 'hf:o/r', '--hf-endpoint', 'http://127.0.0.1:9'],
      {},
      /ERR_DOWNLOAD_NETWORK/,
    ],
  ])('%s is a clear error (exit 1, no stack)', async (_, args, extraEnv, message) => {
    const r = await run(['--port', '0', ...args], extraEnv)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stderr).not.toContain('pw-not-printed')
  })

  test('joins the cluster as the ACL user docs/deploy.md describes, says so without the password, and leaves on SIGTERM', async () => {
    const password = 'redis-pw-not-printed'
    const redis = await startRedis({ args: butterflyAclArgs(password) })
    try {
      const redisUrl = aclUrl(redis.url, password)
      const secret = 'cluster-secret-not-printed'
      const child = start(['--port', '0', '--model', model.dir], {
        BUTTERFLY_REDIS_URL: redisUrl,
        BUTTERFLY_CLUSTER_SECRET: secret,
      })
      let out = ''
      child.stderr.on('data', (d) => (out += d))
      const [url, serverId] = await new Promise<string[]>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += d
          const m = /listening on (http:\/\/\S+)\n[\s\S]*cluster: server (\S+) on (\S+?)[,\n]/.exec(out)
          if (m !== null) resolve([m[1] as string, m[2] as string, m[3] as string])
        })
        child.once('close', (code) => reject(new Error(`exited ${code}: ${out}`)))
      })
      expect(out).toContain(
        `on ${redis.url.replace('redis://', 'redis://butterfly:***@')}, sealed with the cluster secret`,
      )
      expect((await fetch(`${url}/health`)).status).toBe(200)
      const exited = once(child, 'close')
      child.kill('SIGTERM')
      expect(await exited).toEqual([0, null])
      expect(out).not.toContain(password)
      expect(out).not.toContain(secret)
      // Its liveness key went with it: close removes this server's records at once.
      expect(serverId).toMatch(/^[0-9a-f]{8}$/)
      const client = createClient({ url: redisUrl })
      await client.connect()
      try {
        expect(await client.exists(`butterfly:server:${serverId}`)).toBe(0)
        expect(await client.sMembers('butterfly:mesh:default:servers')).toEqual([])
      } finally {
        client.destroy()
      }
    } finally {
      await redis.stop()
    }
  })

  test('serves until SIGTERM, configured from flags and environment, then exits 0', async () => {
    const child = start(['--port', '0', '--model', model.dir], {
      BUTTERFLY_MESH: 'env-mesh',
      BUTTERFLY_MESH_TOKEN: 'tok',
    })
    const url = await listening(child)
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const health = (await (await fetch(`${url}/health`)).json()) as HealthReport
    expect(health.meshes.map((m) => m.name)).toEqual(['env-mesh'])
    const manifest = await fetch(`${url}/models/env-mesh/manifest.json`)
    expect(manifest.status).toBe(200)
    const exited = once(child, 'close')
    child.kill('SIGTERM')
    expect(await exited).toEqual([0, null])
  })

  test('exits within its grace period after SIGTERM even when a leaked handle holds its event loop', async () => {
    // The handle stands for what was seen under load: torn-down WebRTC peers' native handles.
    const child = spawn(
      process.execPath,
      [
        '--import',
        'data:text/javascript,setInterval(() => {}, 1000)',
        BIN,
        '--port',
        '0',
        '--model',
        model.dir,
      ],
      { env: env(), stdio: ['pipe', 'pipe', 'pipe'] },
    )
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    try {
      const url = await listening(child)
      expect((await fetch(`${url}/health`)).status).toBe(200)
      const exited = once(child, 'close')
      child.kill('SIGTERM')
      // The close finished, so the exit code is still 0; the line says why it came late.
      expect(await exited).toEqual([0, null])
      expect(err).toContain('butterfly-server: still running 5 s after the stop; exiting')
    } finally {
      // Without the limit it never exits: no process outlives a failed run.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })

  test('says which TURN URLs it mints credentials for, and never prints the secret', async () => {
    const secret = 'do-not-print-me'
    const child = start(['--port', '0', '--model', model.dir, '--turn-url', 'turn:127.0.0.1:3478'], {
      BUTTERFLY_TURN_SECRET: secret,
    })
    let out = ''
    child.stderr.on('data', (d) => (out += d))
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d
        const m =
          /listening on (http:\/\/\S+)\n[\s\S]*TURN credentials minted for turn:127\.0\.0\.1:3478\n/.exec(out)
        if (m?.[1] !== undefined) resolve(m[1])
      })
      child.once('close', (code) => reject(new Error(`exited ${code}: ${out}`)))
    })
    // An answer means its event loop has turned since it printed: its SIGTERM handler is in place.
    expect((await fetch(`${url}/health`)).status).toBe(200)
    const exited = once(child, 'close')
    child.kill('SIGTERM')
    expect(await exited).toEqual([0, null])
    expect(out).not.toContain(secret)
  })
})

describe('admission flags', () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  /** The options buildCli hands to its runner for `args` (in-process: nothing is served). */
  async function parsed(args: readonly string[]): Promise<ServerCliOptions> {
    let options: ServerCliOptions | undefined
    await buildCli(async (o) => {
      options = o
    }).parseAsync([...args], { from: 'user' })
    if (options === undefined) throw new Error('the CLI did not run')
    return options
  }

  test('defaults leave room to batch: 64 running, 256 queued, 64 per key, 30 s of waiting', async () => {
    for (const name of ['MAX_CONCURRENT', 'MAX_QUEUED', 'MAX_QUEUED_PER_KEY', 'MAX_QUEUE_WAIT']) {
      vi.stubEnv(`BUTTERFLY_${name}`, undefined)
    }
    expect(await parsed([])).toMatchObject({
      maxConcurrent: 64,
      maxQueued: 256,
      maxQueuedPerKey: 64,
      maxQueueWait: 30,
    })
  })

  test('flags and environment set them', async () => {
    vi.stubEnv('BUTTERFLY_MAX_QUEUE_WAIT', '45')
    expect(await parsed(['--max-queued-per-key', '3', '--max-concurrent', '2'])).toMatchObject({
      maxConcurrent: 2,
      maxQueuedPerKey: 3,
      maxQueueWait: 45,
    })
  })
})
