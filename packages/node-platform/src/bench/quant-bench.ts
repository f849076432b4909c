import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Pipeline, stageMemoryBytes } from '@butterfly/core'
import { createLocalPipeline } from '../backend/local-pipeline.js'
import { createNodeBackend } from '../backend/node-backend.js'
import { convertModelDir, type ModelDtype } from '../models/model-convert.js'
import { cacheDir, type LoadedModel, loadModel, resolveModelDir } from '../models/model-store.js'
import { benchPrompt, type FootprintResult, measureFootprint, timeGeneration } from './engine-run.js'
import { teacherForced, topOneAgreement } from './quant-eval.js'
import { median } from './stats.js'

/**
 * `npm run bench`, weight formats: fp32, fp16 and int4 (MatMulNBits, block 32) copies of the same
 * model side by side. For each: bytes of model.safetensors, the planner's weight estimate, peak
 * RSS (load + a short generation, alone in a child process), decode tokens/s (K = 1, all three
 * timed round-robin in one process, medians), and, teacher-forced over held-out text (the last
 * 10% of tinyshakespeare), the loss in nats/token and the top-1 agreement with fp32.
 *
 * Runs on synthetic:100m (speed and memory; random weights make its loss meaningless) and on a
 * trained model directory when there is one (`--model DIR`, $BUTTERFLY_BENCH_QUANT_MODEL, or
 * models/shakespeare), which is converted to the three formats once into the cache.
 */
const FOOTPRINT_FLAG = '--footprint'
const REPO = fileURLToPath(new URL('../../../../', import.meta.url))
const DTYPES: readonly ModelDtype[] = ['F32', 'F16', 'int4']
const LABEL: Record<ModelDtype, string> = { F32: 'fp32', F16: 'fp16', int4: 'int4' }

interface Options {
  readonly quick: boolean
  readonly trained: string
  readonly text: string
  readonly evalTokens: number | undefined
}

function options(argv: readonly string[]): Options {
  const arg = (flag: string) => {
    const i = argv.indexOf(flag)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const evalTokens = Number(process.env.BUTTERFLY_BENCH_EVAL_TOKENS ?? Number.NaN)
  return {
    quick: process.env.BUTTERFLY_BENCH_QUICK === '1',
    trained: resolve(
      arg('--model') ?? process.env.BUTTERFLY_BENCH_QUANT_MODEL ?? join(REPO, 'models', 'shakespeare'),
    ),
    text: resolve(
      arg('--text') ??
        process.env.BUTTERFLY_BENCH_TEXT ??
        join(REPO, '..', 'shared', 'data', 'tinyshakespeare.txt'),
    ),
    evalTokens: Number.isSafeInteger(evalTokens) && evalTokens > 1 ? evalTokens : undefined,
  }
}

function footprintChild(dir: string): FootprintResult {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), FOOTPRINT_FLAG, dir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as FootprintResult
}

/** The trained model in each format, converted once into the cache (keyed by the source file). */
async function trainedVariants(dir: string): Promise<Array<[ModelDtype, string]>> {
  const weights = await stat(join(dir, 'model.safetensors'))
  const key = createHash('sha256')
    .update(`${dir}:${weights.size}:${weights.mtimeMs}`)
    .digest('hex')
    .slice(0, 12)
  const out: Array<[ModelDtype, string]> = []
  for (const dtype of DTYPES) {
    const target = join(cacheDir(), 'converted', `${basename(dir)}-${LABEL[dtype]}-${key}`)
    if (!(await stat(join(target, 'model.safetensors')).catch(() => undefined))) {
      await convertModelDir(dir, target, dtype)
    }
    out.push([dtype, target])
  }
  return out
}

interface Row {
  dtype: ModelDtype
  fileMiB: number
  plannedMiB: number
  peakRssMiB: number
  decode: number
  decodeRatio: number
  loss: number
  agreement: number
}

