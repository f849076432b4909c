import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import { sendError } from './http-errors.js'

/** Where `npm install` builds apps/web (vite build), relative to this package. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../../web/dist', import.meta.url))

/**
 * Serves the built web app at `/`. Pages are cross-origin isolated (COOP/COEP), which
 * onnxruntime-web needs to run WASM on more than one thread. Without a build, `/` says how to
 * make one instead of a bare 404.
 */
export async function registerWebRoutes(app: FastifyInstance, dir: string = DEFAULT_WEB_DIR): Promise<void> {
  if (!existsSync(`${dir}/index.html`)) {
    app.get('/', (_request, reply) =>
      sendError(
        reply,
        404,
        'web_app_not_built',
        `the web app is not built in ${dir}: run npm run build -w @butterfly/web`,
      ),
    )
    return
  }
  await app.register(fastifyStatic, {
    root: dir,
    index: 'index.html',
    wildcard: false,
    setHeaders: (res) => {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin')
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp')
    },
  })
}
