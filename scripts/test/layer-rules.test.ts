import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'

// The layer rules must be able to fail: each case builds a small tree in a temporary directory
// with the repository's real .dependency-cruiser.cjs and scripts/check-layout.mjs, breaks one
// rule, and expects that rule (and only the expected ones) to be reported.

const repo = fileURLToPath(new URL('../..', import.meta.url))
const depcruise = join(repo, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs')
const dirs: string[] = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

type Tree = Record<string, string>

/** A tree that passes every rule: a few core layers, two apps, a package test, the docs. */
const CLEAN: Tree = {
  'packages/core/src/index.ts': "export * from './mesh/plan.js'\n",
  'packages/core/src/errors.ts': 'export class E extends Error {}\n',
  'packages/core/src/base/rng.ts': "import { E } from '../errors.js'\nexport const rng = E\n",
  'packages/core/src/wire/frame.ts': "import { rng } from '../base/rng.js'\nexport const frame = rng\n",
  'packages/core/src/mesh/plan.ts': "import { frame } from '../wire/frame.js'\nexport const plan = frame\n",
  'packages/core/test/plan.test.ts': "import { plan } from '../src/mesh/plan.js'\nexport const t = plan\n",
  'apps/signal-server/src/control/mesh.ts': 'export const mesh = 1\n',
  'apps/signal-server/src/http/routes.ts':
    "import { mesh } from '../control/mesh.js'\nexport const routes = mesh\n",
  'apps/web/src/main.tsx': 'export const main = 1\n',
  'e2e/chat.test.ts': 'export const chat = 1\n',
  'ARCHITECTURE.md': 'See `packages/core/src/wire/frame.ts` and `http/routes.ts`.\n',
  'CONTRIBUTING.md': 'Tests live in `packages/core/test/`.\n',
}

async function tree(files: Tree): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bf-layers-'))
  dirs.push(dir)
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true })
    await writeFile(join(dir, path), text)
  }
  await mkdir(join(dir, 'scripts'), { recursive: true })
  for (const f of ['.dependency-cruiser.cjs', 'scripts/core-layers.cjs', 'scripts/check-layout.mjs']) {
    await copyFile(join(repo, f), join(dir, f))
  }
  await writeFile(
    join(dir, 'tsconfig.test.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }),
  )
  return dir
}

function run(cwd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, out: stdout + stderr })
    })
  })
}

/** The names of the rules dependency-cruiser reports for the tree, each once. */
async function violations(dir: string): Promise<string[]> {
  const { out } = await run(dir, [
    depcruise,
    'packages',
    'apps',
    'e2e',
    '-c',
    '.dependency-cruiser.cjs',
    '-T',
    'err',
  ])
  return [...new Set([...out.matchAll(/error (\S+):/g)].map((m) => m[1] as string))].sort()
}

