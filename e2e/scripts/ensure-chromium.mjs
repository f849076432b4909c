#!/usr/bin/env node
// Run before `npm test`: the e2e suite drives a real Chromium. Playwright's own browser download
// is not reachable everywhere we run, so we use the distribution's package: when no Chromium is
// found and we are root with apt, it is installed; otherwise this says what to do.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const candidates = [process.env.BUTTERFLY_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(
  Boolean,
)
if (candidates.some((p) => existsSync(p))) process.exit(0)
const root = typeof process.getuid === 'function' && process.getuid() === 0
if (!root || !existsSync('/usr/bin/apt-get')) {
  process.stderr.write(
    "e2e: no Chromium found. Install your distribution's chromium package (e.g. apt-get install chromium) " +
      'or point BUTTERFLY_CHROMIUM at a Chromium binary.\n',
  )
  process.exit(1)
}
process.stderr.write('e2e: installing chromium with apt-get (once)\n')
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'inherit', env })
