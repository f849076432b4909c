import { ModelDownloadError } from '../errors.js'
import { isAllowedUrl } from './model-spec.js'

/** How every request to a hub, CDN or model URL behaves. */
export interface HttpPolicy {
  readonly signal?: AbortSignal | undefined
  /** Sent as `Authorization: Bearer` only to `tokenOrigin`, never to a CDN it redirects to. */
  readonly token?: string | undefined
  readonly tokenOrigin?: string | undefined
  /** Longest wait for response headers. */
  readonly headersTimeoutMs: number
  /** Longest wait between two body chunks; a stalled transfer fails (and is resumed) after it. */
  readonly idleTimeoutMs: number
  readonly maxRedirects: number
}

export const DEFAULT_HTTP_POLICY: HttpPolicy = {
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxRedirects: 5,
}

export interface HubResponse {
  readonly status: number
  /** The URL that answered, after redirects (without credentials). */
  readonly url: string
  /** Headers of the first response: the hub's own (X-Repo-Commit, X-Linked-Etag) before a CDN hop. */
  readonly hubHeaders: Headers
  /** Headers of the final response. */
  readonly headers: Headers
  /** The body, each chunk within idleTimeoutMs of the last. */
  chunks(): AsyncGenerator<Uint8Array>
  /** Drops the body and releases the request. */
  close(): Promise<void>
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

/**
 * One request with redirects followed by hand, so each hop is checked (https, or http on
 * loopback), counted (at most maxRedirects), and stripped of the token when it leaves the hub.
 * Any status comes back; `expectStatus` turns the unwanted ones into errors.
 */
export async function hubRequest(
  url: string,
  init: { method?: 'GET' | 'HEAD'; headers?: Record<string, string> },
  policy: HttpPolicy,
): Promise<HubResponse> {
  const controller = new AbortController()
  const outer = policy.signal
  const forward = () => controller.abort(outer?.reason)
  outer?.throwIfAborted()
  outer?.addEventListener('abort', forward, { once: true })
  let timer: ReturnType<typeof setTimeout> | undefined
  let timedOut = false
  const arm = (ms: number) => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, ms)
  }
  const release = () => {
    clearTimeout(timer)
    outer?.removeEventListener('abort', forward)
  }
  const failure = (err: unknown, at: string): unknown => {
    if (outer?.aborted) return outer.reason ?? err
    if (err instanceof ModelDownloadError) return err
    if (timedOut) {
      return new ModelDownloadError('ERR_DOWNLOAD_TIMEOUT', `${at}: no data for too long`, {
        url: at,
        retryable: true,
      })
    }
    const cause = (err as { cause?: { message?: string } }).cause?.message
    const why = cause ?? (err as Error).message
    return new ModelDownloadError('ERR_DOWNLOAD_NETWORK', `${at}: ${why}`, {
      url: at,
      retryable: true,
      cause: err,
    })
  }

  let current = new URL(url)
  let method = init.method ?? 'GET'
  let hubHeaders: Headers | undefined
  try {
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'accept-encoding': 'identity', ...init.headers }
      if (policy.token !== undefined && policy.token !== '' && current.origin === policy.tokenOrigin) {
        headers.authorization = `Bearer ${policy.token}`
      }
      arm(policy.headersTimeoutMs)
      const res = await fetch(current, { method, headers, redirect: 'manual', signal: controller.signal })
      hubHeaders ??= res.headers
      const location = res.headers.get('location')
      if (!REDIRECTS.has(res.status) || location === null) {
        clearTimeout(timer)
        return response(res, current.href, hubHeaders)
      }
      await res.body?.cancel().catch(() => undefined)
      if (hop >= policy.maxRedirects) {
        throw new ModelDownloadError(
          'ERR_DOWNLOAD_REDIRECT',
          `${url}: more than ${policy.maxRedirects} redirects`,
          {
            url,
          },
        )
      }
      let next: URL
      try {
        next = new URL(location, current)
      } catch {
        throw new ModelDownloadError('ERR_DOWNLOAD_REDIRECT', `${current.href}: redirect to an invalid URL`, {
          url: current.href,
        })
      }
      if (!isAllowedUrl(next) || next.username !== '' || next.password !== '') {
        throw new ModelDownloadError(
          'ERR_DOWNLOAD_REDIRECT',
          `${current.href}: redirect to ${next.protocol}//${next.host} refused (only https, or http on loopback)`,
          { url: current.href },
        )
      }
      if (res.status === 303) method = 'GET'
      current = next
    }
  } catch (err) {
    release()
    throw failure(err, current.href)
  }

  function response(res: Response, at: string, first: Headers): HubResponse {
    return {
      status: res.status,
      url: at,
      hubHeaders: first,
      headers: res.headers,
      async *chunks() {
        if (res.body === null) return release()
        const reader = res.body.getReader()
        let finished = false
        try {
          for (;;) {
            arm(policy.idleTimeoutMs)
            const { done, value } = await reader.read()
            if (done) {
              finished = true
              return
            }
            yield value
          }
        } catch (err) {
          finished = true
          throw failure(err, at)
        } finally {
          release()
          // A consumer that stops early (a size cap) must not leave the connection streaming.
          if (!finished) await reader.cancel().catch(() => undefined)
          reader.releaseLock()
        }
      },
      async close() {
        release()
        await res.body?.cancel().catch(() => undefined)
      },
    }
  }
}

