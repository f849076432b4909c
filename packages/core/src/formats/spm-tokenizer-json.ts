import { TokenizerError } from '../errors.js'
import type { ImportTokenizer } from './import-source.js'

/** SentencePiece piece types, numbered as sentencepiece and GGUF's token_type number them. */
export const SPM_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const

/** A SentencePiece BPE vocabulary: pieces spell spaces as U+2581 (▁), as sentencepiece does. */
export interface SpmVocab {
  readonly pieces: readonly string[]
  readonly scores: ArrayLike<number>
  readonly types: ArrayLike<number>
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  readonly unkId: number | undefined
  /**
   * SentencePiece's add_dummy_prefix (GGUF's tokenizer.ggml.add_space_prefix): a ▁ before the
   * text, stripped again on decode. Default true; Gemma's vocabularies have it off.
   */
  readonly addSpacePrefix?: boolean
}

/** run.c starts its best score at -1e10, so a pair scoring at or below that never merges. */
const MIN_MERGE_SCORE = -1e10
const SPACE = '\u2581'

/**
 * The tokenizer.json Hugging Face's LlamaConverter writes for a SentencePiece BPE model, which
 * @huggingface/tokenizers runs: a BPE model with byte fallback over the whole text (no
 * pre-tokenizer), a normalizer that prepends ▁ (unless `addSpacePrefix` is false) and turns spaces into ▁, and
 * a decoder that turns ▁ back into spaces, byte pieces into bytes, and strips the one leading
 * space it prepended.
 *
 * SentencePiece (and llama2.c's encode) merge, at each step, the adjacent pair whose joined piece
 * has the highest score. BPE merges by rank instead, so the merges are every split of each normal
 * piece into two normal pieces, ranked by the joined piece's score (highest first). The two agree
 * whenever distinct pieces have distinct scores, as in every SentencePiece-trained vocabulary;
 * with ties sentencepiece takes the leftmost pair and BPE the lower-ranked one.
 */
export function spmTokenizerJson(vocab: SpmVocab): ImportTokenizer {
  const { pieces, scores, types } = vocab
  const n = pieces.length
  if (n === 0) throw new TokenizerError('the vocabulary is empty')
  if (scores.length !== n || types.length !== n) {
    throw new TokenizerError(
      `the vocabulary has ${n} pieces, ${scores.length} scores and ${types.length} types`,
    )
  }
  const ids = new Map<string, number>()
  const vocabJson: Record<string, number> = Object.create(null)
  for (let id = 0; id < n; id++) {
    const piece = pieces[id] as string
    const first = ids.get(piece)
    if (first !== undefined) {
      throw new TokenizerError(
        `piece ${JSON.stringify(piece)} appears twice in the vocabulary (ids ${first} and ${id})`,
      )
    }
    ids.set(piece, id)
    vocabJson[piece] = id
  }

  const isNormal = (id: number | undefined) => id !== undefined && types[id] === SPM_TYPE.normal
  const merges: Array<{ left: string; right: string; score: number; id: number; leftId: number }> = []
  for (let id = 0; id < n; id++) {
    const score = scores[id] as number
    if (!isNormal(id) || !Number.isFinite(score) || score <= MIN_MERGE_SCORE) continue
    // Every cut between two code points (never inside a surrogate pair).
    const piece = pieces[id] as string
    for (let cut = codePointEnd(piece, 0); cut < piece.length; cut = codePointEnd(piece, cut)) {
      const left = piece.slice(0, cut)
      const leftId = ids.get(left)
      if (!isNormal(leftId)) continue
      const right = piece.slice(cut)
      if (isNormal(ids.get(right))) merges.push({ left, right, score, id, leftId: leftId as number })
    }
  }
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.leftId - b.leftId)

  const added: Array<Record<string, unknown>> = []
  for (let id = 0; id < n; id++) {
    const type = types[id]
    if (type !== SPM_TYPE.unknown && type !== SPM_TYPE.control && type !== SPM_TYPE.userDefined) continue
    added.push({
      id,
      content: pieces[id],
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: type !== SPM_TYPE.userDefined,
    })
  }
  const pieceOf = (id: number | undefined, what: string): string | null => {
    if (id === undefined) return null
    if (!Number.isInteger(id) || id < 0 || id >= n) {
      throw new TokenizerError(`${what} id ${id} is outside the vocabulary of ${n} pieces`)
    }
    return pieces[id] as string
  }
  const unk = pieceOf(vocab.unkId, 'unknown-token')
  const prefix = vocab.addSpacePrefix ?? true
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        ...(prefix ? [{ type: 'Prepend', prepend: SPACE }] : []),
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabJson,
      merges: merges.map((m) => [m.left, m.right]),
    },
  }
  const config = {
    tokenizer_class: 'LlamaTokenizerFast',
    bos_token: pieceOf(vocab.bosId, 'BOS'),
    eos_token: pieceOf(vocab.eosId, 'EOS'),
    unk_token: unk,
    add_bos_token: vocab.bosId !== undefined,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
  }
  return { json, config }
}

/** The index just past the code point at `i` of `s`. */
function codePointEnd(s: string, i: number): number {
  const c = s.charCodeAt(i)
  return c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ? i + 2
    : i + 1
}

/** `<0xNN>`: SentencePiece's spelling of a byte-fallback piece. */
export function isBytePiece(piece: string): boolean {
  return /^<0x[0-9A-F]{2}>$/.test(piece)
}
