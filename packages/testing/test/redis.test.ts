import { createConnection } from 'node:net'
import { createClient } from 'redis'
import { afterAll, describe, expect, it } from 'vitest'
import { type RedisServer, startRedis } from '../src/redis.js'

/** Resolves with the connect error's code, or 'connected' (then closes the socket). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

async function connected(url: string) {
  // No reconnects: a client must not quietly ride over the restart this suite checks.
  const client = createClient({ url, socket: { reconnectStrategy: false } })
  client.on('error', () => {})
  await client.connect()
  return client
}

describe('startRedis', () => {
  let redis: RedisServer | undefined
  afterAll(async () => {
    await redis?.stop()
  })

  it('serves, restarts empty on the same url, and stops for good', async () => {
    redis = await startRedis()
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`)

    const first = await connected(redis.url)
    await first.set('greeting', 'hello')
    expect(await first.get('greeting')).toBe('hello')
    first.destroy()

    const oldPid = redis.pid
    await redis.restart()
    expect(redis.pid).not.toBe(oldPid)
    // The old process has exited and been reaped: signal 0 finds no such process.
    expect(() => process.kill(oldPid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }))

    const second = await connected(redis.url)
    expect(await second.get('greeting')).toBeNull()
    await second.set('greeting', 'again')
    expect(await second.get('greeting')).toBe('again')
    second.destroy()

    await redis.stop()
    expect(await tryConnect(redis.port)).toBe('ECONNREFUSED')
    await redis.stop() // idempotent
  })

  it('kill() ends it like a crash', async () => {
    const crashy = await startRedis()
    try {
      expect(await tryConnect(crashy.port)).toBe('connected')
      await crashy.kill()
      expect(await tryConnect(crashy.port)).toBe('ECONNREFUSED')
    } finally {
      await crashy.stop()
    }
  })

  it('fails with the tail of its output when redis-server refuses to start', async () => {
    await expect(startRedis({ args: ['--no-such-directive', 'x'] })).rejects.toThrow(
      /did not become ready[\s\S]*last output:[\s\S]*no-such-directive/,
    )
  })
})
