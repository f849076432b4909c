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

/**
 * Exits the process `ms` from now (never without `ms`) unless it has exited by then; the timer
 * does not keep it alive.
 * Closing waits for connections and peers to go, and under load the native handles of torn-down
 * WebRTC peers have kept the event loop alive after everything had closed: the server then never
 * exited on SIGTERM. Exits 0 when the close finished (the exit code is set by then), else 1.
 */
export function exitAfter(ms: number | undefined): void {
  if (ms === undefined) return
  setTimeout(() => {
    process.stderr.write(`butterfly-server: still running ${ms / 1000} s after the stop; exiting\n`)
    process.exit(process.exitCode ?? 1)
  }, ms).unref()
}
