import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'

export interface ProxiedRequest {
  readonly method: string
  readonly path: string
  readonly range: string | undefined
  status: number
  /** Response body bytes that went through the proxy. */
  bytes: number
}

export interface CountingProxy {
  readonly url: string
  readonly requests: ProxiedRequest[]
  close(): Promise<void>
}

/**
 * An HTTP proxy on 127.0.0.1 in front of `target` that records every request and the body
 * bytes of its response; WebSocket upgrades (socket.io) pass through untouched. Giving each
 * worker its own proxy as `--server` measures, from outside the worker, exactly what it
 * downloaded.
 */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const to = new URL(target)
  const port = Number(to.port)
  const requests: ProxiedRequest[] = []
  const server = createServer((req, res) => {
    const rec: ProxiedRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      range: req.headers.range,
      status: 0,
      bytes: 0,
    }
    requests.push(rec)
    const upstream = request(
      { host: to.hostname, port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        rec.status = up.statusCode ?? 0
        res.writeHead(up.statusCode ?? 502, up.headers)
        up.on('data', (chunk: Buffer) => {
          rec.bytes += chunk.byteLength
        })
        up.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  const tunnels = new Set<{ destroy(): void }>()
  server.on('upgrade', (req, socket, head) => {
    tunnels.add(socket)
    socket.on('close', () => tunnels.delete(socket))
    const up = connect(port, to.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`]
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`)
      up.write(`${lines.join('\r\n')}\r\n\r\n`)
      if (head.byteLength > 0) up.write(head)
      up.pipe(socket)
      socket.pipe(up)
    })
    up.on('error', () => socket.destroy())
    socket.on('error', () => up.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    async close() {
      for (const t of tunnels) t.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
