import { createHash, createHmac, randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import type { IceServer } from '@butterfly/core'
import { TurnError } from '../errors.js'

// STUN/TURN (RFC 5389/5766) just far enough to learn whether a TURN server accepts credentials:
// libdatachannel only reports a failed connection, never the 401 behind it.
const MAGIC = 0x2112a442
const ALLOCATE = 0x0003
const REFRESH = 0x0004
const SUCCESS = 0x0100
const ERROR = 0x0110
const ATTR = {
  username: 0x0006,
  integrity: 0x0008,
  errorCode: 0x0009,
  lifetime: 0x000d,
  realm: 0x0014,
  nonce: 0x0015,
  transport: 0x0019,
}

type Attrs = Map<number, Buffer>

function encode(method: number, attrs: Array<[number, Buffer]>, key?: Buffer): Buffer {
  const body = attrs.map(([type, value]) => {
    const pad = Buffer.alloc((4 - (value.length % 4)) % 4)
    const head = Buffer.alloc(4)
    head.writeUInt16BE(type, 0)
    head.writeUInt16BE(value.length, 2)
    return Buffer.concat([head, value, pad])
  })
  const header = Buffer.alloc(20)
  header.writeUInt16BE(method, 0)
  header.writeUInt32BE(MAGIC, 4)
  randomBytes(12).copy(header, 8)
  let msg = Buffer.concat([header, ...body])
  if (key !== undefined) {
    // MESSAGE-INTEGRITY covers the message with its length already counting the 24-byte attribute.
    msg.writeUInt16BE(msg.length - 20 + 24, 2)
    const mac = createHmac('sha1', key).update(msg).digest()
    const head = Buffer.from([0, ATTR.integrity, 0, 20])
    msg = Buffer.concat([msg, head, mac])
  }
  msg.writeUInt16BE(msg.length - 20, 2)
  return msg
}

function decode(msg: Buffer): { type: number; attrs: Attrs } | undefined {
  if (msg.length < 20 || msg.readUInt32BE(4) !== MAGIC) return undefined
  const attrs: Attrs = new Map()
  let at = 20
  while (at + 4 <= msg.length) {
    const type = msg.readUInt16BE(at)
    const len = msg.readUInt16BE(at + 2)
    if (at + 4 + len > msg.length) break
    attrs.set(type, msg.subarray(at + 4, at + 4 + len))
    at += 4 + len + ((4 - (len % 4)) % 4)
  }
  return { type: msg.readUInt16BE(0), attrs }
}

const errorCode = (attrs: Attrs) => {
  const v = attrs.get(ATTR.errorCode)
  return v === undefined || v.length < 4 ? 0 : ((v[2] ?? 0) & 7) * 100 + (v[3] ?? 0)
}

/**
 * Allocates a relay on the TURN server behind `url` (turn:HOST:PORT over UDP) with `username` and
 * `credential`, then frees it. Rejects with TurnError ERR_TURN_AUTH when the server answers 401
 * to the authenticated request, ERR_TURN_UNREACHABLE when it is silent for `timeoutMs` or fails otherwise.
 */
export async function probeTurn(
  url: string,
  username: string,
  credential: string,
  timeoutMs = 5_000,
): Promise<void> {
  const m = /^turn:(\[[^\]]+\]|[^:?]+)(?::(\d+))?(\?transport=udp)?$/.exec(url)
  if (m === null) return // turns: and TCP are left to ICE itself
  const host = (m[1] as string).replace(/^\[|\]$/g, '')
  const port = Number(m[2] ?? 3478)
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4')
  const ask = (msg: Buffer) =>
    new Promise<{ type: number; attrs: Attrs }>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new TurnError('ERR_TURN_UNREACHABLE', `TURN server ${url} did not answer in ${timeoutMs} ms`),
          ),
        timeoutMs,
      )
      socket.once('message', (data: Buffer) => {
        clearTimeout(timer)
        const answer = decode(data)
        if (answer === undefined)
          reject(new TurnError('ERR_TURN_UNREACHABLE', `TURN server ${url} sent no STUN answer`))
        else resolve(answer)
      })
      socket.send(msg, port, host)
    })
  try {
    const udp = Buffer.from([17, 0, 0, 0])
    const challenge = await ask(encode(ALLOCATE, [[ATTR.transport, udp]]))
    const realm = challenge.attrs.get(ATTR.realm)
    const nonce = challenge.attrs.get(ATTR.nonce)
    if (errorCode(challenge.attrs) !== 401 || realm === undefined || nonce === undefined) {
      throw new TurnError(
        'ERR_TURN_UNREACHABLE',
        `TURN server ${url} answered the allocation without a challenge`,
      )
    }
    const key = createHash('md5').update(`${username}:${realm.toString()}:${credential}`).digest()
    const signed: Array<[number, Buffer]> = [
      [ATTR.username, Buffer.from(username)],
      [ATTR.realm, realm],
      [ATTR.nonce, nonce],
    ]
    const answer = await ask(encode(ALLOCATE, [[ATTR.transport, udp], ...signed], key))
    if (answer.type === (ALLOCATE | SUCCESS)) {
      // Free the relay at once: it was only a test.
      await ask(encode(REFRESH, [[ATTR.lifetime, Buffer.alloc(4)], ...signed], key)).catch(() => undefined)
      return
    }
    const code = answer.type === (ALLOCATE | ERROR) ? errorCode(answer.attrs) : 0
    if (code === 401 || code === 438) {
      throw new TurnError(
        'ERR_TURN_AUTH',
        `TURN server ${url} refused the credentials for "${username}" (${code}): they expired, or the server's --turn-secret differs from the TURN server's static-auth-secret`,
      )
    }
    throw new TurnError('ERR_TURN_UNREACHABLE', `TURN server ${url} refused the allocation (error ${code})`)
  } finally {
    socket.close()
  }
}

/** Probes every UDP TURN server among `servers` that carries credentials; the first failure rejects. */
export async function probeTurnServers(servers: readonly IceServer[]): Promise<void> {
  for (const s of servers) {
    if (s.username === undefined || s.credential === undefined) continue
    for (const url of [s.urls].flat()) await probeTurn(url, s.username, s.credential)
  }
}
