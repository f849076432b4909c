// The layer rules of the repository, checked by `npm run lint:deps` (part of `npm test`).
// ARCHITECTURE.md draws the same picture; change both together.

// packages/core's layers, lowest first (scripts/core-layers.cjs).
const coreLayers = require('./scripts/core-layers.cjs')

const layerPath = (folders) =>
  `^packages/core/src/(${folders.map((f) => (f.endsWith('\\.ts') ? f : `${f}/`)).join('|')})`

const layerRules = coreLayers.slice(0, -1).map((layer, i) => ({
  name: `core-layer-${i}`,
  comment: `core/src/{${layer.join(',')}} may not import a higher layer (${coreLayers
    .slice(i + 1)
    .flat()
    .join(', ')})`,
  severity: 'error',
  from: { path: layerPath(layer) },
  to: { path: layerPath(coreLayers.slice(i + 1).flat()) },
}))

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles make layers meaningless and initialisation order fragile.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-no-node',
      comment:
        'packages/core runs in browsers and Workers: no node: builtins (DOM types are kept out by its tsconfig lib).',
      severity: 'error',
      from: { path: '^packages/core/src/' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'core-no-workspace',
      comment: 'packages/core is the bottom of the workspace: it imports no other workspace package.',
      severity: 'error',
      from: { path: '^packages/core/src/' },
      to: { path: '^(packages/(?!core/)|apps/|e2e/)' },
    },
    {
      name: 'core-root',
      comment:
        'Only index.ts may import from the whole of core; the root holds index.ts, errors.ts and ambient types.',
      severity: 'error',
      from: { path: '^packages/core/src/', pathNot: '^packages/core/src/index\\.ts$' },
      to: { path: '^packages/core/src/index\\.ts$' },
    },
    ...layerRules,
    {
      name: 'server-rooms',
      comment:
        'signal-server rooms, lowest first: control -> http -> gateway -> api; a room never imports one above it.',
      severity: 'error',
      from: { path: '^apps/signal-server/src/control/' },
      to: { path: '^apps/signal-server/src/(http|gateway|api)/' },
    },
    {
      name: 'server-http-below-gateway',
      comment: 'The HTTP room knows the gateway only through the HealthSource it is handed.',
      severity: 'error',
      from: { path: '^apps/signal-server/src/http/' },
      to: { path: '^apps/signal-server/src/(gateway|api)/' },
    },
    {
      name: 'server-gateway-below-api',
      comment: 'The gateway throws core errors and knows nothing of the OpenAI API above it.',
      severity: 'error',
      from: { path: '^apps/signal-server/src/gateway/' },
      to: { path: '^apps/signal-server/src/api/' },
    },
    {
      name: 'apps-independent',
      comment: 'An app never imports another app; what two apps share belongs in a package.',
      severity: 'error',
      from: { path: '^apps/([^/]+)/' },
      to: { path: '^apps/', pathNot: '^apps/$1/' },
    },
    {
      name: 'packages-not-apps',
      comment: 'Packages are libraries for apps, never the other way round.',
      severity: 'error',
      from: { path: '^packages/' },
      to: { path: '^(apps|e2e)/' },
    },
    {
      name: 'no-reach-into-other-package',
      comment:
        'Import another workspace by its package name (its public index), never its src/ or test/ by relative path.',
      severity: 'error',
      from: { path: '^(packages|apps)/([^/]+)/' },
      to: { dependencyTypes: ['local'], path: '^(packages|apps)/', pathNot: '^(packages|apps)/$2/' },
    },
    {
      name: 'e2e-by-name',
      comment: 'e2e drives the workspaces through their package names, like any user.',
      severity: 'error',
      from: { path: '^e2e/' },
      to: { dependencyTypes: ['local'], path: '^(packages|apps)/' },
    },
    {
      name: 'src-not-test',
      comment: "Shipped code never imports a workspace's test code.",
      severity: 'error',
      from: { path: '^(packages|apps)/[^/]+/src/', pathNot: '^packages/testing/' },
      to: { path: '^(packages|apps)/[^/]+/test/' },
    },
    {
      name: 'testing-only-in-tests',
      comment:
        "@butterfly/testing (packages/testing/src: test code, source only) is imported by tests alone, never by a workspace's src/.",
      severity: 'error',
      from: { path: '^(packages|apps)/[^/]+/src/', pathNot: '^packages/testing/' },
      to: { path: '^packages/testing/' },
    },
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
