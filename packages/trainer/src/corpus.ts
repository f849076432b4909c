import { readFile, stat } from 'node:fs/promises'
import { CorpusError } from './errors.js'

/** Token id of byte b in core's byte tokenizer (0 <unk>, 1 <s>, 2 </s>, then the 256 bytes). */
export const BYTE_OFFSET = 3
/** `<s>`, which starts every training window as it starts every prompt. */
export const BOS_ID = 1
/** Far above any text a CPU trainer can use; checked before the file is read. */
export const MAX_CORPUS_BYTES = 512 * 1024 * 1024

/**
 * A training text as byte-token ids in shared memory (worker threads read it in place). The first
 * 90% is the training split and the last 10% the held-out split, as nanoGPT splits it.
 */
export interface Corpus {
  readonly name: string
  readonly ids: Uint16Array
  /** First id of the held-out split; training windows end before it. */
  readonly trainEnd: number
}

export async function loadCorpus(file: string): Promise<Corpus> {
  let size: number
  try {
    const s = await stat(file)
    if (!s.isFile()) throw new CorpusError('ERR_CORPUS_READ', file, 'is not a regular file')
    size = s.size
  } catch (err) {
    if (err instanceof CorpusError) throw err
    const code = (err as { code?: unknown }).code
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new CorpusError('ERR_CORPUS_NOT_FOUND', file, 'no such file')
    throw new CorpusError('ERR_CORPUS_READ', file, `cannot read: ${(err as Error).message}`, { cause: err })
  }
  if (size > MAX_CORPUS_BYTES) {
    throw new CorpusError('ERR_CORPUS_READ', file, `${size} bytes exceeds the cap of ${MAX_CORPUS_BYTES}`)
  }
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err) {
    throw new CorpusError('ERR_CORPUS_READ', file, `cannot read: ${(err as Error).message}`, { cause: err })
  }
  return corpusFromBytes(file, bytes)
}

export function corpusFromText(name: string, text: string): Corpus {
  return corpusFromBytes(name, new TextEncoder().encode(text))
}

export function corpusFromBytes(name: string, bytes: Uint8Array): Corpus {
  const ids = new Uint16Array(new SharedArrayBuffer(bytes.length * 2))
  for (let i = 0; i < bytes.length; i++) ids[i] = (bytes[i] as number) + BYTE_OFFSET
  return { name, ids, trainEnd: Math.floor(bytes.length * 0.9) }
}

/** Throws unless both splits hold at least one window of seqLen bytes. */
export function checkCorpusFits(corpus: Corpus, seqLen: number): void {
  const train = corpus.trainEnd
  const val = corpus.ids.length - corpus.trainEnd
  if (train < seqLen || val < seqLen) {
    throw new CorpusError(
      'ERR_CORPUS_TOO_SMALL',
      corpus.name,
      `${corpus.ids.length} bytes split into ${train} training and ${val} held-out bytes; each split needs at least the context, ${seqLen}`,
    )
  }
}

/**
 * A window of the corpus: targets ids[start, start + T), inputs `<s>` then ids[start, start + T - 1).
 * Rows before firstRow are not scored.
 */
export interface Window {
  readonly start: number
  readonly firstRow: number
}

/**
 * Windows that score every held-out byte exactly once: back-to-back windows of seqLen, then one
 * ending at the last byte that scores only the bytes not yet scored.
 */
export function heldOutWindows(corpus: Corpus, seqLen: number): Window[] {
  const n = corpus.ids.length
  const windows: Window[] = []
  let start = corpus.trainEnd
  for (; start + seqLen <= n; start += seqLen) windows.push({ start, firstRow: 0 })
  // Bytes before `start` are scored; a last window ending at n scores the rest.
  if (start < n) windows.push({ start: n - seqLen, firstRow: start - (n - seqLen) })
  return windows
}
