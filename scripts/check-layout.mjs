#!/usr/bin/env node
// The layout rules that dependency-cruiser cannot express (it sees imports, not files):
// - the root of packages/core/src holds only index.ts, errors.ts and ambient types;
// - every file under packages/core/src lives in a folder that has a layer in scripts/core-layers.cjs;
// - no source file (src/ of a package or app) is longer than MAX_LINES;
// - every file or folder that ARCHITECTURE.md and CONTRIBUTING.md name in backticks exists, so
//   the map cannot quietly go stale (a short path such as `http/auth.ts` must end some real path).
// Run by `npm run lint:layout`, part of `npm test`.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

// The repository root; a test passes another tree to check.
const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..')
const MAX_LINES = 350
const CORE_ROOT_FILES = new Set(['index.ts', 'errors.ts', 'globals.d.ts'])
const SOURCE = /\.(ts|tsx|js|mjs|cjs)$/

const problems = []

function walk(dir, out = []) {
  if (!existsSync(dir)) return out
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue
    const path = join(dir, name)
    if (statSync(path).isDirectory()) walk(path, out)
    else out.push(path)
  }
  return out
}

const coreSrc = join(root, 'packages/core/src')
const layerFolders = new Set(
  createRequire(import.meta.url)(join(root, 'scripts/core-layers.cjs'))
    .flat()
    .filter((entry) => !entry.includes('.')),
)
for (const file of walk(coreSrc)) {
  const rel = relative(coreSrc, file).split('\\').join('/')
  const [top, ...rest] = rel.split('/')
  if (rest.length === 0) {
    if (!CORE_ROOT_FILES.has(rel))
      problems.push(
        `packages/core/src/${rel}: only ${[...CORE_ROOT_FILES].join(', ')} may sit at the root of core/src; move it into the folder of its role`,
      )
  } else if (!layerFolders.has(top)) {
    problems.push(`packages/core/src/${rel}: folder ${top}/ has no layer in scripts/core-layers.cjs`)
  }
}

for (const group of ['packages', 'apps']) {
  for (const pkg of existsSync(join(root, group)) ? readdirSync(join(root, group)) : []) {
    for (const file of walk(join(root, group, pkg, 'src'))) {
      if (!SOURCE.test(file)) continue
      const lines = readFileSync(file, 'utf8').split('\n').length - 1
      if (lines > MAX_LINES)
        problems.push(
          `${relative(root, file)}: ${lines} lines (at most ${MAX_LINES}; split it along a real seam)`,
        )
    }
  }
}

const tree = ['packages', 'apps', 'e2e', 'scripts', 'docs'].flatMap((top) =>
  walk(join(root, top)).map((f) => relative(root, f).split('\\').join('/')),
)
const folders = new Set(
  tree.flatMap((f) =>
    f
      .split('/')
      .slice(0, -1)
      .map((_, i, parts) => `${parts.slice(0, i + 1).join('/')}/`),
  ),
)
const PATHLIKE = /^[\w.-]+(\/[\w.-]+)*(\.(ts|tsx|js|mjs|cjs|json|md)|\/)$/
for (const doc of ['ARCHITECTURE.md', 'CONTRIBUTING.md']) {
  const text = readFileSync(join(root, doc), 'utf8')
  for (const [, name] of text.matchAll(/`([^`\s]+)`/g)) {
    if (!PATHLIKE.test(name) || !/[/.]/.test(name) || /^\.|^node:/.test(name)) continue
    if (!name.includes('/') && !/\.(ts|tsx|mjs|cjs|md)$/.test(name)) continue
    const rootFile = !name.includes('/') && readdirSync(root).includes(name)
    const found = name.endsWith('/')
      ? [...folders].some((d) => d === name || d.endsWith(`/${name}`))
      : rootFile || tree.some((f) => f === name || f.endsWith(`/${name}`))
    if (!found) problems.push(`${doc} names \`${name}\`, which does not exist`)
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`layout: ${p}`)
  console.error(`layout: ${problems.length} problem(s)`)
  process.exit(1)
}
console.log('layout: ok')
