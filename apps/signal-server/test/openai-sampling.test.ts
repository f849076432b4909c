import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  expectedWeightShapes,
  generate,
  ReferenceModel,
  type SamplingParams,
  type Tokenizer,
  toFloat32,
} from '@butterfly/core'
import { createNodeBackend, type LoadedModel, loadModel, resolveModelDir } from '@butterfly/node-platform'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

// Log-probabilities, penalties and seeds through the official openai client, against real
// server and worker processes: mesh A splits the model over two workers (K = 2), mesh B runs it
// on one (K = 1). References: core's float64 ReferenceModel for log-probabilities, and a
// single-process `generate` for greedy tokens under penalties.
interface Health {
  meshes: Array<{ ready: boolean; plan: { stages: unknown[] } }>
}

const PROMPT = 'Once upon a time'
const N = 12
/** ORT computes in float32, the reference in float64 (logits agree within ~1e-4 relative). */
const LOGPROB_TOLERANCE = 2e-3
/** The same mesh computing the same tokens twice, streamed or not. */
const SAME_RUN_TOLERANCE = 1e-6

let cache: string
const procs: Proc[] = []
let a: OpenAI
let b: OpenAI
let modelId: string
let model: LoadedModel
let reference: ReferenceModel
let promptIds: number[]

function proc(bin: string, args: string[], name: string): Proc {
  const p = start(bin, args, {
    BUTTERFLY_CACHE_DIR: cache,
    BUTTERFLY_IDENTITY: join(cache, `${name}.identity.json`),
  })
  procs.push(p)
  return p
}

async function mesh(name: string, workers: number): Promise<OpenAI> {
  const server = proc(
    SERVER_BIN,
    ['--port', '0', '--model', 'synthetic:tiny', '--plan-strategy', 'uniform'],
    `${name}-server`,
  )
  const url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  for (let i = 0; i < workers; i++) {
    proc(
      WORKER_BIN,
      ['join', '--server', url, '--device', 'cpu', '--name', `${name}${i}`, '--memory', '1GB'],
      `${name}${i}`,
    )
  }
  await until<Health>(
    `${url}/health`,
    (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === workers,
  )
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 })
}

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-sampling-'))
  a = await mesh('a', 2)
  b = await mesh('b', 1)
  modelId = (await a.models.list()).data[0]?.id ?? ''
  model = await loadModel(await resolveModelDir('synthetic:tiny', cache))
  const weights = new Map<string, Float32Array>()
  for (const [name, shape] of expectedWeightShapes(model.config)) {
    weights.set(name, toFloat32(await model.weights(name, shape)))
  }
  reference = new ReferenceModel(model.config, weights)
  promptIds = model.tokenizer.encode(PROMPT, { addBos: true })
}, 180_000)

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()))
  await model?.close()
  await rm(cache, { recursive: true, force: true })
})

/** log-softmax in float64, independently of the code under test. */
function logSoftmax(logits: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY
  for (const v of logits) max = Math.max(max, v)
  let sum = 0
  for (const v of logits) sum += Math.exp(v - max)
  const lse = max + Math.log(sum)
  return Float64Array.from(logits, (v) => v - lse)
}

interface Reported {
  token: string
  logprob: number
  top: Array<{ token: string; logprob: number }>
}

/**
 * Walks the reference along the tokens the mesh reported: at each step, the reference's
 * log-probabilities; the reported token is matched to the id among the reference's likeliest
 * that decodes to it (nearest log-probability on a tie), which is then fed for the next step.
 */
