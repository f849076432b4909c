/**
 * llama.cpp (through node-llama-cpp) as the independent reference for greedy decoding. It is not a
 * dependency: `scripts/ensure-llama-cpp.mjs` installs a pinned release into .cache/llama-cpp (or
 * BUTTERFLY_LLAMA_CPP_DIR), and this file imports it from there by file URL.
 */
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

/** Where the script installs node-llama-cpp (the same default and override as the script). */
export function llamaCppDir(): string {
  return process.env.BUTTERFLY_LLAMA_CPP_DIR ?? join(ROOT, '.cache', 'llama-cpp')
}

// The slice of node-llama-cpp's API used here; its own .d.ts files are not on our type path.
interface NlcOutput {
  next: { probabilities?: Map<number, number>; token?: number | null }
}
interface NlcSequence {
  controlledEvaluate(
    input: Array<number | [number, { generateNext: Record<string, unknown> }]>,
  ): Promise<Array<NlcOutput | undefined>>
}
interface NlcContext {
  getSequence(): NlcSequence
  dispose(): Promise<void>
}
interface NlcModel {
  createContext(options: Record<string, unknown>): Promise<NlcContext>
  tokenize(text: string, specialTokens: boolean): number[]
  detokenize(tokens: readonly number[], specialTokens: boolean): string
  dispose(): Promise<void>
}
interface NlcLlama {
  loadModel(options: Record<string, unknown>): Promise<NlcModel>
  dispose(): Promise<void>
}
interface NlcModule {
  getLlama(options: Record<string, unknown>): Promise<NlcLlama>
  LlamaLogLevel: Record<string, string>
}

/** One llama.cpp binding, shared by a test file; `dispose()` in afterAll. */
export interface LlamaCpp {
  /**
   * Greedy decoding of `steps` tokens after `prompt` (token ids). `gaps[i]` is the logit gap
   * between the two leading candidates of step i (ln p1 - ln p2 at temperature 1), for tie detection.
   */
  greedy(
    ggufPath: string,
    prompt: readonly number[],
    steps: number,
    options?: { contextSize?: number },
  ): Promise<{ tokens: number[]; gaps: number[] }>
  /**
   * Greedy decoding timed for a bench: the load (model and context, from a file read into memory,
   * no mmap), the prompt, then `steps` tokens one at a time, on `threads` threads, with an F32 KV
   * cache and flash attention off (what gives our greedy tokens).
   */
  timed(
    ggufPath: string,
    prompt: readonly number[],
    steps: number,
    options: { threads: number; contextSize?: number },
  ): Promise<LlamaCppTimed>
  /** llama.cpp's tokenizer of a GGUF, loaded vocabulary only (no tensors needed). */
  vocab(ggufPath: string): Promise<LlamaCppVocab>
  dispose(): Promise<void>
}

export interface LlamaCppTimed {
  readonly loadMs: number
  /** Prompt to first token. */
  readonly prefillMs: number
  /** Tokens after the first, per second. */
  readonly decodeTokensPerSec: number
  readonly tokens: number[]
}

/** llama.cpp's tokenizer (llama_tokenize / llama_detokenize); never adds BOS or EOS. */
export interface LlamaCppVocab {
  /** With `special`, the text of control tokens (`<|im_start|>`) becomes their ids. */
  tokenize(text: string, special: boolean): number[]
  /** With `special`, control tokens are rendered as their text. */
  detokenize(ids: readonly number[], special: boolean): string
  dispose(): Promise<void>
}

