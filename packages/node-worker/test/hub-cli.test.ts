import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { syntheticConfig } from '@butterfly/core'
import { resolveModelDir } from '@butterfly/node-platform'
import { filesOf, shardName, startTestHub, type TestHub, writeShardedModel } from '@butterfly/testing/node'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'

// `butterfly-worker generate --model hf:…` as a real process against the local test hub. These
// run the built CLI (`npm test` compiles first).
const BIN = fileURLToPath(new URL('../bin/butterfly-worker.js', import.meta.url))
const SHARD2 = shardName(1, 2)
const ARGS = ['--prompt', 'To be, or not', '--max-tokens', '16', '--ids']

let hub: TestHub
let work: string
let singleDir: string
let shardedDir: string
let shardedCommit: string
let reference: string

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function spawnCli(
  args: readonly string[],
  env: Record<string, string>,
): { child: ChildProcess; done: Promise<Run> } {
  const base = { ...process.env }
  for (const k of ['HF_TOKEN', 'HF_HUB_OFFLINE', 'HF_ENDPOINT']) delete base[k]
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d) => (stdout += d))
  child.stderr?.on('data', (d) => (stderr += d))
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
  return { child, done }
}

let caches = 0
const freshCache = () => join(work, `cache-${caches++}`)
const generate = (model: string, cache: string, env: Record<string, string> = {}, extra: string[] = []) =>
  spawnCli(['generate', '--model', model, ...ARGS, ...extra], {
    BUTTERFLY_CACHE_DIR: cache,
    HF_ENDPOINT: hub.url,
    ...env,
  }).done
const fileRequests = (since: number) => hub.requests.slice(since).filter((r) => r.file !== undefined)

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bf-hub-cli-'))
  singleDir = await resolveModelDir('synthetic:tiny', join(work, 'src'))
  shardedDir = join(work, 'sharded')
  await writeShardedModel(syntheticConfig('tiny'), singleDir, shardedDir)
  hub = await startTestHub()
  hub.addRepo('org/tiny', await filesOf(singleDir))
  shardedCommit = hub.addRepo('org/sharded', await filesOf(shardedDir)).commit
  hub.addRepo('org/private', await filesOf(singleDir), { token: 'hf_cli_secret' })
  const run = await generate(singleDir, freshCache())
  expect(run.code).toBe(0)
  reference = run.stdout
  expect(reference.trim().split(' ')).toHaveLength(16)
}, 120_000)
afterAll(async () => {
  await hub?.close()
  await rm(work, { recursive: true, force: true })
})
beforeEach(() => hub.clearFaults())

