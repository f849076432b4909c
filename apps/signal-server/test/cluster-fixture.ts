import { type RedisServer, startRedis } from '@butterfly/testing/node'
import { createClient } from 'redis'
import type { ServerInit, SignalServer } from '../src/http/signal-server.js'
import { closeClients, startServer, tinyModel } from './helpers.js'

type ServerOptions = Partial<ServerInit> & Pick<ServerInit, 'meshes'>

/** In-process servers on one real redis-server, and a rogue client with write access to it. */
export interface ClusterFixture {
  readonly redis: RedisServer
  readonly servers: SignalServer[]
  readonly rogue: ReturnType<typeof createClient>
  /**
   * Syncs by hand, one server after another (default: every server, twice over). Each sync ends
   * once its own writes have landed, so two rounds carry any change across.
   */
  sync(order?: readonly SignalServer[]): Promise<void>
  close(): Promise<void>
}

/**
 * Starts redis-server, the embedded tiny model, and one server per init `inits(meshes, url)`
 * returns, in that order (the first takes the planning lease). Tests drive syncs themselves: give
 * each server a long `syncMs`.
 */
export async function startClusterFixture(
  inits: (meshes: ServerInit['meshes'], redisUrl: string) => ServerOptions[],
): Promise<ClusterFixture> {
  const redis = await startRedis()
  const model = await tinyModel()
  const servers: SignalServer[] = []
  for (const init of inits([{ name: 'default', modelDir: model.dir }], redis.url)) {
    servers.push(await startServer(init))
  }
  const rogue = createClient({ url: redis.url })
  await rogue.connect()
  return {
    redis,
    servers,
    rogue,
    sync: async (order = [...servers, ...servers]) => {
      for (const s of order) await s.cluster?.sync()
    },
    close: async () => {
      rogue.destroy()
      for (const s of servers) await closeClients(s).then(() => s.close())
      await redis.stop()
      await model.cleanup()
    },
  }
}
