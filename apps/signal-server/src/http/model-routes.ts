import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { FileDigest, ModelIndex } from '../control/model-index.js'
import { sendError } from './http-errors.js'
import { parseRange } from './http-range.js'

const contentType = (file: string) =>
  file.endsWith('.json') ? 'application/json; charset=utf-8' : 'application/octet-stream'

// Browser workers may load from another origin (a dev server, a static host), and need to read
// these headers to verify and resume range downloads.
const CORS = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'Content-Range, Content-Length, ETag, Accept-Ranges',
}

interface Params {
  mesh: string
  file: string
}

/**
 * GET/HEAD `/models/:mesh/manifest.json` and `/models/:mesh/<file>` for the files the manifest
 * lists (config.json, tokenizer.json, model.safetensors or the index and its shards), with
 * single-range support. `lookup` maps a mesh name to its indexed model directory.
 */
export function registerModelRoutes(
  app: FastifyInstance,
  lookup: (mesh: string) => ModelIndex | undefined,
): void {
  const manifests = new Map<ModelIndex, { body: string; etag: string }>()
  const manifestOf = (index: ModelIndex) => {
    let m = manifests.get(index)
    if (m === undefined) {
      const body = JSON.stringify(index.manifest)
      m = { body, etag: `"${createHash('sha256').update(body).digest('hex')}"` }
      manifests.set(index, m)
    }
    return m
  }

  app.options<{ Params: Params }>('/models/:mesh/:file', async (_request, reply) => {
    return reply
      .code(204)
      .headers({
        ...CORS,
        'access-control-allow-methods': 'GET, HEAD, OPTIONS',
        'access-control-allow-headers': 'Range, If-Range, If-None-Match',
        'access-control-max-age': '86400',
      })
      .send()
  })

  // HEAD is routed explicitly: Fastify's implicit HEAD would read the whole range and drop it.
  app.route<{ Params: Params }>({
    method: ['GET', 'HEAD'],
    url: '/models/:mesh/:file',
    handler: async (request, reply) => {
      const { mesh, file } = request.params
      const index = lookup(mesh)
      reply.headers(CORS)
      if (index === undefined) return sendError(reply, 404, 'mesh_not_found', `no mesh named "${mesh}"`)
      if (file === 'manifest.json') {
        const m = manifestOf(index)
        reply.header('etag', m.etag).header('cache-control', 'no-cache')
        if (request.headers['if-none-match'] === m.etag) return reply.code(304).send()
        return reply.type('application/json; charset=utf-8').send(m.body)
      }
      if (!index.paths.has(file)) {
        return sendError(reply, 404, 'file_not_found', `mesh "${mesh}" serves no file named "${file}"`)
      }
      return sendFile(request, reply, index, file)
    },
  })
}

function sendFile(
  request: FastifyRequest,
  reply: FastifyReply,
  index: ModelIndex,
  file: string,
): FastifyReply {
  const { size, sha256 } = index.manifest.files[file] as FileDigest
  const etag = `"${sha256}"`
  reply
    .header('accept-ranges', 'bytes')
    .header('etag', etag)
    .header('cache-control', 'no-cache')
    .type(contentType(file))
  if (request.headers['if-none-match'] === etag) return reply.code(304).send()

  // If-Range: a client resuming a download of an older file must get the new one whole.
  const ifRange = request.headers['if-range']
  const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined
  const range = parseRange(rangeHeader, size)
  if (range.kind === 'unsatisfiable') {
    reply.header('content-range', `bytes */${size}`)
    return sendError(reply, 416, 'range_not_satisfiable', `range "${rangeHeader}" is outside ${size} bytes`)
  }
  const start = range.kind === 'partial' ? range.start : 0
  const end = range.kind === 'partial' ? range.end : size - 1
  if (range.kind === 'partial') reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`)
  reply.header('content-length', String(end - start + 1))
  const path = index.paths.get(file) as string
  if (request.method === 'HEAD' || end < start) return reply.send()
  return reply.send(createReadStream(path, { start, end }))
}
