import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'

// A port the kernel just handed out on loopback, for a daemon we start next (redis-server,
// coturn) that must be told its port up front. Another process could take it in between; the
// daemon then fails to bind and says so, which its caller reports.

/** A TCP port free on 127.0.0.1 a moment ago. */
export async function freeTcpPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no TCP port on 127.0.0.1')
  return address.port
}

/** A UDP port free on 127.0.0.1 a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(0, '127.0.0.1', resolve)
  })
  const { port } = socket.address()
  await new Promise<void>((resolve) => socket.close(() => resolve()))
  return port
}
