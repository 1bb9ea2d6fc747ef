/**
 * The layer rules of extproc/ (see README "Repository layout"), checked by
 * test/architecture/layers.test.ts in `npm test` and by `npm run lint:deps`.
 * core → core only; adapters → core (never another adapter, never main); main → anything in
 * extproc; the gateway never reaches the simulator, the tests or the dev wiring, and the simulator
 * never reaches the gateway.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'core-imports-only-core',
      comment: 'The core is pure: it may import the core and libraries, never an adapter, main or another top-level folder.',
      severity: 'error',
      from: { path: '^extproc/core/', pathNot: '\\.test\\.ts$' },
      to: { path: '^(extproc/(adapters|main)/|simulator/|test/|bench/|dev/|protos/|bin/)' },
    },
    {
      name: 'core-tests-test-only-the-core',
      comment: 'Unit tests beside the core may share fixtures from test/, but exercise the core alone.',
      severity: 'error',
      from: { path: '^extproc/core/.*\\.test\\.ts$' },
      to: { path: '^(extproc/(adapters|main)/|simulator/|bench/|dev/)' },
    },
    ...[
      ['config', 'catalogue|identity|decision|exchange|limits|usage|control'],
      ['catalogue', 'identity|decision|exchange|limits|usage|control'],
      ['identity', 'catalogue|decision|exchange|limits|usage|control'],
      ['decision', 'exchange|limits|usage|control'],
      ['exchange', 'limits|usage|control'],
      // Siblings after the exchange: admission and metering never depend on each other.
      ['limits', 'usage|control'],
      ['usage', 'limits|control'],
      // The control plane's store port builds on the configuration's types and nothing else.
      ['control', 'catalogue|identity|decision|exchange|limits|usage'],
    ].map(([folder, later]) => ({
      name: `core-folders-in-order`,
      comment: 'Inside the core: config ← catalogue, identity ← decision ← exchange ← limits | usage, and config ← control; a folder imports only those before it.',
      severity: 'error',
      from: { path: `^extproc/core/${folder}/`, pathNot: '\\.test\\.ts$' },
      to: { path: `^extproc/core/(${later})/` },
    })),
    {
      name: 'adapters-never-import-each-other',
      comment: 'Each adapter wraps one technology around the core; composing two is the composition root\'s job.',
      severity: 'error',
      from: { path: '^extproc/adapters/([^/]+)/' },
      to: { path: '^extproc/adapters/', pathNot: '^extproc/adapters/$1/' },
    },
    {
      name: 'adapters-never-import-main',
      severity: 'error',
      from: { path: '^extproc/adapters/' },
      to: { path: '^extproc/main/' },
    },
    {
      name: 'gateway-never-imports-simulator-tests-or-dev',
      comment: 'The simulator and the dev wiring are development tools; production code must run without them.',
      severity: 'error',
      from: { path: '^extproc/' },
      to: { path: '^(simulator|bench|dev)/' },
    },
    {
      name: 'gateway-never-imports-tests',
      comment: 'Tests beside the code may share fixtures from test/; production code never reaches them.',
      severity: 'error',
      from: { path: '^extproc/', pathNot: '\\.test\\.ts$' },
      to: { path: '^test/' },
    },
    {
      name: 'simulator-stands-alone',
      comment: 'The simulator imitates api.smallest.ai; it shares no code with the gateway it tests.',
      severity: 'error',
      from: { path: '^simulator/' },
      to: { path: '^(extproc|dev|test|bench)/' },
    },
    {
      name: 'no-cycles-in-the-gateway',
      severity: 'error',
      from: { path: '^extproc/' },
      to: { circular: true },
    },
    {
      name: 'production-uses-no-dev-dependency',
      comment: 'What runs in production must be a runtime dependency (package.json "dependencies").',
      severity: 'error',
      from: { path: '^(extproc|protos|bin)/', pathNot: '\\.test\\.ts$' },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
