// The layer rules of the repository, checked by `npm run lint:deps` (part of `npm test`).
// ARCHITECTURE.md draws the same picture; change both together.

// packages/core's layers, lowest first (scripts/core-layers.cjs).
const coreLayers = require('./scripts/core-layers.cjs')

const layerPath = (folders) =>
  `^packages/core/src/(${folders.map((f) => (f.endsWith('\\.ts') ? f : `${f}/`)).join('|')})`

/** One forbidden import: from files matching `from` to modules matching `to`. */
const forbid = (name, comment, from, to) => ({ name, comment, severity: 'error', from, to })

const layerRules = coreLayers.slice(0, -1).map((layer, i) =>
  forbid(
    `core-layer-${i}`,
    `core/src/{${layer.join(',')}} may not import a higher layer (${coreLayers
      .slice(i + 1)
      .flat()
      .join(', ')})`,
    { path: layerPath(layer) },
    { path: layerPath(coreLayers.slice(i + 1).flat()) },
  ),
)

module.exports = {
  forbidden: [
    forbid(
      'no-circular',
      'Import cycles make layers meaningless and initialisation order fragile.',
      {},
      { circular: true },
    ),
    forbid(
      'core-no-node',
      'packages/core runs in browsers and Workers: no node: builtins (DOM types are kept out by its tsconfig lib).',
      { path: '^packages/core/src/' },
      { dependencyTypes: ['core'] },
    ),
    forbid(
      'core-no-workspace',
      'packages/core is the bottom of the workspace: it imports no other workspace package.',
      { path: '^packages/core/src/' },
      { path: '^(packages/(?!core/)|apps/|e2e/)' },
    ),
    forbid(
      'core-root',
      'Only index.ts may import from the whole of core; the root holds index.ts, errors.ts and ambient types.',
      { path: '^packages/core/src/', pathNot: '^packages/core/src/index\\.ts$' },
      { path: '^packages/core/src/index\\.ts$' },
    ),
    ...layerRules,
    forbid(
      'server-rooms',
      'signal-server rooms, lowest first: control -> http -> gateway -> api; a room never imports one above it.',
      { path: '^apps/signal-server/src/control/' },
      { path: '^apps/signal-server/src/(http|gateway|api)/' },
    ),
    forbid(
      'server-http-below-gateway',
      'The HTTP room knows the gateway only through the HealthSource it is handed.',
      { path: '^apps/signal-server/src/http/' },
      { path: '^apps/signal-server/src/(gateway|api)/' },
    ),
    forbid(
      'server-gateway-below-api',
      'The gateway throws core errors and knows nothing of the OpenAI API above it.',
      { path: '^apps/signal-server/src/gateway/' },
      { path: '^apps/signal-server/src/api/' },
    ),
    forbid(
      'apps-independent',
      'An app never imports another app; what two apps share belongs in a package.',
      { path: '^apps/([^/]+)/' },
      { path: '^apps/', pathNot: '^apps/$1/' },
    ),
    forbid(
      'packages-not-apps',
      'Packages are libraries for apps, never the other way round.',
      { path: '^packages/' },
      { path: '^(apps|e2e)/' },
    ),
    forbid(
      'no-reach-into-other-package',
      'Import another workspace by its package name (its public index), never its src/ or test/ by relative path.',
      { path: '^(packages|apps)/([^/]+)/' },
      {
        dependencyTypes: ['local'],
        path: '^(packages|apps)/',
        pathNot: '^(packages|apps)/$2/',
      },
    ),
    forbid(
      'e2e-by-name',
      'e2e drives the workspaces through their package names, like any user.',
      { path: '^e2e/' },
      { dependencyTypes: ['local'], path: '^(packages|apps)/' },
    ),
    forbid(
      'src-not-test',
      "Shipped code never imports a workspace's test code.",
      { path: '^(packages|apps)/[^/]+/src/', pathNot: '^packages/testing/' },
      { path: '^(packages|apps)/[^/]+/test/' },
    ),
    forbid(
      'testing-only-in-tests',
      "@butterfly/testing (packages/testing/src: test code, source only) is imported by tests alone, never by a workspace's src/.",
      { path: '^(packages|apps)/[^/]+/src/', pathNot: '^packages/testing/' },
      { path: '^packages/testing/' },
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|node_modules|\\.cache)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.test.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'types', 'default'],
      extensions: ['.ts', '.tsx', '.js', '.d.ts'],
    },
  },
}
