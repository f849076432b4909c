import { spawn } from 'node:child_process'

/** What a finished CLI process left behind. */
export interface CliRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunCliOptions {
  /** Added to (and overriding) this process's environment, e.g. `{ BUTTERFLY_CACHE_DIR: dir }`. */
  readonly env?: Readonly<Record<string, string>>
}

/**
 * Runs a built CLI (`npm test` compiles first) as a real process with this Node, stdin closed,
 * and resolves once it has exited with its exit code and everything it wrote.
 */
export function runCli(bin: string, args: readonly string[], options: RunCliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}
