import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import { runCliMain } from '@butterfly/node-platform/cli'
import { SingleBar } from 'cli-progress'
import { Command, Option } from 'commander'
import { floatArg, intArg } from './cli-args.js'
import { loadCorpus } from './corpus.js'
import { CorpusError, TrainUsageError } from './errors.js'
import { writeModelDir } from './model-dir.js'
import { MODEL_PRESETS, type ModelPresetName, type ModelShape } from './presets.js'
import { DEFAULT_HYPERPARAMETERS as D, type TrainEvent, type TrainOptions, train } from './trainer.js'
import { writeTrainingReport } from './training-report.js'

interface CliOptions {
  corpus: string
  out: string
  size: ModelPresetName
  layers?: number
  hidden?: number
  heads?: number
  kvHeads?: number
  ffn?: number
  context?: number
  steps: number
  batch: number
  shards: number
  threads?: number
  seed: number
  lr: number
  minLr: number
  warmup: number
  weightDecay: number
  evalInterval: number
  evalWindows: number
  fullEval: boolean
  progress: boolean
}

/** Builds the `butterfly-train` command. */
export function buildCli(out: NodeJS.WritableStream = process.stdout): Command {
  const int = (flag: string, min: number, max: number) => intArg(flag, min, max)
  return new Command('butterfly-train')
    .description(
      'Train a byte-level Llama model on a text file, on the CPU, reproducibly, and write a model directory.',
    )
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({ writeErr: () => undefined, writeOut: (s) => out.write(s) })
    .requiredOption('--corpus <file>', 'training text; the last 10% is held out for validation')
    .requiredOption(
      '--out <dir>',
      'model directory to write (config.json, tokenizer.json, model.safetensors)',
    )
    .addOption(
      new Option('--size <preset>', 'model shape preset')
        .choices(Object.keys(MODEL_PRESETS))
        .default('shakespeare'),
    )
    .option('--layers <n>', 'decoder layers (overrides the preset)', int('--layers', 1, 64))
    .option('--hidden <n>', 'hidden size', int('--hidden', 2, 4096))
    .option('--heads <n>', 'attention heads', int('--heads', 1, 256))
    .option('--kv-heads <n>', 'key/value heads (GQA)', int('--kv-heads', 1, 256))
    .option('--ffn <n>', 'SwiGLU intermediate size', int('--ffn', 1, 65_536))
    .option('--context <n>', 'training sequence length = the model context', int('--context', 2, 8192))
    .option('--steps <n>', 'optimizer steps', int('--steps', 0, 10_000_000), D.steps)
    .option('--batch <n>', 'sequences per step', int('--batch', 1, 4096), D.batch)
    .option(
      '--shards <n>',
      'fixed gradient shards per step (results do not depend on --threads)',
      int('--shards', 1, 64),
      D.shards,
    )
    .option('--threads <n>', 'worker threads (default: min(shards, CPUs))', int('--threads', 1, 64))
    .option(
      '--seed <n>',
      'seed for weights, batches and evaluation samples',
      int('--seed', 0, 2 ** 32 - 1),
      D.seed,
    )
    .option('--lr <x>', 'peak learning rate', floatArg('--lr', 1e-8, 1), D.lr)
    .option('--min-lr <x>', 'final learning rate of the cosine decay', floatArg('--min-lr', 0, 1), D.minLr)
    .option('--warmup <n>', 'linear warmup steps', int('--warmup', 0, 10_000_000), D.warmupSteps)
    .option(
      '--weight-decay <x>',
      'AdamW weight decay on matrices',
      floatArg('--weight-decay', 0, 0.99),
      D.weightDecay,
    )
    .option(
      '--eval-interval <n>',
      'steps between evaluations (0: only at the end)',
      int('--eval-interval', 0, 10_000_000),
      D.evalInterval,
    )
    .option(
      '--eval-windows <n>',
      'windows in each fixed evaluation sample',
      int('--eval-windows', 1, 100_000),
      D.evalWindows,
    )
    .option('--no-full-eval', 'skip scoring the whole held-out split at the end')
    .option('--no-progress', 'no progress bar, even on a terminal')
    .action(async (opts: CliOptions) => {
      await run(opts, out)
    })
}