async function compare(
  title: string,
  variants: ReadonlyArray<[ModelDtype, string]>,
  text: string,
  opts: { rounds: number; decodeTokens: number; evalTokens: number; footprintRuns: number },
): Promise<Row[]> {
  const backend = createNodeBackend()
  const models: LoadedModel[] = []
  for (const [, dir] of variants) models.push(await loadModel(dir))
  const pipelines: Array<Pipeline & { dispose(): Promise<void> }> = []
  try {
    for (const m of models) pipelines.push(await createLocalPipeline(m, backend, { stages: 1 }))
    const prompt = benchPrompt(64)
    const decode = pipelines.map(() => [] as number[])
    for (let round = 0; round <= opts.rounds; round++) {
      for (const [i, p] of pipelines.entries()) {
        const [, seconds] = await timeGeneration(p, prompt, opts.decodeTokens)
        if (round > 0) decode[i]?.push((opts.decodeTokens - 1) / seconds)
      }
    }
    await Promise.all(pipelines.splice(0).map((p) => p.dispose()))

    const first = models[0] as LoadedModel
    const heldOut = text.slice(Math.floor(text.length * 0.9))
    const tokens = first.tokenizer.encode(heldOut).slice(0, opts.evalTokens)
    const evals = []
    for (const m of models) evals.push(await teacherForced(m, backend, tokens, 256))
    const base = evals[0]
    console.log(`# ${title}: ${base?.positions ?? 0} held-out positions evaluated`)
    const rows: Row[] = []
    for (const [i, [dtype, dir]] of variants.entries()) {
      const m = models[i] as LoadedModel
      const size = (await stat(join(dir, 'model.safetensors'))).size
      const planned = stageMemoryBytes(m.config, 0, m.config.numLayers, { kvContext: 1, overheadBytes: 0 })
      // Peak RSS moves with when V8 collects the graph's garbage (more on a busy machine): median of runs.
      const peaks = Array.from({ length: opts.footprintRuns }, () => footprintChild(dir).peakRssMiB)
      rows.push({
        dtype,
        fileMiB: size / 2 ** 20,
        plannedMiB: planned / 2 ** 20,
        peakRssMiB: median(peaks),
        decode: median(decode[i] ?? []),
        decodeRatio: median((decode[i] ?? []).map((v, r) => v / (decode[0]?.[r] ?? Number.NaN))),
        loss: evals[i]?.lossNats ?? Number.NaN,
        agreement: base && evals[i] ? topOneAgreement(evals[i].argmax, base.argmax) : Number.NaN,
      })
    }
    return rows
  } finally {
    await Promise.all(pipelines.map((p) => p.dispose()))
    await Promise.all(models.map((m) => m.close()))
  }
}

function print(title: string, rows: readonly Row[]): void {
  console.log(`\n## ${title}`)
  console.log(
    [
      'weights',
      'file MiB',
      'planner MiB (as loaded)',
      'peak RSS MiB',
      'decode tok/s',
      'decode vs fp32',
      'loss nats/tok',
      'top-1 agreement with fp32',
    ].join('\t'),
  )
  for (const r of rows) {
    console.log(
      [
        LABEL[r.dtype],
        r.fileMiB.toFixed(1),
        r.plannedMiB.toFixed(1),
        r.peakRssMiB.toFixed(0),
        r.decode.toFixed(1),
        r.decodeRatio.toFixed(3),
        r.loss.toFixed(4),
        r.agreement.toFixed(4),
      ].join('\t'),
    )
  }
}

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2))
  console.log(
    '\n# Weight formats: fp32 / fp16 / int4 (MatMulNBits, block 32, symmetric), onnxruntime-node CPU, K = 1',
  )
  console.log(
    '# decode: medians over rounds, all three timed round-robin in one process; ratio = median of per-round ratios',
  )
  console.log('# peak RSS: load + 16 tokens, each format alone in a child process (median of 3 runs)')
  console.log('# loss / agreement: teacher-forced over the last 10% of the text, windows of 256 tokens')
  let text: string
  try {
    text = await readFile(opts.text, 'utf8')
  } catch {
    console.log(`# no text at ${opts.text}: loss and agreement are skipped`)
    text = ''
  }
  const name = opts.quick ? 'tiny' : '100m'
  const synthetic: Array<[ModelDtype, string]> = []
  for (const d of DTYPES) {
    synthetic.push([d, await resolveModelDir(`synthetic:${name}${d === 'F32' ? '' : `:${LABEL[d]}`}`)])
  }
  const rounds = opts.quick ? 2 : 7
  const footprintRuns = opts.quick ? 1 : 3
  const title = `synthetic:${name} (random weights: loss is meaningless; agreement, memory and speed are real)`
  print(
    title,
    await compare(title, synthetic, text, {
      rounds,
      decodeTokens: 32,
      evalTokens: opts.evalTokens ?? (opts.quick ? 64 : 256),
      footprintRuns,
    }),
  )
  const present = await stat(join(opts.trained, 'config.json')).catch(() => undefined)
  if (!present) {
    console.log(
      `\n# no trained model at ${opts.trained}: skipped (pass --model DIR or set BUTTERFLY_BENCH_QUANT_MODEL)`,
    )
    return
  }
  const trained = `${opts.trained} (trained)`
  print(
    trained,
    await compare(trained, await trainedVariants(opts.trained), text, {
      rounds,
      decodeTokens: 32,
      evalTokens: opts.evalTokens ?? (opts.quick ? 256 : 4096),
      footprintRuns,
    }),
  )
}

if (process.argv[2] === FOOTPRINT_FLAG) {
  const result = await measureFootprint(process.argv[3] ?? '', 1, 16)
  process.stdout.write(`${JSON.stringify(result)}\n`)
} else {
  await main()
}
