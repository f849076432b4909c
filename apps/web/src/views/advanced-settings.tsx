import { useSettings } from '../store/settings-store.js'

const number = (v: string, fallback: number) =>
  v !== '' && Number.isFinite(Number(v)) ? Number(v) : fallback

/** Sampling settings and raw completion mode, folded away until someone asks for them. */
export function AdvancedSettings() {
  const { sampling, rawMode, setSampling, setRawMode } = useSettings()
  return (
    <details className="advanced">
      <summary>Advanced</summary>
      <div className="settings-grid">
        <label>
          Max tokens
          <input
            name="max-tokens"
            type="number"
            min={1}
            max={4096}
            value={sampling.maxTokens}
            onChange={(e) => setSampling({ maxTokens: number(e.target.value, 256) })}
          />
        </label>
        <label>
          Temperature
          <input
            name="temperature"
            type="number"
            min={0}
            max={2}
            step={0.1}
            value={sampling.temperature}
            onChange={(e) => setSampling({ temperature: number(e.target.value, 0.7) })}
          />
        </label>
        <label>
          Top-p
          <input
            name="top-p"
            type="number"
            min={0.01}
            max={1}
            step={0.01}
            value={sampling.topP}
            onChange={(e) => setSampling({ topP: number(e.target.value, 1) })}
          />
        </label>
        <label>
          Seed
          <input
            name="seed"
            type="number"
            min={0}
            placeholder="random"
            value={sampling.seed ?? ''}
            onChange={(e) =>
              setSampling({ seed: e.target.value === '' ? undefined : number(e.target.value, 0) })
            }
          />
        </label>
      </div>
      <label className="toggle">
        <input type="checkbox" checked={rawMode} onChange={(e) => setRawMode(e.target.checked)} />
        Raw completion mode (the prompt as is, no chat template)
      </label>
    </details>
  )
}
