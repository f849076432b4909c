import { createGateway, type Gateway } from '../gateway/gateway.js'
import type { MeshGatewayInit } from '../gateway/mesh-gateway.js'
import type { ServerParts } from '../http/signal-server.js'
import { CompletionService } from './completion-service.js'
import { registerOpenAiRoutes } from './openai-routes.js'

export type { Gateway }

export interface GatewayInit extends MeshGatewayInit {
  readonly apiToken?: string | undefined
}

/**
 * Adds the coordinator to a running server: one MeshGateway per mesh (createGateway), a
 * CompletionService over them, and the OpenAI-compatible routes in front of it.
 */
export async function attachGateway(
  server: ServerParts,
  init: GatewayInit,
  components: { wrtc: unknown; log?: (line: string) => void },
): Promise<Gateway> {
  const gateway = await createGateway(server, init, components)
  const { metrics } = server
  const service = new CompletionService(gateway, {
    onTokens: (mesh, prompt, completion) => {
      metrics.tokens.inc({ mesh, kind: 'prompt' }, prompt)
      metrics.tokens.inc({ mesh, kind: 'completion' }, completion)
    },
    onRejected: (mesh, reason) => metrics.generationsRejected.inc({ mesh, reason }),
  })
  registerOpenAiRoutes(server.app, {
    service,
    ...(init.apiToken === undefined ? {} : { apiToken: init.apiToken }),
    observer: {
      onRequest: (route, status, seconds) =>
        metrics.requestDuration.observe({ route, status: String(status) }, seconds),
    },
  })
  return gateway
}