function checkAgainstReference(reported: readonly Reported[], greedy: boolean): void {
  const tok: Tokenizer = model.tokenizer
  const cache = reference.createCache()
  let lp = logSoftmax(reference.forward(promptIds, cache))
  for (const [step, r] of reported.entries()) {
    const ranked = Array.from(lp.keys()).sort((x, y) => (lp[y] as number) - (lp[x] as number) || x - y)
    if (greedy) expect(r.token, `step ${step}`).toBe(tok.decode([ranked[0] as number]))
    const candidates = ranked.slice(0, 64).filter((id) => tok.decode([id]) === r.token)
    expect(candidates.length, `step ${step}: '${r.token}' among the reference's top 64`).toBeGreaterThan(0)
    const id = candidates.reduce((best, c) =>
      Math.abs((lp[c] as number) - r.logprob) < Math.abs((lp[best] as number) - r.logprob) ? c : best,
    )
    expect(Math.abs(r.logprob - (lp[id] as number)), `step ${step} logprob`).toBeLessThan(LOGPROB_TOLERANCE)
    // The alternatives: the reference's likeliest tokens, in order (a token text shown once,
    // with its likeliest id's log-probability).
    const distinct = [
      ...new Map(
        ranked
          .slice(0, 64)
          .map((id) => [tok.decode([id]), id] as const)
          .reverse(),
      ),
    ]
      .reverse()
      .map(([, id]) => lp[id] as number)
      .sort((x, y) => y - x)
    r.top.forEach((alt, i) => {
      expect(Math.abs(alt.logprob - (distinct[i] as number)), `step ${step} top ${i}`).toBeLessThan(
        LOGPROB_TOLERANCE,
      )
    })
    checkSorted(r)
    lp = logSoftmax(reference.forward([id], cache))
  }
}

function checkSorted(r: Reported): void {
  expect(r.logprob).toBeLessThanOrEqual(0)
  for (let i = 1; i < r.top.length; i++) {
    expect(r.top[i]?.logprob).toBeLessThanOrEqual(r.top[i - 1]?.logprob as number)
  }
  // The chosen token is listed whenever it is at least as likely as the last alternative.
  const last = r.top[r.top.length - 1]
  if (last !== undefined && r.logprob > last.logprob + SAME_RUN_TOLERANCE) {
    expect(
      r.top.some((t) => t.token === r.token && Math.abs(t.logprob - r.logprob) < SAME_RUN_TOLERANCE),
    ).toBe(true)
  }
}

async function completionWithLogprobs(client: OpenAI, extra: { temperature: number; seed?: number }) {
  const res = await client.completions.create({
    model: modelId,
    prompt: PROMPT,
    max_tokens: N,
    logprobs: 5,
    ...extra,
  })
  const lp = res.choices[0]?.logprobs
  const tokens = lp?.tokens ?? []
  expect(tokens).toHaveLength(res.usage?.completion_tokens ?? -1)
  const reported: Reported[] = tokens.map((token, i) => ({
    token,
    logprob: lp?.token_logprobs?.[i] as number,
    // A JSON object has no order (and lists integer-like keys first): sort by log-probability.
    top: Object.entries(lp?.top_logprobs?.[i] ?? {})
      .map(([t, l]) => ({ token: t, logprob: l }))
      .sort((x, y) => y.logprob - x.logprob),
  }))
  return {
    text: res.choices[0]?.text ?? '',
    reported,
    offsets: lp?.text_offset ?? [],
    fingerprint: res.system_fingerprint,
  }
}