/** Loads node-llama-cpp's prebuilt CPU binaries (no GPU, never builds). */
export async function loadLlamaCpp(): Promise<LlamaCpp> {
  const dir = llamaCppDir()
  const entry = join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')
  if (!existsSync(entry)) {
    throw new Error(
      `node-llama-cpp is not installed in ${dir}: run \`node scripts/ensure-llama-cpp.mjs\` (npm test's pretest runs it)`,
    )
  }
  const nlc = (await import(pathToFileURL(entry).href)) as NlcModule
  const llama = await nlc.getLlama({
    gpu: false,
    build: 'never',
    logLevel: process.env.BUTTERFLY_LLAMA_CPP_LOG === '1' ? nlc.LlamaLogLevel.warn : nlc.LlamaLogLevel.error,
    progressLogs: false,
  })
  /** A context that gives our greedy tokens: F32 KV cache, flash attention off. */
  const exactContext = (model: NlcModel, contextSize: number | undefined, threads: number) =>
    model.createContext({
      contextSize: contextSize ?? 256,
      sequences: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
      // The real sliding window, as the model defines it (not widened to the context).
      swaFullCache: false,
      threads,
    })
  return {
    async greedy(ggufPath, prompt, steps, options = {}) {
      const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, useMmap: false })
      try {
        const context = await exactContext(model, options.contextSize, 1)
        try {
          const sequence = context.getSequence()
          // Temperature 1 and no truncation, so the probabilities are the softmax of the raw logits;
          // the token taken is their argmax (greedy), never a sample.
          const next = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } }
          const tokens: number[] = []
          const gaps: number[] = []
          let input: Array<number | [number, { generateNext: Record<string, unknown> }]> = [
            ...prompt.slice(0, -1),
            [prompt[prompt.length - 1] as number, { generateNext: next }],
          ]
          for (let s = 0; s < steps; s++) {
            const out = await sequence.controlledEvaluate(input)
            const probs = out[out.length - 1]?.next.probabilities
            if (probs === undefined) throw new Error('llama.cpp returned no probabilities')
            const [first, second] = topTwo(probs)
            tokens.push(first[0])
            gaps.push(Math.log(first[1]) - Math.log(second[1]))
            input = [[first[0], { generateNext: next }]]
          }
          return { tokens, gaps }
        } finally {
          await context.dispose()
        }
      } finally {
        await model.dispose()
      }
    },
    async timed(ggufPath, prompt, steps, options) {
      const start = performance.now()
      const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, useMmap: false })
      try {
        const context = await exactContext(model, options.contextSize, options.threads)
        const loaded = performance.now()
        try {
          const sequence = context.getSequence()
          // Greedy: the sampler's token at temperature 0, without the full probability map.
          const next = { token: true, options: { temperature: 0 } }
          const tokens: number[] = []
          let input: Array<number | [number, { generateNext: Record<string, unknown> }]> = [
            ...prompt.slice(0, -1),
            [prompt[prompt.length - 1] as number, { generateNext: next }],
          ]
          let first = loaded
          for (let s = 0; s < steps; s++) {
            const out = await sequence.controlledEvaluate(input)
            const token = out[out.length - 1]?.next.token
            if (token === undefined || token === null) throw new Error('llama.cpp returned no token')
            if (s === 0) first = performance.now()
            tokens.push(token)
            input = [[token, { generateNext: next }]]
          }
          const end = performance.now()
          return {
            loadMs: loaded - start,
            prefillMs: first - loaded,
            decodeTokensPerSec: (steps - 1) / ((end - first) / 1000),
            tokens,
          }
        } finally {
          await context.dispose()
        }
      } finally {
        await model.dispose()
      }
    },
    async vocab(ggufPath) {
      // node-llama-cpp first simulates a full load to size memory; on a file without tensors that
      // logs "missing tensor 'token_embd.weight'" and falls back to its estimate. The
      // vocabulary-only load itself needs no tensors.
      const model = await llama.loadModel({ modelPath: ggufPath, vocabOnly: true, gpuLayers: 0 })
      return {
        tokenize: (text, special) => Array.from(model.tokenize(text, special)),
        detokenize: (ids, special) => model.detokenize(ids, special),
        dispose: () => model.dispose(),
      }
    },
    dispose: () => llama.dispose(),
  }
}

/** The two most probable entries (the map is sorted, but ties are broken here by lower id). */
function topTwo(probs: Map<number, number>): [[number, number], [number, number]] {
  let a: [number, number] = [-1, -1]
  let b: [number, number] = [-1, -1]
  for (const [t, p] of probs) {
    if (p > a[1] || (p === a[1] && t < a[0])) {
      b = a
      a = [t, p]
    } else if (p > b[1]) b = [t, p]
  }
  return [a, b]
}
