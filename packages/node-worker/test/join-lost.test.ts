import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, expect, test } from 'vitest'

// A worker whose server goes away, and does not come back while it keeps trying to rejoin, must
// say so and exit non-zero. Before, its last handle (the socket.io connection) closed and Node
// ended the process with code 13 and no message, which a supervisor cannot tell from a crash and
// a user cannot read. Retrying must keep the process alive until it gives up.
let cache: string

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-join-lost-'))
})
afterAll(async () => {
  await rm(cache, { recursive: true, force: true })
})

test('join exits 1 with ERR_SERVER_LOST when the server goes away for longer than --reconnect-timeout', async () => {
  const env = { BUTTERFLY_CACHE_DIR: cache }
  const server = start(SERVER_BIN, ['--port', '0', '--model', 'synthetic:tiny'], env)
  const url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  const args = ['join', '--server', url, '--device', 'cpu', '--name', 'w', '--reconnect-timeout', '2']
  const worker = start(WORKER_BIN, args, {
    ...env,
    BUTTERFLY_IDENTITY: join(cache, 'w.identity.json'),
  })
  await until<{ meshes: Array<{ ready: boolean }> }>(`${url}/health`, (h) => h.meshes[0]?.ready === true)
  await server.stop()
  expect(await worker.exited).toBe(1)
  expect(worker.output()).toMatch(
    /error \[ERR_SERVER_LOST\]: the server dropped this worker \([a-z ]+; no server took it back within 2 s\)/,
  )
  // It did try again before giving up: nothing listened on the server's port any more.
  expect(worker.output()).toMatch(/no server takes this worker back yet; trying again in \d+ ms/)
}, 60_000)
