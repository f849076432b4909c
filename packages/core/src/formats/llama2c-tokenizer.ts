import { ModelFileError, TokenizerError } from '../errors.js'
import type { ByteSource } from '../weights/byte-source.js'
import { ByteCursor } from './byte-cursor.js'
import type { ImportTokenizer } from './import-source.js'
import { isBytePiece, SPM_TYPE, type SpmVocab, spmTokenizerJson } from './spm-tokenizer-json.js'

/** run.c sizes its merge buffer from max_token_length; nothing real comes near this. */
const MAX_TOKEN_LENGTH = 1 << 16
const UNK_ID = 0
const BOS_ID = 1
const EOS_ID = 2

/**
 * Reads llama2.c's tokenizer.bin: int32 max_token_length, then for each of the model's
 * `vocabSize` tokens a float32 score, an int32 byte length and the UTF-8 piece. The file does not
 * record its own size, so the model's vocab_size is needed; bytes left over are an error. Pieces
 * are as llama2.c's export writes them: spaces for ▁, BOS as "\n<s>\n", EOS as "\n</s>\n".
 * Returns the pieces in sentencepiece spelling (▁, <s>, </s>) with llama2.c's fixed ids.
 */
export async function readLlama2cTokenizer(source: ByteSource, vocabSize: number): Promise<SpmVocab> {
  const cur = new ByteCursor(source)
  const fail = (message: string, cause?: unknown) =>
    new TokenizerError(`${source.name}: ${message}`, cause === undefined ? {} : { cause })
  try {
    cur.context = 'max_token_length'
    const maxLength = await cur.i32()
    if (maxLength < 1 || maxLength > MAX_TOKEN_LENGTH) {
      throw fail(`max_token_length ${maxLength} is outside [1, ${MAX_TOKEN_LENGTH}]`)
    }
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
    const pieces: string[] = []
    const scores = new Float64Array(vocabSize)
    const types = new Uint8Array(vocabSize)
    for (let id = 0; id < vocabSize; id++) {
      cur.context = `token ${id} of ${vocabSize}`
      scores[id] = await cur.f32()
      const length = await cur.i32()
      if (length < 0 || length > maxLength) {
        throw fail(`token ${id} has length ${length}, outside [0, max_token_length ${maxLength}]`)
      }
      let piece: string
      try {
        piece = decoder.decode(await cur.bytes(length))
      } catch (err) {
        if (err instanceof ModelFileError) throw err
        throw fail(`token ${id} is not valid UTF-8`, err)
      }
      if (id === BOS_ID && piece === '\n<s>\n') piece = '<s>'
      else if (id === EOS_ID && piece === '\n</s>\n') piece = '</s>'
      else piece = piece.replaceAll(' ', '\u2581')
      pieces.push(piece)
      types[id] =
        id === UNK_ID
          ? SPM_TYPE.unknown
          : id === BOS_ID || id === EOS_ID
            ? SPM_TYPE.control
            : isBytePiece(piece)
              ? SPM_TYPE.byte
              : SPM_TYPE.normal
    }
    if (cur.remaining !== 0) {
      throw fail(`${cur.remaining} bytes follow the ${vocabSize} tokens the model's vocab_size calls for`)
    }
    return {
      pieces,
      scores,
      types,
      unkId: vocabSize > UNK_ID ? UNK_ID : undefined,
      bosId: vocabSize > BOS_ID ? BOS_ID : undefined,
      eosId: vocabSize > EOS_ID ? EOS_ID : undefined,
    }
  } catch (err) {
    // A truncated tokenizer is a tokenizer problem; keep the reader's precise message.
    if (err instanceof ModelFileError) throw fail(err.message.slice(source.name.length + 2), err)
    throw err
  }
}

/** tokenizer.json (and tokenizer_config.json) equivalent to llama2.c's encode and decode. */
export async function llama2cTokenizerJson(source: ByteSource, vocabSize: number): Promise<ImportTokenizer> {
  return spmTokenizerJson(await readLlama2cTokenizer(source, vocabSize))
}
