/** Resolves on SIGINT, SIGTERM or `signal`, whichever comes first. */
export function stopped(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done)
      process.off('SIGTERM', done)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    if (signal?.aborted) return done()
    process.on('SIGINT', done)
    process.on('SIGTERM', done)
    signal?.addEventListener('abort', done, { once: true })
  })
}
