import { ModelDownloadError } from '../errors.js'
import type { FileExpectation } from './file-download.js'
import { fetchCapped, type HttpPolicy } from './hub-http.js'

/** A repository at one commit: its files with the sizes and checksums the hub lists. */
export interface HfListing {
  /** The commit the revision resolved to (40 hex digits, or 64 for SHA-256 repos). */
  readonly commit: string
  readonly files: ReadonlyMap<string, FileExpectation>
}

/** Listings of repos with tens of thousands of files stay well under this. */
export const MAX_LISTING_BYTES = 16 * 2 ** 20
const MAX_FILES = 100_000
const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/
const SHA256 = /^[0-9a-f]{64}$/
const GIT_OID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/

/**
 * `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true`: the commit a branch or tag
 * points to now, and `siblings` with `rfilename`, `size`, `blobId` and, for LFS files,
 * `lfs.sha256`. Pinning the commit makes every file of one download come from one snapshot.
 */
export async function fetchHfListing(
  endpoint: string,
  repo: string,
  revision: string,
  policy: HttpPolicy,
): Promise<HfListing> {
  const url = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`
  const what = `hf:${repo}@${revision}`
  const { bytes } = await fetchCapped(url, MAX_LISTING_BYTES, `${what} (listing)`, policy)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw badListing(what, url, 'is not JSON')
  }
  return parseHfListing(json, what, url)
}

/** Validates a listing body; exported for tests that feed it malformed ones. */
export function parseHfListing(json: unknown, what: string, url: string): HfListing {
  if (!isRecord(json)) throw badListing(what, url, 'is not an object')
  const commit = json.sha
  if (typeof commit !== 'string' || !COMMIT.test(commit)) throw badListing(what, url, 'has no commit sha')
  const siblings = json.siblings
  if (!Array.isArray(siblings)) throw badListing(what, url, 'has no siblings array')
  if (siblings.length > MAX_FILES) throw badListing(what, url, `lists over ${MAX_FILES} files`)
  const files = new Map<string, FileExpectation>()
  for (const s of siblings) {
    if (!isRecord(s) || typeof s.rfilename !== 'string')
      throw badListing(what, url, 'has a sibling without rfilename')
    const lfs = isRecord(s.lfs) ? s.lfs : undefined
    const size = lfs?.size ?? s.size
    const sha256 = lfs?.sha256
    files.set(s.rfilename, {
      size: isSize(size) ? size : undefined,
      sha256: typeof sha256 === 'string' && SHA256.test(sha256) ? sha256 : undefined,
      // For an LFS file the blob id is the pointer's, not the content's: never check against it.
      gitOid:
        lfs === undefined && typeof s.blobId === 'string' && GIT_OID.test(s.blobId) ? s.blobId : undefined,
    })
    if (lfs !== undefined && files.get(s.rfilename)?.sha256 === undefined) {
      throw badListing(what, url, `lists LFS file ${s.rfilename} without a valid sha256`)
    }
  }
  return { commit, files }
}

function badListing(what: string, url: string, why: string): ModelDownloadError {
  return new ModelDownloadError('ERR_DOWNLOAD_RESPONSE', `${what}: the hub's file listing ${why}`, { url })
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