describe('dependency rules', () => {
  test('the clean tree passes', async () => {
    expect(await violations(await tree(CLEAN))).toEqual([])
  })

  test.each<[string, Tree, string[]]>([
    [
      'an import cycle',
      {
        'packages/core/src/base/rng.ts':
          "import { E } from '../errors.js'\nimport './other.js'\nexport const rng = E\n",
        'packages/core/src/base/other.ts': "import './rng.js'\nexport const o = 1\n",
      },
      ['no-circular'],
    ],
    [
      'a core layer importing a higher one',
      {
        'packages/core/src/wire/frame.ts':
          "import { plan } from '../mesh/plan.js'\nexport const frame = plan\n",
      },
      ['core-layer-1', 'no-circular'],
    ],
    [
      'core importing a node builtin',
      { 'packages/core/src/base/rng.ts': "import 'node:fs'\nexport const rng = 1\n" },
      ['core-no-node'],
    ],
    [
      'core importing another workspace',
      {
        'packages/core/src/base/rng.ts': "import '../../../../apps/web/src/main.js'\nexport const rng = 1\n",
      },
      ['core-no-workspace', 'no-reach-into-other-package', 'packages-not-apps'],
    ],
    [
      'a core module importing the index',
      { 'packages/core/src/wire/frame.ts': "import '../index.js'\nexport const frame = 1\n" },
      ['core-root', 'no-circular'],
    ],
    [
      'an app importing another app',
      {
        'apps/web/src/main.tsx': "import '../../signal-server/src/control/mesh.js'\nexport const main = 1\n",
      },
      ['apps-independent', 'no-reach-into-other-package'],
    ],
    [
      'a test reaching into another package',
      { 'apps/signal-server/test/x.test.ts': "import '../../../packages/core/src/wire/frame.js'\n" },
      ['no-reach-into-other-package'],
    ],
    [
      'a server room importing one above it',
      { 'apps/signal-server/src/control/mesh.ts': "import '../http/routes.js'\nexport const mesh = 1\n" },
      ['no-circular', 'server-rooms'],
    ],
    [
      'shipped code importing test code',
      { 'packages/core/src/wire/frame.ts': "import '../../test/plan.test.js'\nexport const frame = 1\n" },
      ['no-circular', 'src-not-test'],
    ],
    [
      'the HTTP room importing the gateway',
      {
        'apps/signal-server/src/http/routes.ts': "import '../gateway/gateway.js'\nexport const routes = 1\n",
        'apps/signal-server/src/gateway/gateway.ts': 'export const gateway = 1\n',
      },
      ['server-http-below-gateway'],
    ],
    [
      'the gateway importing the API',
      {
        'apps/signal-server/src/gateway/gateway.ts': "import '../api/routes.js'\nexport const gateway = 1\n",
        'apps/signal-server/src/api/routes.ts': 'export const api = 1\n',
      },
      ['server-gateway-below-api'],
    ],
    [
      'shipped code importing the testing package',
      {
        'packages/testing/src/index.ts': 'export const fake = 1\n',
        'apps/signal-server/src/control/mesh.ts':
          "import '../../../../packages/testing/src/index.js'\nexport const mesh = 1\n",
      },
      ['no-reach-into-other-package', 'testing-only-in-tests'],
    ],
    [
      'e2e reaching into a package',
      { 'e2e/chat.test.ts': "import '../packages/core/src/wire/frame.js'\n" },
      ['e2e-by-name'],
    ],
  ])('%s is reported', async (_name, change, expected) => {
    expect(await violations(await tree({ ...CLEAN, ...change }))).toEqual(expected)
  })
})

describe('layout check', () => {
  const layout = (dir: string) => run(dir, ['scripts/check-layout.mjs', dir])

  test('the clean tree passes', async () => {
    expect(await layout(await tree(CLEAN))).toEqual({ code: 0, out: 'layout: ok\n' })
  })

  test.each<[string, Tree, RegExp]>([
    [
      'a loose file at the root of core',
      { 'packages/core/src/sampler.ts': 'export const s = 1\n' },
      /core\/src\/sampler\.ts: only index\.ts/,
    ],
    [
      'a core folder without a layer',
      { 'packages/core/src/misc/x.ts': 'export const x = 1\n' },
      /folder misc\/ has no layer/,
    ],
    [
      'a source file over 350 lines',
      { 'apps/web/src/big.ts': 'export const x = 1\n'.repeat(351) },
      /apps\/web\/src\/big\.ts: 351 lines/,
    ],
    [
      'a map naming a file that is gone',
      { 'ARCHITECTURE.md': 'See `gateway/ghost.ts`.\n' },
      /ARCHITECTURE\.md names `gateway\/ghost\.ts`/,
    ],
  ])('%s fails', async (_name, change, message) => {
    const result = await layout(await tree({ ...CLEAN, ...change }))
    expect(result.code).toBe(1)
    expect(result.out).toMatch(message)
  })
})
