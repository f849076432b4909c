/**
 * The server's errors as people read them, and the server-sent-events reader both streaming
 * endpoints share (`/v1/completions` and `/v1/chat/completions` with `stream: true`).
 */
export class ApiFailure extends Error {
  override readonly name = 'ApiFailure'
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message)
  }
}

export interface ErrorBody {
  error?: { message?: unknown; code?: unknown }
}

export function failure(status: number, body: ErrorBody | undefined): ApiFailure {
  const message =
    typeof body?.error?.message === 'string' ? body.error.message : `the server answered ${status}`
  const code = typeof body?.error?.code === 'string' ? body.error.code : 'http_error'
  return new ApiFailure(message, code, status)
}

/** POSTs a JSON body; a refusal becomes an ApiFailure with the server's own words. */
export async function postStream(url: string, body: unknown, signal: AbortSignal): Promise<Response> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  }).catch((err: unknown) => {
    if (signal.aborted) throw err
    throw new ApiFailure('the server cannot be reached', 'unreachable', 0)
  })
  if (!res.ok || res.body === null)
    throw failure(res.status, (await res.json().catch(() => undefined)) as ErrorBody)
  return res
}

/**
 * Calls `onData` with each event's parsed JSON until the server sends [DONE]. An error chunk
 * (the server failed mid-stream) and a stream that ends without [DONE] both reject.
 */
export async function readEvents(res: Response, onData: (chunk: unknown) => void): Promise<void> {
  if (res.body === null) throw new ApiFailure('the server sent no body', 'no_body', 502)
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) throw new ApiFailure('the server closed the stream before it finished', 'stream_cut', 502)
    buffer += value
    let end = buffer.indexOf('\n\n')
    while (end !== -1) {
      const event = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      end = buffer.indexOf('\n\n')
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n')
      if (data === '') continue
      if (data === '[DONE]') return
      const chunk = JSON.parse(data) as ErrorBody
      if (chunk.error !== undefined) throw failure(500, chunk)
      onData(chunk)
    }
  }
}
