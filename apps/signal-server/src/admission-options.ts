import { Option } from 'commander'
import { intArg } from './cli-args.js'
import { ADMISSION_DEFAULTS } from './gateway/admission.js'

/** The parsed admission flags of `butterfly-server` (ServerCliOptions has them too). */
export interface AdmissionCliOptions {
  maxConcurrent: number
  maxQueued: number
  maxQueuedPerKey: number
  /** Seconds. */
  maxQueueWait: number
}

/**
 * The flags of each mesh's admission (gateway/admission.ts), by option name. Kept apart from
 * cli.ts, which would otherwise outgrow its file; each reads an environment variable too.
 */
export function admissionOptions(): Record<keyof AdmissionCliOptions, Option> {
  const d = ADMISSION_DEFAULTS
  return {
    maxConcurrent: new Option(
      '--max-concurrent <n>',
      'generations running at once per mesh; more wait in a bounded queue',
    )
      .env('BUTTERFLY_MAX_CONCURRENT')
      .argParser(intArg('--max-concurrent', 1, 4096))
      .default(d.maxConcurrent),
    maxQueued: new Option(
      '--max-queued <n>',
      'generations allowed to wait, all clients together; past that the API answers 429',
    )
      .env('BUTTERFLY_MAX_QUEUED')
      .argParser(intArg('--max-queued', 0, 1_000_000))
      .default(d.maxQueued),
    maxQueuedPerKey: new Option(
      '--max-queued-per-key <n>',
      'generations one client (its API key, else its address) may have waiting; past that it alone gets 429. Waiting clients are served in turn',
    )
      .env('BUTTERFLY_MAX_QUEUED_PER_KEY')
      .argParser(intArg('--max-queued-per-key', 1, 1_000_000))
      .default(d.maxQueuedPerKey),
    maxQueueWait: new Option(
      '--max-queue-wait <seconds>',
      'longest a generation may wait for its turn: one whose estimated wait (from measured generation times) exceeds it, or that has waited that long, gets 429 with Retry-After',
    )
      .env('BUTTERFLY_MAX_QUEUE_WAIT')
      .argParser(intArg('--max-queue-wait', 1, 3600))
      .default(d.maxQueueWaitMs / 1000),
  }
}
