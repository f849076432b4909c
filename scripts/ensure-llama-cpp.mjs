#!/usr/bin/env node
// Run before `npm test`: the llama.cpp agreement suite needs node-llama-cpp, which with every
// platform variant is ~700 MB. It is not a dependency (a user who only runs the mesh never needs
// it); instead this installs the pinned release and only this platform's CPU binaries into
// .cache/llama-cpp (~85 MB), once. BUTTERFLY_LLAMA_CPP_DIR points elsewhere.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const LLAMA_CPP_VERSION = '3.21.1'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const dir = process.env.BUTTERFLY_LLAMA_CPP_DIR ?? join(root, '.cache', 'llama-cpp')
const installed = join(dir, 'node_modules', 'node-llama-cpp', 'package.json')
const binaries = `@node-llama-cpp/${process.platform === 'win32' ? 'win' : process.platform === 'darwin' ? 'mac' : 'linux'}-${process.arch}${process.platform === 'darwin' && process.arch === 'arm64' ? '-metal' : ''}`

const version = existsSync(installed) ? JSON.parse(readFileSync(installed, 'utf8')).version : undefined
if (version === LLAMA_CPP_VERSION) process.exit(0)

mkdirSync(dir, { recursive: true })
writeFileSync(
  join(dir, 'package.json'),
  `${JSON.stringify({ name: 'butterfly-llama-cpp', private: true })}\n`,
)
process.stderr.write(
  `llama.cpp: installing node-llama-cpp@${LLAMA_CPP_VERSION} (${binaries}) into ${dir} (once)\n`,
)
try {
  // --omit=optional skips the other platforms' binaries; this platform's is named explicitly.
  // Its postinstall (which may try to build llama.cpp) is not needed: the prebuilt binaries load.
  execFileSync(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--omit=optional',
      '--ignore-scripts',
      '--save-exact',
      `node-llama-cpp@${LLAMA_CPP_VERSION}`,
      `${binaries}@${LLAMA_CPP_VERSION}`,
    ],
    { cwd: dir, stdio: 'inherit', shell: process.platform === 'win32' },
  )
} catch (err) {
  process.stderr.write(
    `llama.cpp: could not install node-llama-cpp@${LLAMA_CPP_VERSION} from the npm registry (${err.message}).\n` +
      'The llama.cpp agreement suite needs it; set BUTTERFLY_LLAMA_CPP_DIR to a directory where it is installed.\n',
  )
  process.exit(1)
}