/** Throws the error a status means unless it is one of `ok`; the body is dropped first. */
export async function expectStatus(res: HubResponse, ok: readonly number[], what: string): Promise<void> {
  if (ok.includes(res.status)) return
  await res.close()
  const detail = res.hubHeaders.get('x-error-message') ?? res.headers.get('x-error-message')
  const hint = detail ? ` (${detail})` : ''
  const opts = { url: res.url, status: res.status }
  if (res.status === 401 || res.status === 403) {
    throw new ModelDownloadError(
      'ERR_DOWNLOAD_AUTH',
      `${what}: ${res.status}${hint}; for a gated or private repository set HF_TOKEN to a token with access`,
      opts,
    )
  }
  if (res.status === 404)
    throw new ModelDownloadError('ERR_DOWNLOAD_NOT_FOUND', `${what}: not found${hint}`, opts)
  const retryable = res.status === 429 || res.status >= 500
  throw new ModelDownloadError('ERR_DOWNLOAD_HTTP', `${what}: server answered ${res.status}${hint}`, {
    ...opts,
    retryable,
  })
}

/** GETs a body of at most `maxBytes` (checked against Content-Length first, then as it arrives). */
export async function fetchCapped(
  url: string,
  maxBytes: number,
  what: string,
  policy: HttpPolicy,
): Promise<{ bytes: Uint8Array; res: HubResponse }> {
  const res = await hubRequest(url, {}, policy)
  await expectStatus(res, [200], what)
  const announced = Number(res.headers.get('content-length') ?? Number.NaN)
  const tooBig = () =>
    new ModelDownloadError('ERR_DOWNLOAD_SIZE', `${what} is larger than the cap of ${maxBytes} bytes`, {
      url: res.url,
    })
  if (announced > maxBytes) {
    await res.close()
    throw tooBig()
  }
  const parts: Uint8Array[] = []
  let total = 0
  for await (const chunk of res.chunks()) {
    total += chunk.byteLength
    if (total > maxBytes) {
      await res.close()
      throw tooBig()
    }
    parts.push(chunk)
  }
  const bytes = new Uint8Array(total)
  let at = 0
  for (const p of parts) {
    bytes.set(p, at)
    at += p.byteLength
  }
  return { bytes, res }
}

/**
 * Runs `attempt` until it succeeds or fails with an error that is not retryable, at most
 * `retries + 1` times, waiting `delayMs`·2^i between tries (the caller's abort ends the wait).
 */
export async function withRetries<T>(
  attempt: (n: number) => Promise<T>,
  opts: {
    retries: number
    delayMs: number
    signal?: AbortSignal | undefined
    onRetry?: (err: Error) => void
  },
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n)
    } catch (err) {
      const retryable = err instanceof ModelDownloadError && err.retryable
      if (!retryable || n >= opts.retries || opts.signal?.aborted) throw err
      opts.onRetry?.(err)
      await delay(opts.delayMs * 2 ** n, opts.signal)
    }
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      signal?.removeEventListener('abort', abort)
      resolve()
    }
    const timer = setTimeout(done, ms)
    const abort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', abort, { once: true })
  })
}
