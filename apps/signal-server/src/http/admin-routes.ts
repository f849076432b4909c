import type { FastifyInstance, FastifyReply } from 'fastify'
import type { JoinAdmission } from '../control/join-admission.js'
import { checkLabel, JOIN_TOKEN_LIMITS } from '../control/join-tokens.js'
import type { MeshRegistry } from '../control/mesh-registry.js'
import { requireBearer } from './auth.js'
import { ApiError } from './http-errors.js'

/** Admin request bodies are small; anything bigger is refused before it is parsed. */
const ADMIN_BODY_LIMIT = 4096
const ISSUE_FIELDS: ReadonlySet<string> = new Set(['mesh', 'label', 'expiresInSeconds'])
const TOKEN_ID = /^jt_[0-9a-f]{16}$/

function invalid(reply: FastifyReply, param: string, message: string): FastifyReply {
  return reply.code(400).send(new ApiError(400, 'ERR_ADMIN_INPUT', message, param).body())
}

/**
 * The operator's API under /admin, behind `Authorization: Bearer <admin token>` (compared in
 * constant time): issue, list and revoke per-peer join tokens. Registered only with an admin
 * token; without one every /admin route is a 404.
 */
export function registerAdminRoutes(
  app: FastifyInstance,
  adminToken: string,
  meshes: MeshRegistry,
  admission: JoinAdmission,
): void {
  const tokens = admission.tokens
  if (tokens === undefined) throw new TypeError('admin routes need a join-token store')
  app.register(
    async (admin) => {
      admin.addHook('onRequest', requireBearer(adminToken))

      admin.post('/join-tokens', { bodyLimit: ADMIN_BODY_LIMIT }, async (request, reply) => {
        const body = request.body
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          return invalid(reply, 'body', 'the body must be a JSON object {mesh, label?, expiresInSeconds?}')
        }
        const fields = body as Record<string, unknown>
        const unknown = Object.keys(fields).find((k) => !ISSUE_FIELDS.has(k))
        if (unknown !== undefined)
          return invalid(reply, unknown.slice(0, 64), `unknown field "${unknown.slice(0, 64)}"`)
        const { mesh, label, expiresInSeconds } = fields
        if (typeof mesh !== 'string' || meshes.get(mesh) === undefined) {
          return invalid(
            reply,
            'mesh',
            `mesh must name a mesh this server runs (${meshes
              .list()
              .map((m) => m.name)
              .join(', ')})`,
          )
        }
        let checkedLabel: string | null
        try {
          checkedLabel = checkLabel(label, 'label')
        } catch (err) {
          return invalid(reply, 'label', (err as Error).message)
        }
        const max = JOIN_TOKEN_LIMITS.maxExpiresInSeconds
        if (
          expiresInSeconds !== undefined &&
          (typeof expiresInSeconds !== 'number' ||
            !Number.isSafeInteger(expiresInSeconds) ||
            expiresInSeconds < 1 ||
            expiresInSeconds > max)
        ) {
          return invalid(reply, 'expiresInSeconds', `expiresInSeconds must be an integer from 1 to ${max}`)
        }
        const issued = tokens.issue({
          mesh,
          label: checkedLabel ?? undefined,
          expiresInSeconds: expiresInSeconds as number | undefined,
        })
        return reply.code(201).header('cache-control', 'no-store').send(issued)
      })

      admin.get('/join-tokens', async (_request, reply) =>
        reply.header('cache-control', 'no-store').send({ tokens: tokens.list() }),
      )

      admin.delete<{ Params: { id: string } }>('/join-tokens/:id', async (request, reply) => {
        const { id } = request.params
        if (!TOKEN_ID.test(id)) return invalid(reply, 'id', 'a token id is jt_ and 16 hex digits')
        const before = admission.revoke(id)
        if (before === undefined) {
          return reply
            .code(404)
            .send(new ApiError(404, 'ERR_JOIN_TOKEN_UNKNOWN', `no join token ${id}`).body())
        }
        return reply.header('cache-control', 'no-store').send({ revoked: tokens.get(id) })
      })
    },
    { prefix: '/admin' },
  )
}