describe('logprobs', () => {
  test('completions, greedy: the reference log-probabilities at temperature 1, sorted alternatives', async () => {
    const { text, reported, offsets, fingerprint } = await completionWithLogprobs(a, { temperature: 0 })
    expect(reported.length).toBeGreaterThan(0)
    checkAgainstReference(reported, true)
    // Each token starts where the text before it ends.
    let at = 0
    reported.forEach((r, i) => {
      expect(offsets[i]).toBe(at)
      at += r.token.length
    })
    if (!text.includes('\ufffd')) expect(reported.map((r) => r.token).join('')).toBe(text)
    expect(fingerprint).toMatch(/^fp_[0-9a-f]{12}$/)
  })

  test('completions, sampled at temperature 0.5: still the temperature-1 log-probabilities', async () => {
    const { reported } = await completionWithLogprobs(a, { temperature: 0.5, seed: 7 })
    checkAgainstReference(reported, false)
  })

  test('completions streamed: the same log-probabilities, chunk by chunk', async () => {
    const plain = await completionWithLogprobs(a, { temperature: 0 })
    const stream = await a.completions.create({
      model: modelId,
      prompt: PROMPT,
      max_tokens: N,
      logprobs: 5,
      temperature: 0,
      stream: true,
    })
    const tokens: string[] = []
    const logprobs: number[] = []
    for await (const chunk of stream) {
      const lp = chunk.choices[0]?.logprobs
      tokens.push(...(lp?.tokens ?? []))
      logprobs.push(...((lp?.token_logprobs ?? []) as number[]))
    }
    expect(tokens).toEqual(plain.reported.map((r) => r.token))
    logprobs.forEach((l, i) => {
      expect(Math.abs(l - (plain.reported[i]?.logprob as number))).toBeLessThan(SAME_RUN_TOLERANCE)
    })
  })

  test('chat, plain and streamed: content[] with top_logprobs, agreeing with each other', async () => {
    const body = {
      model: modelId,
      messages: [{ role: 'user' as const, content: 'To be, or not to be?' }],
      max_completion_tokens: N,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
    }
    const res = await a.chat.completions.create(body)
    const content = res.choices[0]?.logprobs?.content ?? []
    expect(content).toHaveLength(res.usage?.completion_tokens ?? -1)
    for (const c of content) {
      expect(c.top_logprobs).toHaveLength(3)
      expect(c.bytes).toEqual(Array.from(new TextEncoder().encode(c.token)))
      // Greedy: the chosen token is the likeliest.
      expect(c.top_logprobs[0]?.token).toBe(c.token)
      checkSorted({ token: c.token, logprob: c.logprob, top: c.top_logprobs })
    }
    const text = res.choices[0]?.message.content ?? ''
    if (!text.includes('\ufffd')) expect(content.map((c) => c.token).join('')).toBe(text)

    const stream = await a.chat.completions.create({ ...body, stream: true })
    const streamed: typeof content = []
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []))
    expect(streamed.map((c) => c.token)).toEqual(content.map((c) => c.token))
    streamed.forEach((c, i) => {
      expect(Math.abs(c.logprob - (content[i]?.logprob as number))).toBeLessThan(SAME_RUN_TOLERANCE)
    })
  })
})

/** Greedy text of the whole model in this process, with the penalties. */
async function singleProcess(sampling: SamplingParams): Promise<string> {
  return model.tokenizer.decode(await greedyIds(sampling))
}

async function greedyIds(sampling: SamplingParams): Promise<number[]> {
  const stage = await createNodeBackend().createStage(
    { config: model.config, layerStart: 0, layerEnd: model.config.numLayers },
    model.weights,
  )
  try {
    const ids: number[] = []
    const eos = model.tokenizer.eosTokenId
    for await (const t of generate(
      { stages: [stage], maxContext: model.config.maxContext },
      { promptIds, maxTokens: N, sampling, ...(eos === undefined ? {} : { stopTokenIds: [eos] }) },
    )) {
      ids.push(t.id)
    }
    return ids
  } finally {
    await stage.dispose()
  }
}

describe('frequency and presence penalties', () => {
  test('greedy output changes exactly as the single-process run predicts, for K = 1 and K = 2', async () => {
    const penalties = { frequency_penalty: 1.5, presence_penalty: 1 }
    const predicted = await singleProcess({ temperature: 0, frequencyPenalty: 1.5, presencePenalty: 1 })
    const plain = await singleProcess({ temperature: 0 })
    expect(predicted).not.toBe(plain)
    for (const client of [a, b]) {
      const res = await client.completions.create({
        model: modelId,
        prompt: PROMPT,
        max_tokens: N,
        temperature: 0,
        ...penalties,
      })
      expect(res.choices[0]?.text).toBe(predicted)
      const none = await client.completions.create({
        model: modelId,
        prompt: PROMPT,
        max_tokens: N,
        temperature: 0,
      })
      expect(none.choices[0]?.text).toBe(plain)
    }
  })
})

