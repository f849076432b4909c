#!/usr/bin/env node
// Run before `npm test`: the TURN suites start a real coturn on loopback. When no turnserver is
// found and we are root with apt, the distribution's coturn package is installed (its service is
// not started: the tests start their own on free ports); otherwise this says what to do.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const candidates = [process.env.BUTTERFLY_TURNSERVER, '/usr/bin/turnserver'].filter(Boolean)
if (candidates.some((p) => existsSync(p))) process.exit(0)
const root = typeof process.getuid === 'function' && process.getuid() === 0
if (!root || !existsSync('/usr/bin/apt-get')) {
  process.stderr.write(
    "tests: no coturn found. Install your distribution's coturn package (e.g. apt-get install coturn) " +
      'or point BUTTERFLY_TURNSERVER at a turnserver binary.\n',
  )
  process.exit(1)
}
process.stderr.write('tests: installing coturn with apt-get (once)\n')
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'coturn'], {
  stdio: 'inherit',
  env,
})
