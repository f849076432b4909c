import { ButterflyError } from '@butterfly/core'
import { CommanderError } from 'commander'
import { CliUsageError } from '../errors.js'

export interface CliMainOptions {
  /** The program's name, which starts every message: `butterfly-worker: error [CODE]: …`. */
  readonly name: string
  /** Which reported errors exit 2 (usage) rather than 1; default: CliUsageError. */
  readonly isUsage?: (e: ButterflyError) => boolean
  /** Report Node system errors (`code` like EADDRINUSE) as `error [CODE]` with exit 1, not as internal. */
  readonly systemErrors?: boolean
}

/**
 * Runs a commander CLI's `parse` and turns what it throws into an exit code, the same way for
 * every Butterfly CLI: --help and --version exit 0; commander's usage errors print
 * `NAME: error [ERR_CLI_USAGE]: …` and exit 2; a ButterflyError (thrown, or the `cause` of what
 * was thrown) prints `NAME: error [CODE]: message` with no stack and exits 2 for usage errors, else
 * 1; anything else is an internal error: its stack, exit 70.
 */
export async function runCliMain(parse: () => Promise<unknown>, options: CliMainOptions): Promise<number> {
  try {
    await parse()
    return 0
  } catch (err) {
    return reportCliError(err, options)
  }
}

/** What runCliMain does with an error: writes it to stderr and returns the exit code. */
export function reportCliError(err: unknown, options: CliMainOptions): number {
  const { name } = options
  const isUsage = options.isUsage ?? ((e: ButterflyError) => e instanceof CliUsageError)
  if (err instanceof CommanderError) {
    if (err.exitCode === 0) return 0 // --help, --version
    const usage = new CliUsageError(err.message.replace(/^error: /, ''))
    process.stderr.write(`${name}: error [${usage.code}]: ${usage.message}\n`)
    return 2
  }
  const cause = (err as { cause?: unknown }).cause
  const e = err instanceof ButterflyError ? err : cause instanceof ButterflyError ? cause : undefined
  if (e !== undefined) {
    process.stderr.write(`${name}: error [${e.code}]: ${e.message}\n`)
    return isUsage(e) ? 2 : 1
  }
  const code = (err as { code?: unknown }).code
  if (options.systemErrors === true && typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    process.stderr.write(`${name}: error [${code}]: ${(err as Error).message}\n`)
    return 1
  }
  process.stderr.write(`${name}: internal error: ${(err as Error).stack ?? String(err)}\n`)
  return 70
}
