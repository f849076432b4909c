import { cp, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeSafetensors, safetensorsLayout } from '@butterfly/core'
import { resolveModelDir } from '@butterfly/node-platform'
import { type CliRun, runCli, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

// These run the built CLI (`npm test` compiles first) as a real process.
let cache: string
let tinyDir: string

const cli = (args: readonly string[]): Promise<CliRun> =>
  runCli(WORKER_BIN, args, { env: { BUTTERFLY_CACHE_DIR: cache } })

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-cli-'))
  tinyDir = await resolveModelDir('synthetic:tiny', cache)
})
afterAll(async () => {
  await rm(cache, { recursive: true, force: true })
})

describe('butterfly-worker generate', () => {
  test('--help lists the generate command and exits 0', async () => {
    const run = await cli(['--help'])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('generate')
  })

  test('--stages never changes the tokens', async () => {
    const base = [
      'generate',
      '--model',
      'synthetic:tiny',
      '--prompt',
      'To be, or not',
      '--max-tokens',
      '24',
      '--ids',
    ]
    const outputs: string[] = []
    for (const k of ['1', '2', '4']) {
      const run = await cli([...base, '--stages', k])
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      const ids = run.stdout.trim().split(' ').map(Number)
      expect(ids).toHaveLength(24)
      expect(ids.every((t) => Number.isInteger(t) && t >= 0)).toBe(true)
      outputs.push(run.stdout)
    }
    expect(new Set(outputs).size).toBe(1)
  })

  test('seeded sampling is reproducible and independent of --stages', async () => {
    const base = ['generate', '--model', 'synthetic:tiny', '--prompt', 'Hi', '--max-tokens', '16', '--ids']
    const sampling = ['--temperature', '0.9', '--top-p', '0.95', '--seed', '7']
    const a = await cli([...base, ...sampling, '--stages', '1'])
    const b = await cli([...base, ...sampling, '--stages', '3'])
    expect(a.code).toBe(0)
    expect(a.stdout).toBe(b.stdout)
  })

  test('--stage-cache keeps built stages: a second run opens them and prints the same tokens', async () => {
    const dir = join(cache, 'my-stages')
    const args = ['generate', '--model', 'synthetic:tiny', '--prompt', 'To be', '--max-tokens', '8', '--ids']
    const a = await cli([...args, '--stages', '2', '--stage-cache', dir])
    const entries = (await readdir(dir)).filter((n) => /^[0-9a-f]{64}$/.test(n))
    const b = await cli([...args, '--stages', '2', '--stage-cache', dir])
    expect(a.code).toBe(0)
    expect(entries).toHaveLength(2)
    expect(b.stdout).toBe(a.stdout)
    expect((await readdir(dir)).sort()).toEqual(entries.sort())
    // 'off' (or a size of 0) keeps nothing, and the output is the same.
    const off = join(cache, 'unused-stages')
    const c = await cli([...args, '--stage-cache', 'off', '--stages', '3'])
    const d = await cli([...args, '--stage-cache', off, '--stage-cache-max', '0'])
    expect(c.stdout).toBe(a.stdout)
    expect(d.stdout).toBe(a.stdout)
    await expect(readdir(off)).rejects.toThrow()
  })

  const badArgs: Array<[string, string[]]> = [
    ['negative max tokens', ['--max-tokens', '-1']],
    ['non-numeric max tokens', ['--max-tokens', 'lots']],
    ['negative temperature', ['--temperature', '-0.5']],
    ['top-p of zero', ['--top-p', '0']],
    ['top-p above one', ['--top-p', '1.5']],
    ['zero stages', ['--stages', '0']],
    ['fractional seed', ['--seed', '1.5']],
    ['unknown option', ['--frobnicate']],
    ['a stage cache size that is not a size', ['--stage-cache-max', 'lots']],
    ['an empty stage cache directory', ['--stage-cache', '']],
  ]
  test.each(badArgs)('%s is a usage error', async (_, extra) => {
    const run = await cli(['generate', '--model', 'synthetic:tiny', ...extra])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/error \[ERR_CLI_USAGE\]/)
    expect(run.stderr).not.toMatch(/\n\s+at /)
    expect(run.stdout).toBe('')
  })

  const badJoin: Array<[string, string[], RegExp]> = [
    ['a server that is not a URL', ['--server', 'not a url'], /--server must be an http\(s\) URL/],
    ['a non-http server', ['--server', 'ftp://127.0.0.1:1'], /--server must be an http\(s\) URL/],
    [
      'a memory budget that is not a size',
      ['--server', 'http://127.0.0.1:9', '--memory', 'lots'],
      /--memory must be a size/,
    ],
    ['an unknown device', ['--server', 'http://127.0.0.1:9', '--device', 'tpu'], /--device/],
    ['an unknown weight precision', ['--server', 'http://127.0.0.1:9', '--weights', 'fp8'], /--weights/],
    ['no server at all', [], /--server/],
    [
      'a bad URL in a server list',
      ['--server', 'http://127.0.0.1:9,ws://x'],
      /--server must be an http\(s\) URL, got "ws:\/\/x"/,
    ],
    [
      'an empty entry in a server list',
      ['--server', 'http://127.0.0.1:9,'],
      /--server must be an http\(s\) URL, got ""/,
    ],
    ['more than 16 servers', ['--server', Array(17).fill('http://127.0.0.1:9').join(',')], /at most 16 URLs/],
    [
      'a negative reconnect timeout',
      ['--server', 'http://127.0.0.1:9', '--reconnect-timeout', '-1'],
      /--reconnect-timeout must be an integer from 0 to 86400/,
    ],
    ['zero threads', ['--server', 'http://127.0.0.1:9', '--threads', '0'], /--threads must be an integer/],
    ['a fractional batch', ['--server', 'http://127.0.0.1:9', '--max-batch', '2.5'], /--max-batch must be/],
    ['a batch over the wire cap', ['--server', 'http://127.0.0.1:9', '--max-batch', '1025'], /--max-batch/],
    ['a tiny prefill chunk', ['--server', 'http://127.0.0.1:9', '--prefill-chunk', '3'], /--prefill-chunk/],
    [
      'zero micro-batches',
      ['--server', 'http://127.0.0.1:9', '--micro-batches', '0'],
      /--micro-batches must be/,
    ],
    [
      'a stage cache size that is not a size',
      ['--server', 'http://127.0.0.1:9', '--stage-cache-max', 'twelve'],
      /--stage-cache-max must be a size/,
    ],
    [
      'an unknown int4 compute',
      ['--server', 'http://127.0.0.1:9', '--int4-compute', 'int4'],
      /--int4-compute/,
    ],
    [
      'fp16 weights with int8 activations (two numeric classes at once)',
      ['--server', 'http://127.0.0.1:9', '--weights', 'fp16', '--int4-compute', 'int8'],
      /--weights fp16 and --int4-compute int8 cannot be combined/,
    ],
  ]
  test.each(badJoin)('join with %s is a usage error', async (_, args, message) => {
    const run = await cli(['join', ...args])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/error \[ERR_CLI_USAGE\]/)
    expect(run.stderr).toMatch(message)
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })

  test('join to a server that is not there fails clearly', async () => {
    const run = await cli(['join', '--server', 'http://127.0.0.1:9', '--device', 'cpu'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/error \[ERR_MODEL_FILE_READ\]: .*config\.json: cannot reach the server/)
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })

  test('more stages than layers is refused', async () => {
    const run = await cli(['generate', '--model', 'synthetic:tiny', '--stages', '99'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/error \[ERR_PARTITION\]: cannot cut 4 layers into 99 stages/)
  })

  test('missing --model is a usage error', async () => {
    const run = await cli(['generate', '--prompt', 'x'])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/ERR_CLI_USAGE.*--model/)
  })

  test('an unknown synthetic model names the valid ones', async () => {
    const run = await cli(['generate', '--model', 'synthetic:huge'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/ERR_MODEL_CONFIG.*tiny/)
  })
})

