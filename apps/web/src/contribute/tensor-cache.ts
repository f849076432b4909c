import type { TensorCache } from '@butterfly/core'

/** Counts of what a contribution loaded from the cache and what it had to download. */
export interface CacheCounts {
  hits: number
  misses: number
}

/**
 * Downloaded tensors in the browser's Cache Storage, keyed by SHA-256, so a returning tab loads
 * its layers without downloading them again (core checks every entry against the manifest).
 */
export async function browserTensorCache(counts: CacheCounts): Promise<TensorCache | undefined> {
  if (typeof caches === 'undefined') return undefined // not a secure context
  const cache = await caches.open('butterfly-tensors-v1')
  const key = (sha256: string) => new Request(new URL(`/.butterfly-tensors/${sha256}`, location.href))
  return {
    async get(sha256) {
      const res = await cache.match(key(sha256))
      if (res === undefined) {
        counts.misses++
        return undefined
      }
      counts.hits++
      return new Uint8Array(await res.arrayBuffer())
    },
    async put(sha256, bytes) {
      await cache.put(key(sha256), new Response(bytes.slice().buffer))
    },
  }
}
