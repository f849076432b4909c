import { ControlClient, generateIdentity } from '@butterfly/core'

// Test-only peers: socket.io clients that join a mesh exactly as a worker does (hello nonce,
// signed join proof, capabilities, heartbeats: core's ControlClient, which butterfly-worker and
// the tabs use), so the server places them and /health lists them. They never load layers or
// answer steps: enough to fill the mesh view, never enough to run a generation.

export interface SimulatedPeers {
  readonly names: readonly string[]
  close(): Promise<void>
}

/** Joins `count` peers named `sim-000`, `sim-001`, ... with varied speeds and memory. */
export async function joinSimulatedPeers(
  serverUrl: string,
  mesh: string,
  count: number,
): Promise<SimulatedPeers> {
  const clients: ControlClient[] = []
  const names = Array.from({ length: count }, (_, i) => `sim-${String(i).padStart(3, '0')}`)
  try {
    // A few at a time: the server admits joins at a bounded rate, and the CPU is shared.
    for (let i = 0; i < count; i += 10) {
      const batch = names.slice(i, i + 10).map(async (name, j) => {
        const client = await ControlClient.connect({ serverUrl })
        clients.push(client)
        await client.join({
          mesh,
          token: '',
          capabilities: {
            backend: 'cpu',
            memoryBytes: (1 + ((i + j) % 4)) * 2 ** 30,
            layerStepsPerSec: 500 + 37 * ((i + j) % 11),
            name,
          },
          identity: generateIdentity(),
        })
      })
      await Promise.all(batch)
    }
  } catch (err) {
    await Promise.all(clients.map((c) => c.leave()))
    throw err
  }
  return {
    names,
    close: async () => {
      await Promise.all(clients.map((c) => c.leave()))
    },
  }
}
