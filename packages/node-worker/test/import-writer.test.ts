import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  encodeSafetensors,
  fromFloat32,
  SafetensorsReader,
  syntheticConfig,
  toFloat32,
} from '@butterfly/core'
import { FileSource, loadModel } from '@butterfly/node-platform'
import {
  GGML,
  ggufLlamaFile,
  hfConfigJson,
  hfTensors,
  knownWeights,
  testDims,
  testVocab,
  tokenizerBin,
} from '@butterfly/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { writeImportedModel } from '../src/import/model-writer.js'
import { openImportSource } from '../src/import/open-import-source.js'
import { encodeOutput, outputConfig, outputEntries } from '../src/import/output-dtype.js'

const tiny = syntheticConfig('tiny')

const vocab = testVocab()
const dims = testDims(vocab.pieces.length)
let root: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'bf-import-writer-'))
  await writeFile(join(root, 'tokenizer.bin'), tokenizerBin(vocab.pieces, vocab.scores))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

async function importTo(source: string, out: string, dtype: 'fp32' | 'fp16', tokenizer?: string) {
  const opened = await openImportSource(source, tokenizer)
  try {
    return await writeImportedModel(opened.source, opened.tokenizer, out, { dtype })
  } finally {
    await opened.close()
  }
}

async function tensorsOf(dir: string): Promise<Map<string, { dtype: string; values: Float32Array }>> {
  const source = await FileSource.open(join(dir, 'model.safetensors'))
  try {
    const reader = await SafetensorsReader.open(source)
    const out = new Map<string, { dtype: string; values: Float32Array }>()
    for (const name of reader.tensors.keys()) {
      const t = await reader.read(name)
      out.set(name, { dtype: t.dtype, values: Float32Array.from(toFloat32(t)) })
    }
    return out
  } finally {
    await source.close()
  }
}

