import { create } from 'zustand'
import { persist } from 'zustand/middleware'
import type { Sampling } from '../api/token-pieces.js'

export interface SettingsState {
  readonly sampling: Sampling
  /** Send the prompt to /v1/completions as is, without the chat template. */
  readonly rawMode: boolean
  /** Show each token coloured by how it was verified, instead of the rendered Markdown. */
  readonly showProvenance: boolean
  /** The model chosen in the picker; undefined picks the first the server lists. */
  readonly model: string | undefined
  setSampling(s: Partial<Sampling>): void
  setRawMode(on: boolean): void
  setShowProvenance(on: boolean): void
  setModel(id: string | undefined): void
}

export const DEFAULT_SAMPLING: Sampling = { maxTokens: 256, temperature: 0.7, topP: 1, seed: undefined }

/** The chat's settings, kept in localStorage so a reload keeps them. */
export const useSettings = create<SettingsState>()(
  persist(
    (set, get) => ({
      sampling: DEFAULT_SAMPLING,
      rawMode: false,
      showProvenance: false,
      model: undefined,
      setSampling: (s) => set({ sampling: { ...get().sampling, ...s } }),
      setRawMode: (rawMode) => set({ rawMode }),
      setShowProvenance: (showProvenance) => set({ showProvenance }),
      setModel: (model) => set({ model }),
    }),
    { name: 'butterfly-chat-settings', version: 1 },
  ),
)