async function run(opts: CliOptions, out: NodeJS.WritableStream): Promise<void> {
  const preset = MODEL_PRESETS[opts.size]
  const shape: ModelShape = {
    layers: opts.layers ?? preset.layers,
    hidden: opts.hidden ?? preset.hidden,
    heads: opts.heads ?? preset.heads,
    kvHeads: opts.kvHeads ?? (opts.heads !== undefined ? opts.heads : preset.kvHeads),
    ffn: opts.ffn ?? preset.ffn,
    context: opts.context ?? preset.context,
  }
  if (opts.batch % opts.shards !== 0) {
    throw new TrainUsageError(`--batch (${opts.batch}) must be a multiple of --shards (${opts.shards})`)
  }
  if (opts.minLr > opts.lr) throw new TrainUsageError(`--min-lr (${opts.minLr}) exceeds --lr (${opts.lr})`)
  const threads = opts.threads ?? Math.min(opts.shards, availableParallelism())
  if (threads > opts.shards)
    throw new TrainUsageError(`--threads (${threads}) cannot exceed --shards (${opts.shards})`)
  const corpus = await loadCorpus(opts.corpus)
  const options: TrainOptions = {
    corpus,
    shape,
    steps: opts.steps,
    batch: opts.batch,
    shards: opts.shards,
    threads,
    seed: opts.seed,
    lr: opts.lr,
    minLr: opts.minLr,
    warmupSteps: opts.warmup,
    weightDecay: opts.weightDecay,
    beta1: D.beta1,
    beta2: D.beta2,
    gradClip: D.gradClip,
    evalInterval: opts.evalInterval,
    evalWindows: opts.evalWindows,
    fullEval: opts.fullEval,
  }
  const log = (line: string) => out.write(`${line}\n`)
  log(
    `butterfly-train: ${corpus.ids.length} bytes (${corpus.trainEnd} train / ${corpus.ids.length - corpus.trainEnd} held out), ` +
      `${shape.layers} layers x ${shape.hidden} hidden, context ${shape.context}, ${opts.steps} steps of ${opts.batch} sequences, ` +
      `seed ${opts.seed}, ${threads} thread(s)`,
  )
  const started = performance.now()
  const cpuStart = process.cpuUsage()
  const tty = opts.progress && (out as { isTTY?: boolean }).isTTY === true
  const bar = tty
    ? new SingleBar({
        format: 'train |{bar}| {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {eta_formatted}',
        stream: out,
      })
    : undefined
  bar?.start(opts.steps, 0, { loss: '-', val: '-', tps: '-' })
  const onEvent = (e: TrainEvent) => {
    const secs = (performance.now() - started) / 1000
    if (e.kind === 'step') {
      bar?.update(e.step, {
        loss: e.loss.toFixed(3),
        tps: Math.round((e.step * opts.batch * shape.context) / secs),
      })
    } else if (e.kind === 'eval') {
      bar?.update({ val: e.valLoss.toFixed(3) })
      if (bar === undefined) {
        log(
          `step ${e.step}/${opts.steps}: train ${e.trainLoss.toFixed(4)}, val ${e.valLoss.toFixed(4)} (sampled) after ${secs.toFixed(0)} s`,
        )
      }
    } else {
      bar?.stop()
      log(`scoring all ${e.windows} held-out windows...`)
    }
  }
  let result: Awaited<ReturnType<typeof train>>
  try {
    result = await train(options, onEvent)
  } finally {
    bar?.stop()
  }
  const wallSeconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpuStart)
  const cpuSeconds = (used.user + used.system) / 1e6
  await writeModelDir(opts.out, result.config, result.params, { 'butterfly.trainer.seed': String(opts.seed) })
  await writeTrainingReport(join(opts.out, 'training.json'), {
    options,
    result,
    wallSeconds,
    cpuSeconds,
    cpu: cpus()[0]?.model ?? '?',
  })
  log(
    `done in ${(wallSeconds / 60).toFixed(1)} min (${result.trainSeconds.toFixed(0)} s training, ${(opts.steps / result.trainSeconds).toFixed(3)} steps/s): ` +
      `train loss ${result.trainLoss.toFixed(4)}, validation loss ${result.valLoss.toFixed(4)} nats/byte ` +
      `(${result.valScope === 'full' ? 'whole held-out split' : 'held-out sample'}); wrote ${opts.out}`,
  )
}

/** Runs the CLI; user errors print `error [CODE]: message` with no stack and exit 2 (usage) or 1. */
export async function main(argv: readonly string[]): Promise<number> {
  return runCliMain(() => buildCli().parseAsync([...argv], { from: 'user' }), {
    name: 'butterfly-train',
    isUsage: (e) =>
      e instanceof TrainUsageError || (e instanceof CorpusError && e.code === 'ERR_CORPUS_NOT_FOUND'),
  })
}