describe('import writer', () => {
  test('a BF16 Hugging Face checkpoint widens exactly to fp32 and rounds to fp16', async () => {
    const hf = join(root, 'hf-bf16')
    await mkdir(hf)
    const tensors = hfTensors(knownWeights(dims, 61, true)).map((t) => ({
      ...t,
      dtype: 'BF16' as const,
      data: fromFloat32(toFloat32(t), 'BF16'),
    }))
    await writeFile(
      join(hf, 'config.json'),
      JSON.stringify({ ...hfConfigJson(dims, true), torch_dtype: 'bfloat16' }),
    )
    await writeFile(join(hf, 'model.safetensors'), encodeSafetensors(tensors))
    await importTo(hf, join(root, 'bf16-fp32'), 'fp32', join(root, 'tokenizer.bin'))
    await importTo(hf, join(root, 'bf16-fp16'), 'fp16', join(root, 'tokenizer.bin'))
    const wide = await tensorsOf(join(root, 'bf16-fp32'))
    const half = await tensorsOf(join(root, 'bf16-fp16'))
    expect([...wide.keys()]).toEqual(tensors.map((t) => t.name))
    for (const t of tensors) {
      const exact = toFloat32(t)
      expect(wide.get(t.name)).toEqual({ dtype: 'F32', values: exact })
      const rounded = toFloat32({ dtype: 'F16', shape: t.shape, data: fromFloat32(exact, 'F16') })
      expect(half.get(t.name)).toEqual({ dtype: 'F16', values: rounded })
    }
  })

  test('a weight beyond float16 range fails the fp16 import and leaves nothing behind', async () => {
    const w = knownWeights(dims, 62, true)
    ;(w.w2[1] as Float32Array)[5] = 1e6
    await writeFile(join(root, 'big.gguf'), ggufLlamaFile(w, vocab, GGML.F32))
    const out = join(root, 'big-fp16')
    await expect(importTo(join(root, 'big.gguf'), out, 'fp16')).rejects.toMatchObject({
      code: 'ERR_IMPORT_RANGE',
      message: expect.stringMatching(
        /tensor model\.layers\.1\.mlp\.down_proj\.weight holds 1000000 at element 5/,
      ),
    })
    expect((await readdir(root)).filter((f) => f.includes('big-fp16'))).toEqual([])
    // The same file imports at fp32.
    await importTo(join(root, 'big.gguf'), out, 'fp32')
    expect((await tensorsOf(out)).get('model.layers.1.mlp.down_proj.weight')?.values[5]).toBe(1e6)
  })

  test('chat_template.jinja (beside the tokenizer) and generation_config.json (in the checkpoint) are carried', async () => {
    const hf = join(root, 'hf-chat')
    await mkdir(hf)
    await writeFile(join(hf, 'config.json'), JSON.stringify(hfConfigJson(dims, true)))
    await writeFile(join(hf, 'model.safetensors'), encodeSafetensors(hfTensors(knownWeights(dims, 63, true))))
    // A first import turns tokenizer.bin into a tokenizer.json; the template goes beside it.
    const first = join(root, 'chat-first')
    await importTo(hf, first, 'fp32', join(root, 'tokenizer.bin'))
    await writeFile(join(first, 'chat_template.jinja'), '{{ bos_token }}{{ messages[0].content }}')
    await writeFile(join(hf, 'generation_config.json'), JSON.stringify({ eos_token_id: [2] }))
    const opened = await openImportSource(hf, join(first, 'tokenizer.json'))
    const out = join(root, 'chat-out')
    try {
      await writeImportedModel(opened.source, opened.tokenizer, out, {
        dtype: 'fp32',
        extraFiles: opened.chatFiles,
      })
    } finally {
      await opened.close()
    }
    const model = await loadModel(out)
    try {
      expect(model.generationEosIds).toEqual([2])
      expect(model.chatTemplate?.source).toBe('{{ bos_token }}{{ messages[0].content }}')
    } finally {
      await model.close()
    }
    // A broken generation_config.json fails the import and leaves nothing behind.
    await writeFile(join(hf, 'generation_config.json'), '{"eos_token_id": "x"}')
    const broken = await openImportSource(hf, join(first, 'tokenizer.json'))
    try {
      await expect(
        writeImportedModel(broken.source, broken.tokenizer, join(root, 'chat-bad'), {
          dtype: 'fp32',
          extraFiles: broken.chatFiles,
        }),
      ).rejects.toMatchObject({ code: 'ERR_CHAT_TEMPLATE' })
    } finally {
      await broken.close()
    }
    expect((await readdir(root)).filter((f) => f.includes('chat-bad'))).toEqual([])
  })

  test("a GGUF's tokenizer.chat_template becomes chat_template.jinja", async () => {
    const template = '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}'
    const file = join(root, 'chat.gguf')
    const meta = [{ key: 'tokenizer.chat_template', type: 'string' as const, value: template }]
    await writeFile(file, ggufLlamaFile(knownWeights(dims, 64, true), vocab, GGML.F32, meta))
    const opened = await openImportSource(file)
    const out = join(root, 'chat-gguf')
    try {
      expect([...opened.chatFiles.keys()]).toEqual(['chat_template.jinja'])
      await writeImportedModel(opened.source, opened.tokenizer, out, {
        dtype: 'fp32',
        extraFiles: opened.chatFiles,
      })
    } finally {
      await opened.close()
    }
    const model = await loadModel(out)
    try {
      expect(model.chatTemplate?.render([{ role: 'user', content: 'hi' }])).toBe('<|user|>hi')
    } finally {
      await model.close()
    }
  })

  test('encodeOutput passes matching dtypes through untouched', () => {
    const data = fromFloat32(Float32Array.of(1, 2, 65504), 'F16')
    expect(encodeOutput(tiny, 't', { dtype: 'F16', shape: [3], data }, 'fp16')[0]).toBe(data)
    expect(() =>
      encodeOutput(
        tiny,
        't',
        { dtype: 'F32', shape: [1], data: fromFloat32(Float32Array.of(-70000), 'F32') },
        'fp16',
      ),
    ).toThrow(/beyond float16's range/)
    // int4: a projection becomes its levels and scales; any other tensor is F16.
    const int4 = outputConfig(tiny, 'int4')
    const up = 'model.layers.0.mlp.up_proj.weight'
    const [f, h] = [int4.intermediateSize, int4.hiddenSize]
    const weight = {
      dtype: 'F32' as const,
      shape: [f, h],
      data: fromFloat32(new Float32Array(f * h).fill(0.5), 'F32'),
    }
    expect(outputEntries(int4, up, [f, h], 'int4').map((e) => [e.name, e.dtype])).toEqual([
      [`${up}.qweight`, 'U8'],
      [`${up}.scales`, 'F16'],
    ])
    expect(encodeOutput(int4, up, weight, 'int4').map((d) => d.byteLength)).toEqual([
      f * (h / 32) * 16,
      f * (h / 32) * 2,
    ])
    expect(outputEntries(int4, 'model.norm.weight', [h], 'int4')).toEqual([
      { name: 'model.norm.weight', dtype: 'F16', shape: [h] },
    ])
  })
})
