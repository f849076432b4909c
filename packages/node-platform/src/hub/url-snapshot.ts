import { createHash } from 'node:crypto'
import { parseSafetensorsIndexBytes, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE } from '@butterfly/core'
import { ModelDownloadError } from '../errors.js'
import { OPTIONAL_CHAT_FILES, TOKENIZER_FILES } from '../models/tokenizer-files.js'
import type { PlannedFile } from './file-download.js'
import { expectStatus, fetchCapped, type HttpPolicy, hubRequest, withRetries } from './hub-http.js'

/** What a directory URL holds now: its small files in memory and the weights to fetch. */
export interface UrlSnapshot {
  /** Changes whenever any file changes (content of the small ones, size/ETag of the weights). */
  readonly id: string
  readonly small: ReadonlyMap<string, Uint8Array>
  readonly weights: readonly PlannedFile[]
}

const SHA256 = /^[0-9a-f]{64}$/

/**
 * Reads a plain directory URL (a static mirror, or a butterfly-server's `/models/MESH/`):
 * config.json and tokenizer.json (required), tokenizer_config.json, chat_template.jinja,
 * generation_config.json and model.safetensors.index.json (optional), then HEADs each weights file for its size and ETag.
 * An ETag that is a SHA-256 (as the Hub's and butterfly-server's are) becomes the checksum.
 */
export async function fetchUrlSnapshot(
  base: string,
  policy: HttpPolicy,
  caps: { config: number; tokenizer: number; tokenizerConfig: number; index: number },
  retry: { retries: number; delayMs: number } = { retries: 4, delayMs: 500 },
): Promise<UrlSnapshot> {
  const again = <T>(fn: () => Promise<T>) => withRetries(fn, { ...retry, signal: policy.signal })
  const small = new Map<string, Uint8Array>()
  const get = async (path: string, cap: number, optional = false) => {
    try {
      const { bytes } = await again(() => fetchCapped(`${base}${path}`, cap, `${base}${path}`, policy))
      small.set(path, bytes)
      return bytes
    } catch (err) {
      if (optional && err instanceof ModelDownloadError && err.code === 'ERR_DOWNLOAD_NOT_FOUND')
        return undefined
      throw err
    }
  }
  await get('config.json', caps.config)
  await get('tokenizer.json', caps.tokenizer)
  await get('tokenizer_config.json', caps.tokenizerConfig, true)
  for (const f of OPTIONAL_CHAT_FILES) await get(f, TOKENIZER_FILES[f], true)
  const indexBytes = await get(SAFETENSORS_INDEX_FILE, caps.index, true)
  const names = indexBytes
    ? parseSafetensorsIndexBytes(indexBytes, `${base}${SAFETENSORS_INDEX_FILE}`).shards
    : [SAFETENSORS_FILE]

  const id = createHash('sha256')
  for (const [path, bytes] of small)
    id.update(`${path}\0${createHash('sha256').update(bytes).digest('hex')}\0`)
  const weights: PlannedFile[] = []
  for (const path of names) {
    const url = `${base}${path}`
    const res = await again(async () => {
      const r = await hubRequest(url, { method: 'HEAD' }, policy)
      await expectStatus(r, [200], url)
      await r.close()
      return r
    })
    const size = Number(res.headers.get('content-length') ?? Number.NaN)
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ModelDownloadError('ERR_DOWNLOAD_RESPONSE', `${url}: HEAD gives no Content-Length`, { url })
    }
    const etag = res.hubHeaders.get('x-linked-etag') ?? res.headers.get('etag') ?? ''
    const sha256 = etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1')
    const modified = res.headers.get('last-modified') ?? ''
    id.update(`${path}\0${size}\0${etag}\0${modified}\0`)
    weights.push({ path, url, expect: { size, sha256: SHA256.test(sha256) ? sha256 : undefined } })
  }
  return { id: id.digest('hex').slice(0, 16), small, weights }
}
