import { createConnection, createServer, type Socket } from 'node:net'

// A stand-in load balancer for cluster tests: a browser tab knows one origin, and when the server
// behind it dies, new connections must land on another one. Each incoming connection is piped,
// bytes untouched (HTTP, websocket upgrades, anything), to the first backend of the list that
// accepts a TCP connection now; a backend that refuses is skipped. When either side closes, the
// other is closed too, so a client sees its server die as it would behind a real balancer.

export interface Backend {
  readonly host: string
  readonly port: number
}

export interface TcpProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string
  readonly port: number
  /** Connections forwarded so far (each to a live backend). */
  connections(): number
  /** Stops listening and destroys every open socket. */
  close(): Promise<void>
}

/** Listens on a free port of 127.0.0.1 and forwards each connection to the first live backend. */
export async function startTcpProxy(backends: readonly Backend[]): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  let forwarded = 0
  const track = (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => s.destroy())
  }
  const dial = (i: number, client: Socket): void => {
    const backend = backends[i]
    if (backend === undefined || client.destroyed) {
      client.destroy() // no backend answers: the client sees a closed connection
      return
    }
    const upstream = createConnection({ host: backend.host, port: backend.port })
    const refused = () => {
      upstream.destroy()
      dial(i + 1, client)
    }
    upstream.once('error', refused)
    upstream.once('connect', () => {
      upstream.off('error', refused)
      track(upstream)
      forwarded++
      client.pipe(upstream)
      upstream.pipe(client)
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
      client.resume()
    })
  }
  const server = createServer({ pauseOnConnect: true }, (client) => {
    track(client)
    dial(0, client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    connections: () => forwarded,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
