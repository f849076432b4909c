import { ButterflyError } from '@butterfly/core'
import { runCliMain } from '@butterfly/node-platform'
import { Command, Option } from 'commander'
import { floatArg, intArg } from './cli-args.js'
import { runGenerate } from './commands/generate-command.js'
import { parseMemory, parseServerUrls, runJoin } from './commands/join-command.js'
import { stageCacheOptions } from './commands/stage-cache-options.js'
import { runImport } from './import/import-command.js'
import { IMPORT_DTYPES, type ImportDtype } from './import/output-dtype.js'

/** Builds the `butterfly-worker` command tree. `argv` excludes node and the script path. */
/** `--int4-compute`, the same on `generate` and `join`. */
function int4ComputeOption(): Option {
  return new Option(
    '--int4-compute <how>',
    'int4 models: fp32 dequantises the weights; int8 quantises activations for integer dot products (about 2x faster decode on CPU, numeric class int8a)',
  )
    .choices(['fp32', 'int8'])
    .default('fp32')
}

export function buildCli(out: NodeJS.WritableStream = process.stdout): Command {
  const program = new Command('butterfly-worker')
    .description('Butterfly worker: runs LLM pipeline stages with onnxruntime-node.')
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({ writeErr: () => undefined, writeOut: (s) => out.write(s) })

  const generate = program
    .command('generate')
    .description('Generate text with the model cut into K pipeline stages in this process.')
    .requiredOption(
      '--model <dir|synthetic:NAME|hf:ORG/REPO|URL>',
      'model directory; synthetic:NAME[:fp16|:int4] (tiny, small, 10m, 100m, 1b); hf:ORG/REPO[@REVISION] or an https:// directory URL, downloaded into the cache',
    )
    .addOption(
      new Option('--hf-endpoint <url>', 'Hugging Face Hub for hf: models')
        .env('HF_ENDPOINT')
        .default(undefined, 'https://huggingface.co'),
    )
    .option('--prompt <text>', 'prompt text', '')
    .option('--max-tokens <n>', 'tokens to generate', intArg('--max-tokens', 0, 1_000_000), 64)
    .option('--temperature <t>', 'sampling temperature; 0 is greedy', floatArg('--temperature', 0, 100), 0)
    .option('--top-p <p>', 'nucleus sampling mass', floatArg('--top-p', 0, 1, true))
    .option('--top-k <k>', 'sample among the k most likely tokens', intArg('--top-k', 1, 1_000_000))
    .option('--seed <s>', 'sampling seed', intArg('--seed', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--stages <k>', 'pipeline stages (never changes the output)', intArg('--stages', 1, 1024), 1)
    .option('--ids', 'print generated token ids instead of text', false)
    .addOption(new Option('--threads <n>', 'threads per stage').argParser(intArg('--threads', 1, 256)))
    .addOption(int4ComputeOption())
  for (const o of stageCacheOptions()) generate.addOption(o)
  generate.action(async (opts) => {
    await runGenerate(opts, out)
  })
  program
    .command('import')
    .description(
      'Convert a llama2.c, GGUF (llama) or Hugging Face checkpoint into a Butterfly model directory.',
    )
    .argument('<source>', 'llama2.c model.bin, a .gguf file, or a Hugging Face model directory')
    .requiredOption(
      '--out <dir>',
      'model directory to write (config.json, tokenizer.json, model.safetensors)',
    )
    .option(
      '--tokenizer <file>',
      "tokenizer.bin (llama2.c) or tokenizer.json; required for llama2.c, else overrides the source's",
    )
    .addOption(
      new Option('--dtype <dtype>', 'weight precision to store').choices([...IMPORT_DTYPES]).default('fp32'),
    )
    .option('--force', 'replace --out if it already holds a model', false)
    .action(
      async (
        source: string,
        opts: { out: string; tokenizer?: string; dtype: ImportDtype; force: boolean },
      ) => {
        // Ctrl-C stops between tensors; the writer then removes its temporary directory.
        const abort = new AbortController()
        const stop = () =>
          abort.abort(new ButterflyError('ERR_ABORTED', 'import interrupted; nothing was written'))
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
        try {
          await runImport(
            {
              source,
              out: opts.out,
              dtype: opts.dtype,
              force: opts.force,
              ...(opts.tokenizer === undefined ? {} : { tokenizer: opts.tokenizer }),
            },
            out,
            abort.signal,
          )
        } finally {
          process.off('SIGINT', stop)
          process.off('SIGTERM', stop)
        }
      },
    )
  const join = program
    .command('join')
    .description('Join a mesh as a worker: host the layers the server assigns and serve steps over WebRTC.')
    .requiredOption(
      '--server <url,...>',
      'signal server URL, e.g. http://127.0.0.1:8080; a comma-separated list fails over to the next server when one goes away',
      parseServerUrls,
    )
    .option(
      '--reconnect-timeout <seconds>',
      'how long to keep trying to rejoin (any listed server) after losing the server; 0 exits at once',
      intArg('--reconnect-timeout', 0, 86_400),
      300,
    )
    .option('--mesh <name>', 'mesh to join', 'default')
    .option(
      '--token <token>',
      'mesh token, when the mesh requires one',
      process.env.BUTTERFLY_MESH_TOKEN ?? '',
    )
    .addOption(
      new Option('--device <device>', 'execution device; auto prefers cuda, then webgpu, then cpu')
        .choices(['auto', 'cpu', 'cuda', 'webgpu'])
        .default('auto'),
    )
    .option(
      '--memory <size>',
      'memory budget for weights and KV caches, e.g. 4GB',
      parseMemory,
      parseMemory('4GB'),
    )
    .option('--name <name>', 'name shown in the mesh', `worker-${process.pid}`)
    .addOption(
      new Option(
        '--weights <dtype>',
        'fp16 rounds the weights to half precision as they load (numeric class fp16w)',
      )
        .choices(['fp32', 'fp16'])
        .default('fp32'),
    )
    .addOption(
      new Option(
        '--threads <n>',
        "intra-op threads per stage (default: onnxruntime's, one per core)",
      ).argParser(intArg('--threads', 1, 256)),
    )
    .addOption(
      new Option('--max-batch <n>', 'most generations one stage run batches (default 128)').argParser(
        intArg('--max-batch', 1, 1024),
      ),
    )
    .addOption(
      new Option(
        '--micro-batches <n>',
        'groups a stage splits its decoding generations into, so stages on separate machines work at once (default 1: one batch)',
      ).argParser(intArg('--micro-batches', 1, 64)),
    )
    .addOption(
      new Option(
        '--prefill-chunk <n>',
        'prompt positions per prefill chunk, run between decode batches (default 128)',
      ).argParser(intArg('--prefill-chunk', 4, 65_536)),
    )
    .addOption(int4ComputeOption())
  for (const o of stageCacheOptions()) join.addOption(o)
  join.action(async (opts) => {
    await runJoin(opts)
  })
  return program
}

/** Runs the CLI; user errors print `error [CODE]: message` with no stack and exit non-zero. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildCli()
  return runCliMain(() => program.parseAsync([...argv], { from: 'user' }), { name: 'butterfly-worker' })
}
