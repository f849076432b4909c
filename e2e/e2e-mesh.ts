import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import { expect } from 'vitest'

// What the e2e suites stand on: a real butterfly-server serving the web app, one real
// `butterfly-worker join` process, and the single-process text every mesh run must give.

export interface E2eMesh {
  readonly url: string
  readonly cache: string
  /** `butterfly-worker generate` in one process: the text the mesh must stream. */
  generate(prompt: string, maxTokens: number): Promise<string>
  close(): Promise<void>
}

/** `model` is any --model spec (e.g. synthetic:tiny:int4); the server, worker and generate share it. */
export async function startE2eMesh(
  serverArgs: readonly string[] = [],
  model = 'synthetic:tiny',
): Promise<E2eMesh> {
  const cache = await mkdtemp(join(tmpdir(), 'bf-e2e-'))
  const env = { BUTTERFLY_CACHE_DIR: cache }
  const server: Proc = start(SERVER_BIN, ['--port', '0', '--model', model, ...serverArgs], env)
  const url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  const worker = start(WORKER_BIN, ['join', '--server', url, '--device', 'cpu', '--name', 'node-worker'], {
    ...env,
    BUTTERFLY_IDENTITY: join(cache, 'worker.identity.json'),
  })
  await until<{ meshes: Array<{ ready: boolean }> }>(`${url}/health`, (h) => h.meshes[0]?.ready === true)
  return {
    url,
    cache,
    async generate(prompt, maxTokens) {
      const p = start(
        WORKER_BIN,
        ['generate', '--model', model, '--prompt', prompt, '--max-tokens', String(maxTokens)],
        env,
      )
      expect(await p.exited).toBe(0)
      return p.output().replace(/\n$/, '')
    },
    async close() {
      await Promise.all([worker.stop(), server.stop()])
      await rm(cache, { recursive: true, force: true })
    },
  }
}