describe('broken model directories', () => {
  async function brokenCopy(mutate: (dir: string) => Promise<void>): Promise<string> {
    const dir = await mkdtemp(join(cache, 'broken-'))
    await cp(tinyDir, dir, { recursive: true })
    await mutate(dir)
    return dir
  }
  const weights = (dir: string) => join(dir, 'model.safetensors')

  const cases: Array<[string, (dir: string) => Promise<void>, RegExp]> = [
    ['a missing directory', async (dir) => rm(dir, { recursive: true }), /ERR_MODEL_NOT_FOUND/],
    [
      'config.json that is not JSON',
      async (dir) => writeFile(join(dir, 'config.json'), '{"hidden_size": '),
      /ERR_MODEL_CONFIG.*config\.json/,
    ],
    [
      'config.json with a bad field',
      async (dir) => {
        const c = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))
        await writeFile(join(dir, 'config.json'), JSON.stringify({ ...c, num_hidden_layers: -2 }))
      },
      /ERR_MODEL_CONFIG.*num_hidden_layers/,
    ],
    [
      'tokenizer.json that is garbage',
      async (dir) => writeFile(join(dir, 'tokenizer.json'), '[1,2,3]'),
      /ERR_TOKENIZER/,
    ],
    [
      'a truncated safetensors file',
      async (dir) => truncate(weights(dir), 100_000),
      /ERR_MODEL_FILE_TRUNCATED.*model\.safetensors/,
    ],
    [
      'a header length past the end of the file',
      async (dir) => {
        const bytes = new Uint8Array(await readFile(weights(dir)))
        new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true)
        await writeFile(weights(dir), bytes)
      },
      /ERR_MODEL_FILE_HEADER.*model\.safetensors/,
    ],
    [
      'bad header JSON',
      async (dir) => {
        const bytes = new Uint8Array(await readFile(weights(dir)))
        bytes[8] = 0x21
        await writeFile(weights(dir), bytes)
      },
      /ERR_MODEL_FILE_HEADER.*model\.safetensors/,
    ],
    [
      'a missing tensor',
      async (dir) => writeFile(weights(dir), encodeSafetensors([])),
      /ERR_MODEL_TENSOR_MISSING.*model\.embed_tokens\.weight/,
    ],
    [
      'a tensor of the wrong shape',
      async (dir) => {
        const data = new Uint8Array(259 * 32 * 4)
        await writeFile(
          weights(dir),
          encodeSafetensors([{ name: 'model.embed_tokens.weight', dtype: 'F32', shape: [259, 32], data }]),
        )
      },
      /ERR_MODEL_FILE_SHAPE.*model\.embed_tokens\.weight/,
    ],
    [
      'a tensor of the wrong dtype',
      async (dir) => {
        const data = new Uint8Array(259 * 64 * 8)
        await writeFile(
          weights(dir),
          encodeSafetensors([{ name: 'model.embed_tokens.weight', dtype: 'I64', shape: [259, 64], data }]),
        )
      },
      /ERR_MODEL_FILE_DTYPE.*model\.embed_tokens\.weight/,
    ],
  ]
  test.each(cases)('%s gives a clear error', async (_, mutate, message) => {
    const dir = await brokenCopy(mutate)
    const run = await cli(['generate', '--model', dir, '--prompt', 'x', '--max-tokens', '2'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(message)
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })

  test('the layout helper writes headers the reader accepts', () => {
    const layout = safetensorsLayout([{ name: 'a', dtype: 'F32', shape: [2] }])
    expect(layout.header.length % 8).toBe(0)
    expect(layout.totalBytes).toBe(layout.header.length + 8)
  })
})