describe('butterfly-worker generate --model hf:ORG/REPO', () => {
  test('gives the tokens of the local directory, single-file and sharded; a second run fetches no file', async () => {
    const local = await generate(shardedDir, freshCache())
    expect(local.stdout).toBe(reference)
    for (const repo of ['org/tiny', 'org/sharded']) {
      const cache = freshCache()
      const first = await generate(`hf:${repo}`, cache)
      expect(first.code, first.stderr).toBe(0)
      expect(first.stdout, repo).toBe(reference)
      expect(first.stderr).toMatch(new RegExp(`downloading hf:${repo}@[0-9a-f]{12}: \\d weights file`))
      const since = hub.requests.length
      const second = await generate(`hf:${repo}`, cache)
      expect(second.code).toBe(0)
      expect(second.stdout).toBe(reference)
      expect(second.stderr).toBe('')
      expect(fileRequests(since)).toEqual([])
    }
  })

  test('a download killed mid-file resumes with a Range request for the remainder only', async () => {
    const cache = freshCache()
    const size = (await stat(join(shardedDir, SHARD2))).size
    const cut = 200_000
    hub.fault({ kind: 'stall-after', path: SHARD2, bytes: cut })
    const killed = spawnCli(['generate', '--model', 'hf:org/sharded', ...ARGS], {
      BUTTERFLY_CACHE_DIR: cache,
      HF_ENDPOINT: hub.url,
    })
    await hub.stalled()
    const part = join(cache, 'hub', 'org--sharded', shardedCommit, `${SHARD2}.part`)
    await untilSize(part, cut)
    killed.child.kill('SIGKILL')
    await killed.done

    const since = hub.requests.length
    const resumed = await generate('hf:org/sharded', cache)
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stdout).toBe(reference)
    expect(resumed.stderr).toContain(`resuming org/sharded/${SHARD2} at byte ${cut}`)
    const gets = fileRequests(since).filter((r) => r.file === SHARD2 && r.status !== 302)
    expect(gets.map((r) => [r.range, r.bytes])).toEqual([[`bytes=${cut}-`, size - cut]])
    // Only the unfinished shard was fetched again.
    expect(
      fileRequests(since)
        .filter((r) => r.status !== 302 && r.bytes > 0)
        .map((r) => r.file),
    ).toEqual([SHARD2])
  })

  test('a checksum mismatch is ERR_MODEL_FILE_HASH naming the file, and leaves no partial', async () => {
    const cache = freshCache()
    hub.fault({ kind: 'corrupt', path: SHARD2 })
    const run = await generate('hf:org/sharded', cache)
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(
      /butterfly-worker: error \[ERR_MODEL_FILE_HASH\]: org\/sharded\/model-00002-of-00002\.safetensors: sha256 [0-9a-f]{64} does not match the hub's [0-9a-f]{64}; the download was deleted/,
    )
    expect(run.stderr).not.toMatch(/\n\s+at /)
    const dir = join(cache, 'hub', 'org--sharded', shardedCommit)
    expect((await readdir(dir)).filter((f) => f.startsWith(SHARD2))).toEqual([])
  })

  test('a private repo needs HF_TOKEN', async () => {
    const denied = await generate('hf:org/private', freshCache())
    expect(denied.code).toBe(1)
    expect(denied.stderr).toMatch(/error \[ERR_DOWNLOAD_AUTH\].*HF_TOKEN/)
    const allowed = await generate('hf:org/private', freshCache(), { HF_TOKEN: 'hf_cli_secret' })
    expect(allowed.code, allowed.stderr).toBe(0)
    expect(allowed.stdout).toBe(reference)
  })

  test('--hf-endpoint overrides HF_ENDPOINT', async () => {
    const run = await generate('hf:org/tiny', freshCache(), { HF_ENDPOINT: 'http://127.0.0.1:9' }, [
      '--hf-endpoint',
      hub.url,
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(reference)
  })

  test('an unreachable hub is ERR_DOWNLOAD_NETWORK, a missing repo ERR_DOWNLOAD_NOT_FOUND', async () => {
    const dead = await generate('hf:org/tiny', freshCache(), { HF_ENDPOINT: 'http://127.0.0.1:9' })
    expect(dead.code).toBe(1)
    expect(dead.stderr).toMatch(/error \[ERR_DOWNLOAD_NETWORK\]/)
    const missing = await generate('hf:org/missing', freshCache())
    expect(missing.stderr).toMatch(/error \[ERR_DOWNLOAD_NOT_FOUND\]/)
  })

  test.each([
    ['hf:../x', /ERR_MODEL_SPEC/],
    ['http://example.com/m/', /ERR_MODEL_SPEC.*https/],
  ])('--model %s is rejected', async (spec, message) => {
    const run = await generate(spec, freshCache())
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(message)
  })

  test('an http://127.0.0.1 directory URL works like hf:', async () => {
    const run = await generate(`${hub.url}/raw/org/sharded/`, freshCache())
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(reference)
  })
})

/** Waits for the part file to hold `bytes` bytes (bounded: a broken download fails the test). */
async function untilSize(path: string, bytes: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (((await stat(path).catch(() => undefined))?.size ?? 0) >= bytes) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`${path} never reached ${bytes} bytes`)
}
