#!/usr/bin/env node
// Run before `npm test`: some suites start real daemons on loopback (coturn for the TURN suites,
// redis-server for the Redis ones). For each one whose binary is missing, when we are root with
// apt, the distribution's package is installed, all in one apt-get call; their services are not
// started (the tests start their own on free ports). Otherwise this says what to do.
import { execFileSync } from 'node:child_process'
import { existsSync, unlinkSync, writeFileSync } from 'node:fs'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'

/** What the suites need: a binary (or its override in `env`), and the Debian package with it. */
export const TEST_DAEMONS = [
  { name: 'coturn', bins: ['/usr/bin/turnserver'], env: 'BUTTERFLY_TURNSERVER', aptPackage: 'coturn' },
  {
    name: 'redis-server',
    bins: ['/usr/bin/redis-server'],
    env: 'BUTTERFLY_REDIS_SERVER',
    aptPackage: 'redis-server',
  },
]

// Debian's maintainer scripts start a package's service through invoke-rc.d unless this file
// answers 101 ("action forbidden"); a redis on 6379 or a coturn on 3478 would outlive the run.
const POLICY_RC_D = '/usr/sbin/policy-rc.d'

function present(wanted) {
  const override = process.env[wanted.env]
  return [override, ...wanted.bins].filter(Boolean).some((p) => existsSync(p))
}

function aptInstall(packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  // Only a policy we wrote is removed again: an existing one is the machine's own choice.
  const ownPolicy = !existsSync(POLICY_RC_D)
  if (ownPolicy) writeFileSync(POLICY_RC_D, '#!/bin/sh\nexit 101\n', { mode: 0o755 })
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
      stdio: 'inherit',
      env,
    })
  } finally {
    if (ownPolicy) unlinkSync(POLICY_RC_D)
  }
}

/**
 * Installs what `wanted` lacks with one `apt-get install` when root with apt; returns false (after
 * saying how to install each by hand) when something is missing and cannot be installed here.
 */
export function ensureAptPackages(wanted) {
  const missing = wanted.filter((w) => !present(w))
  if (missing.length === 0) return true
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (!root || !existsSync('/usr/bin/apt-get')) {
    for (const m of missing)
      process.stderr.write(
        `tests: no ${m.name} found. Install your distribution's ${m.aptPackage} package ` +
          `(e.g. apt-get install ${m.aptPackage}) or point ${m.env} at a ${basename(m.bins[0])} binary.\n`,
      )
    return false
  }
  const packages = missing.map((m) => m.aptPackage)
  process.stderr.write(`tests: installing ${packages.join(', ')} with apt-get (once)\n`)
  aptInstall(packages)
  return true
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!ensureAptPackages(TEST_DAEMONS)) process.exit(1)
}
