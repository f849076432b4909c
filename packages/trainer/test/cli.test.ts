import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ByteTokenizer, parseModelConfig } from '@butterfly/core'
import { type CliRun, runCli, TRAIN_BIN, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { readModelDir } from '../src/model-dir.js'
import { ParamLayout } from '../src/param-layout.js'
import { Transformer } from '../src/transformer.js'

// The built CLIs (`npm test` compiles first) as real processes: the trainer writes a model and
// butterfly-worker's ONNX engine runs it.
const TEXT = 'To be, or not to be, that is the question: whether tis nobler in the mind to suffer. '.repeat(
  120,
)

let dir: string
let corpus: string

const run = (bin: string, args: readonly string[]): Promise<CliRun> =>
  runCli(bin, args, { env: { BUTTERFLY_CACHE_DIR: dir } })

const tiny = (out: string, extra: readonly string[] = []) => [
  '--corpus',
  corpus,
  '--out',
  out,
  '--size',
  'tiny',
  '--steps',
  '300',
  '--batch',
  '4',
  '--lr',
  '0.03',
  '--min-lr',
  '0.003',
  '--warmup',
  '5',
  '--eval-interval',
  '100',
  '--eval-windows',
  '4',
  ...extra,
]

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bf-train-cli-'))
  corpus = join(dir, 'corpus.txt')
  await writeFile(corpus, TEXT)
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('butterfly-train', () => {
  test('--help lists the flags and exits 0', async () => {
    const r = await run(TRAIN_BIN, ['--help'])
    expect(r.code).toBe(0)
    for (const flag of ['--corpus', '--out', '--steps', '--seed', '--size', '--threads', '--eval-interval']) {
      expect(r.stdout).toContain(flag)
    }
  })

  test('trains a model that butterfly-worker runs, greedy tokens equal to the trainer forward pass', async () => {
    const out = join(dir, 'model')
    const r = await run(TRAIN_BIN, tiny(out))
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/step 100\/300: train \d\.\d+, val \d\.\d+/)
    const finalLoss = Number(/validation loss (\d+\.\d+)/.exec(r.stdout)?.[1])
    expect(finalLoss).toBeLessThan(1)

    const config = parseModelConfig(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')))
    expect(config).toMatchObject({ vocabSize: 259, tieWordEmbeddings: true, maxContext: 32 })
    const report = JSON.parse(await readFile(join(out, 'training.json'), 'utf8'))
    expect(report.valLoss).toBeCloseTo(finalLoss, 4)
    expect(report.history).toHaveLength(3)

    // Greedy continuation by the trainer's own forward pass (full recompute each token).
    const { params } = await readModelDir(out)
    const model = new Transformer(new ParamLayout(config), 1, 29)
    // Engines start every prompt with <s>, as every training window does.
    const ids = new ByteTokenizer().encode('To be, or not', { addBos: true })
    const prompt = ids.length
    while (ids.length < 29) {
      model.forward(params, ids, ids, 1, ids.length)
      const row = model.logits.subarray((ids.length - 1) * 259, ids.length * 259)
      ids.push(row.indexOf(Math.max(...row)))
    }
    const gen = await run(WORKER_BIN, [
      'generate',
      '--model',
      out,
      '--prompt',
      'To be, or not',
      '--max-tokens',
      String(29 - prompt),
      '--ids',
    ])
    expect(gen.stderr).toBe('')
    expect(gen.code).toBe(0)
    expect(gen.stdout.trim().split(/\s+/).map(Number)).toEqual(ids.slice(prompt))
    // And it learned the text: the continuation is the text itself.
    expect(new ByteTokenizer().decode(ids)).toBe(TEXT.slice(0, 28))
  })

  test('the same command twice writes byte-identical weights', async () => {
    const a = join(dir, 'a')
    const b = join(dir, 'b')
    const short = (out: string) => tiny(out, ['--threads', '2', '--steps', '20'])
    expect((await run(TRAIN_BIN, short(a))).code).toBe(0)
    expect((await run(TRAIN_BIN, short(b))).code).toBe(0)
    const [wa, wb] = await Promise.all([
      readFile(join(a, 'model.safetensors')),
      readFile(join(b, 'model.safetensors')),
    ])
    expect(wa.equals(wb)).toBe(true)
  })

  const usage: Array<[string, string[], string, number]> = [
    [
      'a missing corpus file',
      ['--corpus', '/nonexistent/corpus.txt', '--out', 'x'],
      'ERR_CORPUS_NOT_FOUND',
      2,
    ],
    ['negative steps', ['--steps', '-5'], 'ERR_CLI_USAGE', 2],
    ['a fractional step count', ['--steps', '1.5'], 'ERR_CLI_USAGE', 2],
    ['no --out', ['--corpus', 'c.txt'], 'ERR_CLI_USAGE', 2],
    ['an unknown flag', ['--bogus'], 'ERR_CLI_USAGE', 2],
    ['an unknown size', ['--size', 'huge'], 'ERR_CLI_USAGE', 2],
    ['a batch not divisible by shards', ['--batch', '3'], 'ERR_CLI_USAGE', 2],
    ['more threads than shards', ['--threads', '3'], 'ERR_CLI_USAGE', 2],
    ['a learning rate that is not a number', ['--lr', 'fast'], 'ERR_CLI_USAGE', 2],
    ['min-lr above lr', ['--lr', '0.001', '--min-lr', '0.01'], 'ERR_CLI_USAGE', 2],
    ['hidden not divisible by heads', ['--hidden', '30', '--heads', '4'], 'ERR_TRAIN_CONFIG', 1],
  ]
  test.each(usage)('%s: error [CODE] on stderr, no stack, exit code', async (_what, args, code, exit) => {
    const base = tiny(join(dir, 'never'))
    // Later flags win in commander, so the bad value overrides the valid base.
    const r = await run(TRAIN_BIN, args[0] === '--corpus' ? args : [...base, ...args])
    expect(r.stderr).toMatch(new RegExp(`^butterfly-train: error \\[${code}\\]: .+\\n$`, 's'))
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.code).toBe(exit)
  })

  test('a corpus too small for the context and a directory as corpus are named errors (exit 1)', async () => {
    const small = join(dir, 'small.txt')
    await writeFile(small, 'abc')
    const r = await run(TRAIN_BIN, tiny(join(dir, 'never'), ['--corpus', small]))
    expect(r.stderr).toMatch(/^butterfly-train: error \[ERR_CORPUS_TOO_SMALL\]: .*small\.txt/)
    expect(r.code).toBe(1)
    const sub = join(dir, 'subdir')
    await mkdir(sub, { recursive: true })
    const d = await run(TRAIN_BIN, tiny(join(dir, 'never'), ['--corpus', sub]))
    expect(d.stderr).toMatch(/^butterfly-train: error \[ERR_CORPUS_READ\]: .*subdir: is not a regular file/)
    expect(d.code).toBe(1)
  })
})
