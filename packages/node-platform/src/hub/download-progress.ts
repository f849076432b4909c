import bytes from 'bytes'
import cliProgress from 'cli-progress'
import type { DownloadProgress } from './download-model.js'

/**
 * A byte progress bar on `stream` when it is a terminal; undefined otherwise, so logs and
 * pipes get the one "downloading …" line and no bar redraws.
 */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): DownloadProgress | undefined {
  if (!stream.isTTY) return undefined
  const bar = new cliProgress.SingleBar(
    {
      format: 'downloading weights [{bar}] {percentage}% {done}/{size} ({speed}/s) eta {eta_formatted}',
      stream,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  )
  let started = 0
  let done = 0
  const fields = () => {
    const seconds = Math.max((Date.now() - started) / 1000, 0.001)
    return { done: bytes(done), speed: bytes(Math.round(done / seconds)) }
  }
  return {
    start(total) {
      started = Date.now()
      done = 0
      bar.start(total, 0, { ...fields(), size: bytes(total) })
    },
    advance(n) {
      done += n
      bar.increment(n, fields())
    },
    stop() {
      bar.stop()
    },
  }
}