describe('logit_bias', () => {
  test('banning the first greedy token changes the output as the single-process run predicts', async () => {
    const plain = await greedyIds({ temperature: 0 })
    expect(plain.length).toBeGreaterThan(0)
    const first = plain[0] as number
    const predicted = await singleProcess({ temperature: 0, logitBias: { [first]: -100 } })
    for (const client of [a, b]) {
      const res = await client.completions.create({
        model: modelId,
        prompt: PROMPT,
        max_tokens: N,
        temperature: 0,
        logit_bias: { [String(first)]: -100 },
      })
      expect(res.choices[0]?.text).toBe(predicted)
    }
    expect(predicted).not.toBe(model.tokenizer.decode(plain))
  })
})

describe('seed', () => {
  const sampled = (client: OpenAI, seed: number) =>
    client.completions
      .create({ model: modelId, prompt: PROMPT, max_tokens: N, temperature: 1, seed })
      .then((r) => r.choices[0]?.text ?? '')

  test('the same seed and body give the same tokens, twice and across K = 1 and K = 2', async () => {
    const first = await sampled(a, 1234)
    expect(await sampled(a, 1234)).toBe(first)
    expect(await sampled(b, 1234)).toBe(first)
    expect(await sampled(a, 1235)).not.toBe(first)
  })

  test('a seeded chat stream gives the text of the same request unstreamed', async () => {
    const body = {
      model: modelId,
      messages: [{ role: 'user' as const, content: 'Speak.' }],
      max_completion_tokens: N,
      temperature: 0.9,
      seed: -42,
    }
    const plain = await b.chat.completions.create(body)
    const stream = await a.chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    })
    let text = ''
    let usage: number | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? ''
      if (chunk.usage) usage = chunk.usage.completion_tokens
    }
    expect(text).toBe(plain.choices[0]?.message.content)
    expect(usage).toBe(plain.usage?.completion_tokens)
  })
})

describe('refused fields through the openai client', () => {
  const refused: Array<[string, Record<string, unknown>, string]> = [
    [
      'tools',
      { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] },
      'unsupported_field',
    ],
    ['tool_choice', { tool_choice: 'required' }, 'unsupported_field'],
    ['functions', { functions: [{ name: 'f' }] }, 'unsupported_field'],
    ['function_call', { function_call: { name: 'f' } }, 'unsupported_field'],
    ['n', { n: 2 }, 'unsupported_field'],
    ['response_format', { response_format: { type: 'json_object' } }, 'unsupported_field'],
    ['logit_bias', { logit_bias: { '3': 500 } }, 'invalid_request_error'],
    ['audio', { audio: { voice: 'alloy', format: 'mp3' } }, 'unsupported_field'],
    ['modalities', { modalities: ['text', 'audio'] }, 'unsupported_field'],
    ['prediction', { prediction: { type: 'content', content: 'x' } }, 'unsupported_field'],
    ['max_completion_tokens', { max_completion_tokens: 3, max_tokens: 4 }, 'invalid_request_error'],
    ['top_logprobs', { logprobs: true, top_logprobs: 21 }, 'invalid_request_error'],
    ['frequency_penalty', { frequency_penalty: 3 }, 'invalid_request_error'],
    ['seed', { seed: 0.5 }, 'invalid_request_error'],
  ]
  test.each(refused)('%s answers 400 naming the field', async (param, fields, code) => {
    const err = await a.chat.completions
      .create({ model: modelId, messages: [{ role: 'user', content: 'hi' }], ...fields } as never)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    const e = err as InstanceType<typeof OpenAI.BadRequestError>
    expect(e.status).toBe(400)
    expect(e.code).toBe(code)
    expect(e.param).toBe(param)
    expect(e.type).toBe('invalid_request_error')
  })

  test('completions refuse echo, naming it', async () => {
    const err = await a.completions.create({ model: modelId, prompt: PROMPT, echo: true }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('echo')
  })

  test('completions stream with include_usage ends with a usage chunk', async () => {
    const stream = await a.completions.create({
      model: modelId,
      prompt: PROMPT,
      max_tokens: 3,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    })
    let usage: number | undefined
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage.completion_tokens
    expect(usage).toBeLessThanOrEqual(3)
    expect(usage).toBeGreaterThan(0)
  })
})
