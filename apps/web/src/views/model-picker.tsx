import { useEffect } from 'react'
import { useModels } from '../store/model-store.js'
import { useSettings } from '../store/settings-store.js'

const size = (bytes: number | undefined) =>
  bytes === undefined
    ? 'size unknown'
    : bytes >= 2 ** 30
      ? `${(bytes / 2 ** 30).toFixed(1)} GiB`
      : `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** Which model to talk to, when the server hosts several meshes; each with its size and readiness. */
export function ModelPicker() {
  const { models, refresh } = useModels()
  const { model, setModel } = useSettings()
  useEffect(() => {
    void refresh()
    const timer = setInterval(() => void refresh(), 5000)
    return () => clearInterval(timer)
  }, [refresh])
  if (models.length < 2) return null
  const current = models.find((m) => m.id === model) ?? models[0]
  return (
    <label className="model-picker">
      Model
      <select value={current?.id} onChange={(e) => setModel(e.target.value)} data-testid="model-picker">
        {models.map((m) => (
          <option key={m.id} value={m.id}>
            {`${m.id} (${m.mesh ?? 'no mesh'}), ${size(m.sizeBytes)}, ${
              m.ready ? `ready on ${m.peers} peer${m.peers === 1 ? '' : 's'}` : 'not ready yet'
            }`}
          </option>
        ))}
      </select>
    </label>
  )
}
