import { TokenizerError } from '../errors.js'
import type { MetadataReader } from './gguf-metadata.js'
import type { GgufFile } from './gguf-reader.js'
import type { ImportTokenizer } from './import-source.js'
import { SPM_TYPE, spmTokenizerJson } from './spm-tokenizer-json.js'

/**
 * Pre-tokenizers of byte-level BPE vocabularies, by `tokenizer.ggml.pre`: what the model's own
 * tokenizer.json had before llama.cpp's converter recorded only its name. Others are refused by
 * name rather than guessed.
 */
const BPE_PRE_TOKENIZERS: Readonly<Record<string, { pre: Record<string, unknown>; ignoreMerges: boolean }>> =
  {
    // Llama 3: the tiktoken-style split, then bytes to GPT-2's printable characters.
    'llama-bpe': {
      pre: {
        type: 'Sequence',
        pretokenizers: [
          {
            type: 'Split',
            pattern: {
              Regex:
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            },
            behavior: 'Isolated',
            invert: false,
          },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      ignoreMerges: true,
    },
    // Qwen2, Qwen2.5 and Qwen3: Llama 3's split with single digits, and merges always applied
    // (their tokenizer.json has no ignore_merges), as llama.cpp's "qwen2" pre-tokenizer.
    qwen2: {
      pre: {
        type: 'Sequence',
        pretokenizers: [
          {
            type: 'Split',
            pattern: {
              Regex:
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            },
            behavior: 'Isolated',
            invert: false,
          },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
        ],
      },
      ignoreMerges: false,
    },
    // GPT-2's own split, built into the ByteLevel pre-tokenizer.
    'gpt-2': {
      pre: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ignoreMerges: false,
    },
  }
const PRE_ALIASES: Readonly<Record<string, string>> = { default: 'gpt-2', gpt2: 'gpt-2' }

/**
 * The vocabulary in tokenizer.ggml.* as tokenizer.json: "llama" is SentencePiece BPE (pieces,
 * scores, types), "gpt2" is byte-level BPE (tokens in GPT-2's byte alphabet, merges, and a
 * pre-tokenizer named by tokenizer.ggml.pre).
 */
export function ggufTokenizer(file: GgufFile, meta: MetadataReader, vocabSize: number): ImportTokenizer {
  const where = `${file.source.name}: tokenizer.ggml`
  const model = meta.optionalString('tokenizer.ggml.model')
  if (model !== 'llama' && model !== 'gpt2') {
    throw new TokenizerError(
      `${where}.model ${JSON.stringify(model ?? null)} is not supported (only "llama" and "gpt2"); pass --tokenizer tokenizer.json`,
    )
  }
  const pieces = meta.array('tokenizer.ggml.tokens', 'string') as string[]
  const n = pieces.length
  if (n === 0 || n > vocabSize) {
    throw new TokenizerError(`${where}.tokens has ${n} entries, the embedding has ${vocabSize} rows`)
  }
  const types = meta.has('tokenizer.ggml.token_type')
    ? (meta.array('tokenizer.ggml.token_type', 'int32') as number[])
    : new Array<number>(n).fill(SPM_TYPE.normal)
  if (types.length !== n) throw new TokenizerError(`${where}: ${n} tokens but ${types.length} token types`)
  const bosId = meta.optionalInt('tokenizer.ggml.bos_token_id')
  const eosId = meta.optionalInt('tokenizer.ggml.eos_token_id')
  if (model === 'gpt2') return byteLevelTokenizer(where, meta, pieces, types, bosId, eosId)

  const scores = meta.has('tokenizer.ggml.scores')
    ? (meta.array('tokenizer.ggml.scores', 'float32') as number[])
    : new Array<number>(n).fill(0)
  if (scores.length !== n) throw new TokenizerError(`${where}: ${n} tokens but ${scores.length} scores`)
  return spmTokenizerJson({
    pieces,
    scores,
    types,
    bosId,
    eosId,
    unkId: meta.optionalInt('tokenizer.ggml.unknown_token_id') ?? firstIndex(types, SPM_TYPE.unknown),
    // llama.cpp's default for SentencePiece vocabularies is true; Gemma's converter writes false.
    addSpacePrefix: meta.optionalBool('tokenizer.ggml.add_space_prefix') ?? true,
  })
}

function byteLevelTokenizer(
  where: string,
  meta: MetadataReader,
  pieces: readonly string[],
  types: readonly number[],
  bosId: number | undefined,
  eosId: number | undefined,
): ImportTokenizer {
  const preName = meta.optionalString('tokenizer.ggml.pre') ?? 'default'
  const pre = BPE_PRE_TOKENIZERS[PRE_ALIASES[preName] ?? preName]
  if (pre === undefined || !Object.hasOwn(BPE_PRE_TOKENIZERS, PRE_ALIASES[preName] ?? preName)) {
    throw new TokenizerError(
      `${where}.pre ${JSON.stringify(preName)} is not supported (${Object.keys(BPE_PRE_TOKENIZERS).join(', ')}); pass --tokenizer tokenizer.json`,
    )
  }
  const vocab: Record<string, number> = Object.create(null)
  pieces.forEach((piece, id) => {
    if (Object.hasOwn(vocab, piece)) {
      throw new TokenizerError(
        `${where}.tokens: ${JSON.stringify(piece)} appears twice (ids ${vocab[piece]} and ${id})`,
      )
    }
    vocab[piece] = id
  })
  const merges = (meta.array('tokenizer.ggml.merges', 'string') as string[]).map((m, i) => {
    const parts = m.split(' ')
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new TokenizerError(
        `${where}.merges[${i}] ${JSON.stringify(m)} is not two tokens separated by a space`,
      )
    }
    return parts
  })
  const added: Array<Record<string, unknown>> = []
  types.forEach((type, id) => {
    if (type !== SPM_TYPE.control && type !== SPM_TYPE.userDefined) return
    const special = type === SPM_TYPE.control
    added.push({
      id,
      content: pieces[id],
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: !special,
      special,
    })
  })
  const pieceOf = (id: number | undefined, what: string): string | null => {
    if (id === undefined) return null
    if (id >= pieces.length)
      throw new TokenizerError(`${where}: ${what} id ${id} is outside the ${pieces.length} tokens`)
    return pieces[id] as string
  }
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: pre.pre,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre.ignoreMerges,
      vocab,
      merges,
    },
  }
  const config = {
    bos_token: pieceOf(bosId, 'BOS'),
    eos_token: pieceOf(eosId, 'EOS'),
    add_bos_token: bosId !== undefined && meta.optionalBool('tokenizer.ggml.add_bos_token') !== false,
    clean_up_tokenization_spaces: false,
  }
  return { json, config }
}

function firstIndex(values: readonly number[], wanted: number): number | undefined {
  const i = values.indexOf(wanted)
  return i < 0 ? undefined : i
}
