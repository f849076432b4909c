import { once } from 'node:events'
import { createServer as createHttpServer } from 'node:http'
import { type AddressInfo, createConnection, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { startTcpProxy, type TcpProxy } from '../src/tcp-proxy.js'

const servers: Server[] = []
let proxy: TcpProxy | undefined
afterEach(async () => {
  await proxy?.close()
  proxy = undefined
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

async function listening(server: Server): Promise<number> {
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

/** A TCP server that answers each connection with `name:` and then echoes what it receives. */
const echo = (name: string) =>
  listening(
    createServer((s) => {
      s.write(`${name}:`)
      s.pipe(s)
    }),
  )

/** A port nothing listens on (it was free a moment ago). */
async function deadPort(): Promise<number> {
  const s = createServer()
  const port = await listening(s)
  servers.splice(servers.indexOf(s), 1)
  await new Promise((r) => s.close(r))
  return port
}

/** Reads from `socket` until `done(text so far)`, or until it closes; returns what came. */
async function readUntil(socket: Socket, done: (got: string) => boolean): Promise<string> {
  let got = ''
  socket.on('data', (d) => {
    got += d.toString()
  })
  const closed = once(socket, 'close')
  while (!done(got) && !socket.destroyed) await Promise.race([once(socket, 'data'), closed])
  return got
}

/** Sends `text` and reads until `expected.length` bytes came back (or the proxy hung up). */
async function exchange(port: number, text: string, expected: string): Promise<string> {
  const socket: Socket = createConnection({ host: '127.0.0.1', port })
  socket.write(text)
  const got = await readUntil(socket, (g) => g.length >= expected.length)
  socket.destroy()
  return got
}

describe('startTcpProxy', { timeout: 10_000 }, () => {
  it('forwards to the first live backend, bytes both ways', async () => {
    const a = await echo('a')
    const b = await echo('b')
    proxy = await startTcpProxy([
      { host: '127.0.0.1', port: a },
      { host: '127.0.0.1', port: b },
    ])
    expect(proxy.url).toBe(`http://127.0.0.1:${proxy.port}`)
    expect(await exchange(proxy.port, 'hello', 'a:hello')).toBe('a:hello')
    expect(proxy.connections()).toBe(1)
  })

  it('skips a backend that refuses, and one that died since', async () => {
    const dead = await deadPort()
    const aServer = createServer((s) => s.end('a'))
    const a = await listening(aServer)
    const b = await echo('b')
    proxy = await startTcpProxy([
      { host: '127.0.0.1', port: dead },
      { host: '127.0.0.1', port: a },
      { host: '127.0.0.1', port: b },
    ])
    expect(await exchange(proxy.port, '', 'a')).toBe('a')
    servers.splice(servers.indexOf(aServer), 1)
    await new Promise((r) => aServer.close(r))
    expect(await exchange(proxy.port, 'x', 'b:x')).toBe('b:x')
    expect(proxy.connections()).toBe(2)
  })

  it('passes an HTTP upgrade through, and closes the client when its backend goes', async () => {
    const http = createHttpServer()
    http.on('upgrade', (_req, socket: Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n')
      socket.once('data', (d) => {
        socket.write(`echo ${d}`)
        socket.destroy() // the server dies under the upgraded connection
      })
    })
    const port = await listening(http as unknown as Server)
    proxy = await startTcpProxy([{ host: '127.0.0.1', port }])
    const socket = createConnection({ host: '127.0.0.1', port: proxy.port })
    socket.write('GET /socket HTTP/1.1\r\nHost: x\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n')
    const head = await readUntil(socket, (g) => g.includes('\r\n\r\n'))
    expect(head).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/)
    socket.removeAllListeners('data')
    socket.write('ping')
    // The backend answers and hangs up: the client gets the answer, then its socket closes.
    expect(await readUntil(socket, () => false)).toBe('echo ping')
    expect(socket.destroyed).toBe(true)
  })

  it('closes a client when no backend answers, and close() ends open connections', async () => {
    const dead = await deadPort()
    proxy = await startTcpProxy([{ host: '127.0.0.1', port: dead }])
    const lonely = createConnection({ host: '127.0.0.1', port: proxy.port })
    lonely.on('error', () => undefined)
    await once(lonely, 'close')
    expect(proxy.connections()).toBe(0)

    const b = await echo('b')
    const open = await startTcpProxy([{ host: '127.0.0.1', port: b }])
    const socket = createConnection({ host: '127.0.0.1', port: open.port })
    await once(socket, 'data')
    const closed = once(socket, 'close')
    await open.close()
    await closed
    expect(socket.destroyed).toBe(true)
  })
})
